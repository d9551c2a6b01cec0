//! Host files and directories bound into a step's rootfs for the step only.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A host file bind-mounted read-only over a file of the rootfs for the
/// step only (DNS config, CA bundle). The target is created empty when its
/// directory exists but the file does not, and removed again afterwards;
/// nothing is bound when the directory is missing or any part is a symlink.
pub(super) struct BindFile {
    pub(super) host: CString,
    pub(super) target: Option<PathBuf>,
    created: bool,
}

impl BindFile {
    pub(super) fn prepare(root: &Path, host: &Path, target: &str) -> BindFile {
        let mut bind = BindFile {
            host: super::cstr(host),
            target: None,
            created: false,
        };
        if !host.is_file() {
            return bind;
        }
        let mut dir = root.to_path_buf();
        let parts: Vec<&str> = target.trim_start_matches('/').split('/').collect();
        let (name, dirs) = match parts.split_last() {
            Some(x) => x,
            None => return bind,
        };
        for d in dirs {
            dir.push(d);
            if !std::fs::symlink_metadata(&dir)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                return bind;
            }
        }
        let f = dir.join(name);
        match std::fs::symlink_metadata(&f) {
            Ok(m) if m.is_file() => bind.target = Some(f),
            Ok(_) => {}
            Err(_) => {
                if std::fs::write(&f, "").is_ok() {
                    bind.target = Some(f);
                    bind.created = true;
                }
            }
        }
        bind
    }
}

impl Drop for BindFile {
    fn drop(&mut self) {
        if let (true, Some(f)) = (self.created, &self.target) {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A host directory (a build cache) bound read-write over a directory of
/// the rootfs for the step only. Missing directories on the way are created
/// and removed again afterwards (when still empty), so the image does not
/// gain empty mount points; nothing is bound when any existing part of the
/// path is a symlink or not a directory (a step could have planted one to
/// redirect the mount).
pub(super) struct BindDir {
    pub(super) host: CString,
    pub(super) target: Option<PathBuf>,
    created: Vec<PathBuf>,
}

impl BindDir {
    pub(super) fn prepare(root: &Path, host: &Path, target: &str) -> BindDir {
        let mut bind = BindDir {
            host: super::cstr(host),
            target: None,
            created: Vec::new(),
        };
        if !host.is_dir() {
            return bind;
        }
        let mut dir = root.to_path_buf();
        for part in target.split('/').filter(|p| !p.is_empty()) {
            if part == ".." || part == "." {
                return bind;
            }
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return bind,
                Err(_) => {
                    if std::fs::create_dir(&dir).is_err() {
                        return bind;
                    }
                    bind.created.push(dir.clone());
                }
            }
        }
        bind.target = Some(dir);
        bind
    }
}

impl Drop for BindDir {
    fn drop(&mut self) {
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_dir_creates_missing_mount_points_and_removes_them_after() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = (d.path().join("root"), d.path().join("cache"));
        std::fs::create_dir_all(root.join("root")).unwrap();
        std::fs::create_dir(&host).unwrap();
        let b = BindDir::prepare(&root, &host, "/root/.cache/deep");
        assert_eq!(
            b.target.as_deref(),
            Some(root.join("root/.cache/deep").as_path())
        );
        drop(b);
        assert!(root.join("root").is_dir() && !root.join("root/.cache").exists());
    }

    #[test]
    fn bind_dir_refuses_symlinks_and_files_on_the_path() {
        let d = tempfile::tempdir().unwrap();
        let (root, host) = (d.path().join("root"), d.path().join("cache"));
        std::fs::create_dir_all(root.join("root")).unwrap();
        std::fs::create_dir(&host).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("root/.npm")).unwrap();
        assert!(BindDir::prepare(&root, &host, "/root/.npm")
            .target
            .is_none());
        assert!(BindDir::prepare(&root, &host, "/root/.npm/x")
            .target
            .is_none());
        std::fs::write(root.join("root/.cache"), "").unwrap();
        assert!(BindDir::prepare(&root, &host, "/root/.cache")
            .target
            .is_none());
        assert!(BindDir::prepare(&root, &host, "/root/../etc")
            .target
            .is_none());
        assert!(BindDir::prepare(&root, &d.path().join("missing"), "/x")
            .target
            .is_none());
    }
}
