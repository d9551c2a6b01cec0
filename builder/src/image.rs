//! Packing the assembled directory into a reproducible ext4 image with
//! `mkfs.ext4 -d` (e2fsprogs): fixed timestamps, fixed UUID and hash seed
//! (derived from the input key), sized to content plus headroom and capped by
//! the manifest's disk.

use crate::error::{BuildError, IoContext, Result};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// The timestamp every file in an image carries (1980-01-01T00:00:00Z, the
/// earliest time zip-based tools accept); also `SOURCE_DATE_EPOCH` of steps.
pub const EPOCH: u64 = 315_532_800;

const MIB: u64 = 1 << 20;

/// Set atime and mtime of every entry under `root` (not following symlinks) to [`EPOCH`].
pub fn normalize_times(root: &Path) -> Result<()> {
    let t = filetime::FileTime::from_unix_time(EPOCH as i64, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).ctx("reading directory", &dir)? {
            let item = item.ctx("reading directory", &dir)?;
            let p = item.path();
            if item.file_type().ctx("reading type", &p)?.is_dir() {
                stack.push(p.clone());
            }
            // Skipping entries already at EPOCH keeps an overlay from copying
            // up unchanged base files.
            let meta = std::fs::symlink_metadata(&p).ctx("reading metadata", &p)?;
            if meta.mtime() != EPOCH as i64 || meta.mtime_nsec() != 0 {
                filetime::set_symlink_file_times(&p, t, t).ctx("setting timestamps", &p)?;
            }
        }
    }
    filetime::set_symlink_file_times(root, t, t).ctx("setting timestamps", root)
}

/// Files that package tools write during `run` steps and that record build
/// times or host details, useless at run time: removed before packing (as
/// mmdebstrap's reproducible mode and debuerreotype do for bases), so an
/// `apt-get install` step still gives a reproducible image.
pub const VOLATILE_FILES: &[&str] = &[
    "/var/log/dpkg.log",
    "/var/log/alternatives.log",
    "/var/log/apt/history.log",
    "/var/log/apt/term.log",
    "/var/log/apt/eipp.log.xz",
    "/var/cache/ldconfig/aux-cache",
];

/// Remove the [`VOLATILE_FILES`] present under `root` (regular files only,
/// and only through real directories: a symlinked `/var/log` is left alone).
/// Returns the ones removed.
pub fn scrub_volatile(root: &Path) -> Result<Vec<&'static str>> {
    let mut removed = Vec::new();
    'files: for f in VOLATILE_FILES {
        let mut p = root.to_path_buf();
        let parts: Vec<&str> = f.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue 'files;
            };
            let last = i + 1 == parts.len();
            if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
                continue 'files;
            }
        }
        std::fs::remove_file(&p).ctx("removing", &p)?;
        removed.push(*f);
    }
    Ok(removed)
}

/// Bytes and inodes the tree under `root` occupies on ext4 (4 KiB blocks).
pub fn measure(root: &Path) -> Result<(u64, u64)> {
    let mut bytes = 4096;
    let mut inodes = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in std::fs::read_dir(&dir).ctx("reading directory", &dir)? {
            let item = item.ctx("reading directory", &dir)?;
            let meta = item.metadata().ctx("reading metadata", &item.path())?;
            inodes += 1;
            if meta.is_dir() {
                stack.push(item.path());
                bytes += 4096;
            } else if meta.is_file() {
                bytes += meta.len().div_ceil(4096) * 4096;
            } else if meta.file_type().is_symlink() && meta.size() >= 60 {
                bytes += 4096;
            }
        }
    }
    Ok((bytes, inodes))
}

/// First image size to try for `content` bytes and `inodes` entries:
/// content + 25% + inode tables + journal and metadata slack, in whole MiB.
pub fn initial_size(content: u64, inodes: u64) -> u64 {
    let raw = content + content / 4 + inodes * 512 + 24 * MIB;
    raw.div_ceil(4 * MIB) * 4 * MIB
}

/// A UUID-formatted string derived from a hex digest (for `-U` / `hash_seed`).
pub fn uuid_from(hex_digest: &str) -> String {
    let h: String = hex_digest
        .chars()
        .chain(std::iter::repeat('0'))
        .take(32)
        .collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Make `image` from `root`, growing from the initial estimate when mkfs
/// runs out of space, never beyond `disk`. Returns the image size.
pub fn make_ext4(root: &Path, image: &Path, seed_hex: &str, disk: u64) -> Result<u64> {
    let (content, inodes) = measure(root)?;
    let mut size = initial_size(content, inodes);
    if content > disk {
        return Err(BuildError::RootfsTooLarge {
            needed: content,
            disk,
        });
    }
    size = size.min(disk.div_ceil(MIB) * MIB);
    let uuid = uuid_from(seed_hex);
    loop {
        let _ = std::fs::remove_file(image);
        let out = Command::new("mkfs.ext4")
            .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string())
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-m",
                "0",
                "-I",
                "256",
                "-L",
                "byteport-root",
                "-U",
                &uuid,
            ])
            .arg("-E")
            .arg(format!(
                "hash_seed={uuid},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0"
            ))
            .arg("-N")
            .arg((inodes + inodes / 4 + 1024).to_string())
            .arg("-d")
            .arg(root)
            .arg(image)
            .arg(format!("{}k", size / 1024))
            .output()
            .ctx(
                "running mkfs.ext4 (install e2fsprogs)",
                Path::new("mkfs.ext4"),
            )?;
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let no_space = stderr.contains("Could not allocate")
            || stderr.contains("No space")
            || stderr.contains("too small");
        if no_space && size < disk {
            size = (size + size / 2).div_ceil(4 * MIB) * 4 * MIB;
            size = size.min(disk.div_ceil(MIB) * MIB);
            continue;
        }
        let _ = std::fs::remove_file(image);
        if no_space {
            return Err(BuildError::RootfsTooLarge {
                needed: content + content / 10,
                disk,
            });
        }
        return Err(BuildError::Tool {
            tool: "mkfs.ext4".into(),
            context: format!("packing {}", root.display()),
            detail: tail(&stderr),
        });
    }
    fix_inode_times(image, inodes)?;
    Ok(size)
}

/// mkfs copies each file's ctime/atime from the host; set them to [`EPOCH`]
/// on every used inode with one `debugfs -w` script so the image is
/// byte-for-byte reproducible.
fn fix_inode_times(image: &Path, inodes: u64) -> Result<()> {
    // Inodes are allocated sequentially from 11 (after lost+found) when populating.
    let last = inodes + 12;
    let mut script = String::with_capacity((last as usize) * 48);
    for ino in std::iter::once(2).chain(11..=last) {
        script.push_str(&format!(
            "sif <{ino}> ctime @{EPOCH}\nsif <{ino}> atime @{EPOCH}\n"
        ));
    }
    let dir = tempfile::tempdir().ctx("creating temp dir", Path::new("/tmp"))?;
    let script_path = dir.path().join("times.debugfs");
    std::fs::write(&script_path, script).ctx("writing debugfs script", &script_path)?;
    let out = Command::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string())
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image)
        .output()
        .ctx("running debugfs (install e2fsprogs)", Path::new("debugfs"))?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: "debugfs".into(),
            context: "fixing timestamps".into(),
            detail: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// The last lines of a tool's output.
pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_well_formed_and_stable() {
        let u = uuid_from("0123456789abcdef0123456789abcdef0123");
        assert_eq!(u, "01234567-89ab-4def-8123-456789abcdef");
        assert_eq!(uuid_from("ab").len(), 36);
    }

    #[test]
    fn initial_size_has_headroom_and_is_aligned() {
        let s = initial_size(100 * MIB, 1000);
        assert!(s >= 125 * MIB && s.is_multiple_of(4 * MIB));
    }

    #[test]
    fn volatile_files_are_removed_but_never_through_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("var/log/apt")).unwrap();
        std::fs::create_dir_all(root.join("var/cache")).unwrap();
        std::fs::write(root.join("var/log/dpkg.log"), "2026-01-01 install").unwrap();
        std::fs::write(root.join("var/log/apt/history.log"), "Start-Date").unwrap();
        std::fs::write(root.join("var/log/keep.log"), "mine").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("aux-cache"), "host file").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("var/cache/ldconfig")).unwrap();
        let removed = scrub_volatile(&root).unwrap();
        assert_eq!(
            removed,
            vec!["/var/log/dpkg.log", "/var/log/apt/history.log"]
        );
        assert!(root.join("var/log/keep.log").is_file());
        assert!(
            outside.join("aux-cache").is_file(),
            "not followed out of the rootfs"
        );
        assert!(scrub_volatile(&d.path().join("nothing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn same_tree_gives_identical_image_bytes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("app/sub")).unwrap();
        std::fs::write(root.join("app/a"), "hello").unwrap();
        std::os::unix::fs::symlink("a", root.join("app/l")).unwrap();
        normalize_times(&root).unwrap();
        let a = d.path().join("a.img");
        let b = d.path().join("b.img");
        make_ext4(&root, &a, "00ff", 1 << 30).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(root.join("app/a"), "hello").unwrap(); // new ctime on the host
        normalize_times(&root).unwrap();
        make_ext4(&root, &b, "00ff", 1 << 30).unwrap();
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "images differ"
        );
        let err = make_ext4(&root, &b, "00ff", 4096).unwrap_err();
        assert!(matches!(err, BuildError::RootfsTooLarge { .. }), "{err}");
    }
}
