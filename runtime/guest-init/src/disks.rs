//! Disks by filesystem UUID, and the app's volumes: each is found by the
//! UUID the host read from its image (device names follow the order the
//! kernel probes disks in, which no driver promises), mounted at its path
//! before any process starts, and handed to the app's user. A volume that
//! cannot be mounted fails the boot with the reason: an app must never
//! start on an empty directory where its data should be.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use guest_init::config::{UserIds, VolumeMount};
use guest_init::ext4;

/// How long a disk may take to appear (virtio probes asynchronously).
pub const DISK_WAIT: Duration = Duration::from_secs(10);

/// The virtio disks the kernel knows now, as `/dev/vdX` paths.
fn virtio_disks() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("vd"))
                .map(|n| PathBuf::from("/dev").join(n))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The disk whose filesystem has `uuid`, waiting up to `wait` for it.
pub fn find(uuid: &str, wait: Duration) -> io::Result<PathBuf> {
    let uuid = uuid.to_ascii_lowercase();
    let deadline = Instant::now() + wait;
    loop {
        let mut seen = Vec::new();
        for dev in virtio_disks() {
            match ext4::read(&dev) {
                Ok(Some(sb)) if sb.uuid == uuid => return Ok(dev),
                Ok(Some(sb)) => seen.push(format!("{} ({})", dev.display(), sb.uuid)),
                Ok(None) => seen.push(format!("{} (no ext4)", dev.display())),
                Err(e) => seen.push(format!("{} ({e})", dev.display())),
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no disk holds filesystem {uuid} after {}s; disks: {}",
                    wait.as_secs(),
                    if seen.is_empty() {
                        "none".to_string()
                    } else {
                        seen.join(", ")
                    }
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes `path` a directory of the root filesystem, creating what is
/// missing; refuses a symbolic link or a file on the way (a mount through
/// a link would land elsewhere than the manifest says).
fn mount_point(path: &str) -> Result<(), String> {
    let mut at = PathBuf::from("/");
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link in the image; a volume is mounted on a real directory",
                    at.display()
                ))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} exists in the image and is not a directory",
                    at.display()
                ))
            }
            Err(_) => std::fs::create_dir(&at)
                .map_err(|e| format!("creating the mount point {}: {e}", at.display()))?,
        }
    }
    Ok(())
}

/// Mounts every volume (parents first), hands each one's root directory to
/// `user`, and tells `say` what it mounted. The first failure stops with a
/// message naming the volume.
pub fn mount_volumes(
    volumes: &[VolumeMount],
    user: UserIds,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let mut order: Vec<&VolumeMount> = volumes.iter().collect();
    order.sort_by(|a, b| a.path.cmp(&b.path));
    for v in order {
        let fail = |why: String| format!("volume {} at {}: {why}", v.name, v.path);
        let dev = find(&v.uuid, DISK_WAIT).map_err(|e| fail(e.to_string()))?;
        mount_point(&v.path).map_err(fail)?;
        let dev_s = dev.display().to_string();
        // `dirsync`: a file created, renamed or deleted on a volume is on
        // disk when the call returns. SQLite's default (rollback journal)
        // commits by deleting its journal: without this, a VM killed just
        // after a commit rolled the transaction back at the next open.
        crate::system::mount(
            &dev_s,
            &v.path,
            "ext4",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_DIRSYNC,
            "",
        )
        .map_err(|e| fail(format!("mounting {dev_s}: {e}")))?;
        let root = std::fs::metadata(&v.path).map_err(|e| fail(e.to_string()))?;
        if (root.uid(), root.gid()) != (user.uid, user.gid) {
            std::os::unix::fs::chown(&v.path, Some(user.uid), Some(user.gid))
                .map_err(|e| fail(format!("handing it to uid {}: {e}", user.uid)))?;
        }
        let size = ext4::read(&dev)
            .ok()
            .flatten()
            .map(|sb| format!(", {} MiB", sb.bytes >> 20))
            .unwrap_or_default();
        say(&format!(
            "volume {} mounted at {} ({dev_s}{size}, owner uid {})",
            v.name, v.path, user.uid
        ));
    }
    Ok(())
}

/// Unmounts the volumes (children first) so that they are clean when the
/// VM powers off; a volume still busy is left to the final sync.
pub fn unmount_volumes(volumes: &[VolumeMount]) {
    let mut order: Vec<&VolumeMount> = volumes.iter().collect();
    order.sort_by(|a, b| b.path.cmp(&a.path));
    for v in order {
        let Ok(p) = std::ffi::CString::new(v.path.as_str()) else {
            continue;
        };
        // SAFETY: a valid NUL-terminated path; umount2 has no other preconditions.
        unsafe { libc::umount2(p.as_ptr(), 0) };
    }
}
