//! Persistent volumes: one ext4 image per app and volume (where the images
//! live is the platform's choice), attached to a VM as an extra virtio-blk
//! disk by either driver and mounted by the guest init before the app's
//! processes start.
//!
//! - [`create`] makes a sparse ext4 image of the requested size whose root
//!   directory belongs to the app's uid (`mkfs.ext4 -E root_owner=`): a
//!   10 GiB volume takes only what is written to it.
//! - [`grow`] grows an image and its filesystem offline (`e2fsck -f -p`,
//!   then `resize2fs`) when the manifest asks for more; asking for less is
//!   refused ([`VolumeError::Shrink`]): shrinking could lose data.
//! - [`claim`] is what a boot does for each volume: take the volume's lock,
//!   create or grow its image, read its filesystem UUID (the guest finds the
//!   disk by it). The lock is an exclusive `flock` on `<image>.lock`; the
//!   [`Claim`] holds it, and the driver hands a duplicate of it to the VM
//!   process, so the lock lasts as long as the VM does — even a VM process
//!   that outlives its daemon keeps it. An ext4 filesystem mounted by two
//!   VMs at once would be corrupted, so a second claim while the first
//!   lives is refused ([`VolumeError::InUse`]).
//!
//! This lives in the runtime, not the builder: a volume is state of a
//! running app, not part of an artifact; the runtime is what must refuse a
//! second VM and knows the VM's lifetime.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use guest_init::ext4::{self, Superblock};

/// A volume to attach to a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Name (the manifest's), for messages.
    pub name: String,
    /// The ext4 image on the host; created on the first boot.
    pub image: PathBuf,
    /// Absolute mount path in the guest.
    pub mount: String,
    /// Size in bytes: the image grows to it; a smaller size is refused.
    pub size_bytes: u64,
}

/// Errors preparing or claiming a volume.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Another VM has the volume.
    #[error("volume `{name}` ({image}) is in use by another VM: an ext4 volume is attached to one VM at a time, so stop the VM that has it first")]
    InUse {
        /// The volume.
        name: String,
        /// Its image.
        image: PathBuf,
    },
    /// The manifest asks for less than the volume has.
    #[error("volume `{name}` is {} MiB and cannot shrink to {} MiB: shrinking could lose data; keep its size (or copy the data to a new, smaller volume)", current >> 20, requested >> 20)]
    Shrink {
        /// The volume.
        name: String,
        /// Its filesystem's size now.
        current: u64,
        /// What was asked.
        requested: u64,
    },
    /// A name or mount path the runtime will not pass on (they end up in
    /// QEMU's options, jail paths and the guest's mounts).
    #[error("volume {name:?}: {why}")]
    BadVolume {
        /// The volume's name as given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A size ext4 cannot have.
    #[error(
        "volume `{name}`: {size} bytes is not a whole number of 4 KiB blocks of at least 16 MiB"
    )]
    BadSize {
        /// The volume.
        name: String,
        /// The size asked for.
        size: u64,
    },
    /// The image holds no ext4 filesystem.
    #[error("volume `{name}`: {image} holds no ext4 filesystem (damaged, or not a volume image)")]
    NotExt4 {
        /// The volume.
        name: String,
        /// Its image.
        image: PathBuf,
    },
    /// Two volumes of one VM hold the same filesystem.
    #[error("volumes `{a}` and `{b}` hold the same filesystem (UUID {uuid}): one image is a copy of the other; give the copy a new UUID with `tune2fs -U random IMAGE`")]
    SameFilesystem {
        /// One volume.
        a: String,
        /// The other.
        b: String,
        /// The UUID they share.
        uuid: String,
    },
    /// A filesystem tool failed.
    #[error("volume `{name}`: {tool} failed {context}: {detail}")]
    Tool {
        /// The volume.
        name: String,
        /// `mkfs.ext4`, `e2fsck` or `resize2fs`.
        tool: &'static str,
        /// What it was doing.
        context: String,
        /// Its last output lines.
        detail: String,
    },
    /// A host I/O error.
    #[error("volume `{name}`: {context} {}", path.display())]
    Io {
        /// The volume.
        name: String,
        /// What was being done.
        context: String,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    name: &'a str,
    context: &'a str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        name: name.to_string(),
        context: context.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// The smallest volume: room for an ext4 journal.
pub const MIN_BYTES: u64 = 16 << 20;

/// What [`grow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// The filesystem already had the size.
    Unchanged,
    /// The filesystem grew from `from` bytes to `to`.
    Grown {
        /// Size before.
        from: u64,
        /// Size after.
        to: u64,
    },
}

fn check_size(name: &str, size: u64) -> Result<(), VolumeError> {
    if size < MIN_BYTES || !size.is_multiple_of(4096) {
        return Err(VolumeError::BadSize {
            name: name.to_string(),
            size,
        });
    }
    Ok(())
}

/// The manifest's rules, again, for what reaches QEMU's command line, the
/// jail and the guest: a DNS label of at most 63 characters and a plain
/// absolute mount path.
fn check_volume(v: &Volume) -> Result<(), VolumeError> {
    let bad = |why: &str| VolumeError::BadVolume {
        name: v.name.clone(),
        why: why.to_string(),
    };
    let label = !v.name.is_empty()
        && v.name.len() <= 63
        && !v.name.starts_with('-')
        && !v.name.ends_with('-')
        && v.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !label {
        return Err(bad(
            "a volume name is a DNS label (lowercase letters, digits and `-`)",
        ));
    }
    if !guest_init::config::is_plain_abs_path(&v.mount) {
        return Err(bad(&format!(
            "mount path {:?} is not a plain absolute path",
            v.mount
        )));
    }
    Ok(())
}

fn run_tool(
    name: &str,
    tool: &'static str,
    context: &str,
    cmd: &mut Command,
    ok: impl Fn(i32) -> bool,
) -> Result<(), VolumeError> {
    let out = cmd.output().map_err(|source| VolumeError::Io {
        name: name.to_string(),
        context: format!("running {tool} (install e2fsprogs)"),
        path: PathBuf::from(tool),
        source,
    })?;
    if out.status.code().is_some_and(ok) {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    Err(VolumeError::Tool {
        name: name.to_string(),
        tool,
        context: context.to_string(),
        detail: format!(
            "{} ({})",
            lines[lines.len().saturating_sub(6)..].join(" / "),
            out.status
        ),
    })
}

/// Reads the image's superblock.
pub fn inspect(name: &str, image: &Path) -> Result<Superblock, VolumeError> {
    ext4::read(image)
        .map_err(io_err(name, "reading", image))?
        .ok_or_else(|| VolumeError::NotExt4 {
            name: name.to_string(),
            image: image.to_path_buf(),
        })
}

/// Creates the sparse ext4 image `image` (mode 0600, its parent directory
/// made 0700 if missing) of `size_bytes`, its root directory owned by
/// `uid:gid`. The image appears whole or not at all (made under a temporary
/// name, then linked into place). An existing image is an error, never
/// replaced.
pub fn create(
    name: &str,
    image: &Path,
    size_bytes: u64,
    uid: u32,
    gid: u32,
) -> Result<Superblock, VolumeError> {
    check_size(name, size_bytes)?;
    if let Some(dir) = image.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            crate::fsutil::create_private_dir(dir).map_err(io_err(
                name,
                "creating the directory",
                dir,
            ))?;
        }
    }
    let file_name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = image.with_file_name(format!(".{file_name}.new"));
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(name, "creating", &tmp))?;
    f.set_len(size_bytes)
        .map_err(io_err(name, "sizing", &tmp))?;
    drop(f);
    let made = run_tool(
        name,
        "mkfs.ext4",
        "making its filesystem",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0"])
            .args(["-L", "byteport-volume"])
            .arg("-E")
            .arg(format!("root_owner={uid}:{gid},lazy_journal_init=1"))
            .arg(&tmp),
        |c| c == 0,
    )
    // A hard link, not a rename: it never replaces an image that exists.
    .and_then(|()| {
        std::fs::hard_link(&tmp, image).map_err(io_err(name, "moving into place", image))
    });
    let _ = std::fs::remove_file(&tmp);
    made?;
    inspect(name, image)
}

/// Grows the image and its filesystem to `size_bytes` (offline: no VM may
/// have it, see [`claim`]); the same size changes nothing, a smaller one is
/// refused.
pub fn grow(name: &str, image: &Path, size_bytes: u64) -> Result<Growth, VolumeError> {
    check_size(name, size_bytes)?;
    let before = inspect(name, image)?;
    if size_bytes < before.bytes {
        return Err(VolumeError::Shrink {
            name: name.to_string(),
            current: before.bytes,
            requested: size_bytes,
        });
    }
    if size_bytes == before.bytes {
        return Ok(Growth::Unchanged);
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(io_err(name, "opening", image))?;
    let len = f.metadata().map_err(io_err(name, "reading", image))?.len();
    if len < size_bytes {
        f.set_len(size_bytes)
            .map_err(io_err(name, "growing", image))?;
    }
    drop(f);
    // resize2fs wants a freshly checked filesystem; -p repairs only what
    // is safe without a person (exit 1: something was fixed).
    run_tool(
        name,
        "e2fsck",
        "checking it before growing",
        Command::new("e2fsck").args(["-f", "-p"]).arg(image),
        |c| c <= 1,
    )?;
    run_tool(
        name,
        "resize2fs",
        &format!("growing it to {} MiB", size_bytes >> 20),
        Command::new("resize2fs")
            .arg(image)
            .arg(format!("{}K", size_bytes / 1024)),
        |c| c == 0,
    )?;
    let after = inspect(name, image)?;
    Ok(Growth::Grown {
        from: before.bytes,
        to: after.bytes,
    })
}

/// A volume claimed for one VM: its lock held, its image ready, its
/// filesystem's UUID known. Dropping it gives the image back to root (if it
/// was handed to a jailed VM's uid) and releases this handle's share of the
/// lock; the VM process holds its own share until it exits.
#[derive(Debug)]
pub struct Claim {
    /// The volume.
    pub volume: Volume,
    /// Its filesystem's UUID.
    pub uuid: String,
    /// Its filesystem's size now.
    pub bytes: u64,
    /// What preparing it did: `None` = created, else [`grow`]'s outcome.
    pub growth: Option<Growth>,
    lock: File,
    handed_to: Mutex<Option<u32>>,
}

/// The lock file of `image`.
pub fn lock_path(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Takes `volume`'s lock (refused while another VM has it), creates its
/// image with its root owned by `uid:gid` if there is none, or grows it to
/// the size asked for (a smaller size is refused).
pub fn claim(volume: &Volume, uid: u32, gid: u32) -> Result<Claim, VolumeError> {
    let name = volume.name.as_str();
    check_volume(volume)?;
    check_size(name, volume.size_bytes)?;
    let lock_file = lock_path(&volume.image);
    if let Some(dir) = lock_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            crate::fsutil::create_private_dir(dir).map_err(io_err(
                name,
                "creating the directory",
                dir,
            ))?;
        }
    }
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_file)
        .map_err(io_err(name, "opening the lock", &lock_file))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                image: volume.image.clone(),
            });
        }
        return Err(io_err(name, "locking", &lock_file)(e));
    }
    let (sb, growth) = if volume.image.exists() {
        let g = grow(name, &volume.image, volume.size_bytes)?;
        (inspect(name, &volume.image)?, Some(g))
    } else {
        (
            create(name, &volume.image, volume.size_bytes, uid, gid)?,
            None,
        )
    };
    Ok(Claim {
        volume: volume.clone(),
        uuid: sb.uuid,
        bytes: sb.bytes,
        growth,
        lock,
        handed_to: Mutex::new(None),
    })
}

/// Claims every volume of one VM, refusing two that hold one filesystem
/// (the guest finds disks by filesystem UUID). All or nothing.
pub fn claim_all(volumes: &[Volume], uid: u32, gid: u32) -> Result<Vec<Claim>, VolumeError> {
    let mut claims: Vec<Claim> = Vec::new();
    for v in volumes {
        let c = claim(v, uid, gid)?;
        if let Some(other) = claims.iter().find(|o| o.uuid == c.uuid) {
            return Err(VolumeError::SameFilesystem {
                a: other.volume.name.clone(),
                b: c.volume.name.clone(),
                uuid: c.uuid.clone(),
            });
        }
        claims.push(c);
    }
    Ok(claims)
}

impl Claim {
    /// A descriptor sharing this claim's lock, for the VM process to hold
    /// (dropped by it only when it exits).
    pub fn lock_fd(&self) -> io::Result<OwnedFd> {
        Ok(OwnedFd::from(self.lock.try_clone()?))
    }

    /// Makes the image the jailed VM's own (its uid, mode 0600) for as long
    /// as this claim lives: the VM process opens it inside its jail.
    pub fn hand_to(&self, id: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.volume.image, std::fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&self.volume.image, Some(id), Some(id))?;
        *self.handed_to.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let handed = self
            .handed_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if handed.is_some() {
            if let Err(e) = std::os::unix::fs::chown(&self.volume.image, Some(0), Some(0)) {
                tracing::warn!(volume = %self.volume.name, error = %e, "cannot give the volume image back to root");
            }
        }
    }
}

mod backup;
pub use backup::{backup, restore};

#[cfg(test)]
mod tests;
