//! Backups of a volume image, and restoring one: consistent because the
//! volume's lock is held throughout (no VM has it mounted: the caller
//! stops the VM first), and all-or-nothing because each copy is made under
//! a temporary name, checked, then renamed into place.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{inspect, io_err, lock_path, run_tool, Volume, VolumeError};

/// Holds `image`'s lock for the life of the guard; refused while a VM has it.
fn lock(name: &str, image: &Path) -> Result<std::fs::File, VolumeError> {
    let path = lock_path(image);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(name, "opening the lock", &path))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        return Err(VolumeError::InUse {
            name: name.to_string(),
            image: image.to_path_buf(),
        });
    }
    Ok(file)
}

/// `from` copied to `to` with its holes kept (a 1 GiB volume holding
/// little stays small), under a temporary name beside `to`; returns it.
fn sparse_copy(name: &str, from: &Path, to: &Path) -> Result<PathBuf, VolumeError> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(format!(".partial-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let copied = run_tool(
        name,
        "cp",
        &format!("copying {}", from.display()),
        Command::new("cp")
            .arg("--sparse=always")
            .arg("--")
            .arg(from)
            .arg(&tmp),
        |c| c == 0,
    )
    .and_then(|()| {
        let f = std::fs::File::open(&tmp).map_err(io_err(name, "opening the copy", &tmp))?;
        f.sync_all().map_err(io_err(name, "syncing the copy", &tmp))
    });
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Copies `volume`'s image to `dest` (made whole or not at all, mode
/// 0600). The volume must not be attached to a VM.
pub fn backup(volume: &Volume, dest: &Path) -> Result<u64, VolumeError> {
    let name = volume.name.as_str();
    let _lock = lock(name, &volume.image)?;
    let sb = inspect(name, &volume.image)?;
    let tmp = sparse_copy(name, &volume.image, dest)?;
    let done = std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, dest));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(name, "writing the backup", dest)(e));
    }
    Ok(sb.bytes)
}

/// Replaces `volume`'s image with the backup `source`, after checking it
/// (an ext4 filesystem no larger than the volume, clean by `e2fsck`); the
/// image is then the backup byte for byte. The volume must not be attached
/// to a VM; on any error its image is untouched.
pub fn restore(volume: &Volume, source: &Path) -> Result<u64, VolumeError> {
    let name = volume.name.as_str();
    let sb = inspect(name, source).map_err(|e| match e {
        VolumeError::NotExt4 { name, .. } => VolumeError::NotExt4 {
            name,
            image: source.to_path_buf(),
        },
        e => e,
    })?;
    if sb.bytes > volume.size_bytes {
        return Err(VolumeError::Shrink {
            name: name.to_string(),
            current: sb.bytes,
            requested: volume.size_bytes,
        });
    }
    if let Some(dir) = volume.image.parent().filter(|d| !d.is_dir()) {
        crate::fsutil::create_private_dir(dir).map_err(io_err(
            name,
            "creating the directory",
            dir,
        ))?;
    }
    let _lock = lock(name, &volume.image)?;
    let tmp = sparse_copy(name, source, &volume.image)?;
    let checked = run_tool(
        name,
        "e2fsck",
        "checking the backup",
        Command::new("e2fsck").args(["-f", "-n"]).arg(&tmp),
        |c| c == 0,
    )
    .and_then(|()| {
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, &volume.image))
            .map_err(io_err(name, "replacing", &volume.image))
    });
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(sb.bytes)
}
