//! The app's directory belongs to the app: after the last build step, the
//! working directory the processes start in (and everything in it) is
//! handed to the user they run as, as Heroku's `/app` belongs to the dyno's
//! user — so an app may write beside its code (a cache, an upload, a
//! SQLite file). Build steps still run as root; only the result changes
//! hands. What the app writes there lives as long as its VM: every VM
//! starts from the image.
//!
//! A working directory of `/` or inside the system's own directories is
//! left to root (that would hand the app the system), and so is a file
//! with more than one hard link (its other names may be outside the app's
//! directory).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Directories (and everything under them) never handed to the app.
const SYSTEM_DIRS: [&str; 14] = [
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
    "/sys", "/dev", "/run", "/tmp",
];
/// Directories never handed to the app themselves (their subdirectories may be).
const SYSTEM_PARENTS: [&str; 2] = ["/", "/var"];

/// What [`give_app_dir`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// `entries` entries under the directory now belong to the uid.
    Given {
        /// Entries whose owner is now the app's (the directory included).
        entries: u64,
        /// Files left to root because they have other hard links.
        hard_linked: u64,
    },
    /// The directory is the system's; nothing changed.
    System,
    /// The directory is not in the image (no step made it).
    Missing,
}

/// Whether `workdir` is a directory the app may own.
pub fn may_own(workdir: &str) -> bool {
    let path = workdir.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    !SYSTEM_PARENTS.contains(&path)
        && !SYSTEM_DIRS
            .iter()
            .any(|d| path == *d || path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// Hands `workdir` (absolute in the rootfs at `root`) and everything under
/// it to `uid:gid`, never following a symlink.
pub fn give_app_dir(root: &Path, workdir: &str, uid: u32, gid: u32) -> Result<Handover> {
    if !may_own(workdir) {
        return Ok(Handover::System);
    }
    let top = root.join(workdir.trim_start_matches('/'));
    // A symlinked component (a step replaced the directory with a link)
    // would lead out of the app's directory: leave it alone.
    let mut at = root.to_path_buf();
    for part in workdir.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            _ => return Ok(Handover::Missing),
        }
    }
    let (mut entries, mut hard_linked) = (0, 0);
    let mut stack = vec![top];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).ctx("reading metadata", &path)?;
        if meta.is_dir() {
            for item in std::fs::read_dir(&path).ctx("reading directory", &path)? {
                stack.push(item.ctx("reading directory", &path)?.path());
            }
        } else if meta.nlink() > 1 {
            hard_linked += 1;
            continue;
        }
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .ctx("handing the app's directory to its user", &path)?;
        }
        entries += 1;
    }
    Ok(Handover::Given {
        entries,
        hard_linked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_stay_roots() {
        for own in [
            "/app",
            "/srv/app",
            "/var/www/html",
            "/home/app",
            "/opt/x",
            "/app/",
        ] {
            assert!(may_own(own), "{own}");
        }
        for system in [
            "/",
            "/usr",
            "/usr/src/app",
            "/etc",
            "/var",
            "/tmp/x",
            "/lib64",
            "/proc",
        ] {
            assert!(!may_own(system), "{system}");
        }
        assert!(may_own("/usrdata"));
    }

    #[test]
    fn the_tree_changes_hands_without_following_links() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: lchown to another uid needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("app/sub")).unwrap();
        std::fs::write(root.join("app/sub/f"), "x").unwrap();
        std::fs::write(root.join("outside"), "y").unwrap();
        std::os::unix::fs::symlink("/outside", root.join("app/link")).unwrap();
        std::fs::hard_link(root.join("outside"), root.join("app/hard")).unwrap();
        let h = give_app_dir(root, "/app", 1000, 1000).unwrap();
        assert_eq!(
            h,
            Handover::Given {
                entries: 4,
                hard_linked: 1
            }
        );
        for p in ["app", "app/sub", "app/sub/f", "app/link"] {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (1000, 1000), "{p}");
        }
        // Neither the link's target nor the hard-linked inode changed hands.
        assert_eq!(std::fs::metadata(root.join("outside")).unwrap().uid(), 0);
        assert_eq!(
            give_app_dir(root, "/usr", 1000, 1000).unwrap(),
            Handover::System
        );
        assert_eq!(
            give_app_dir(root, "/nope", 1000, 1000).unwrap(),
            Handover::Missing
        );
        std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
        assert_eq!(
            give_app_dir(root, "/evil", 1000, 1000).unwrap(),
            Handover::Missing
        );
    }
}
