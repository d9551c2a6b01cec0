//! The rootfs being assembled as an overlay: the cached base is the
//! read-only lower layer, the build writes only to `layers/upper`. The
//! overlay is mounted in a mount namespace private to the calling thread, so
//! it is invisible to the host and disappears when the thread exits — no
//! base copy per build, and no mount left behind on any error or crash.
//!
//! Two views of the same layers exist, never at once: the *host view*
//! (plain layers, files owned as on disk: what `copy` steps write and
//! `mkfs` packs) and, while a `run` step executes, the step's own overlay
//! over id-mapped layers ([`crate::isolate`]). Two live overlays sharing an
//! upper layer would see each other's changes only partly, so the host view
//! is unmounted for the step ([`Overlay::suspend`]) and mounted again after.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstring(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{} contains NUL", p.display()))
}

fn check(rc: libc::c_int, what: &str) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}

/// The overlay of one build: its layers, mount point and step mount points.
#[derive(Debug)]
pub struct Overlay {
    lower: PathBuf,
    layers: PathBuf,
    merged: PathBuf,
    step_lower: PathBuf,
    step_layers: PathBuf,
}

impl Overlay {
    /// Move the calling thread into a new private mount namespace and mount
    /// the host view of an overlay of `lower` at `merged`, with
    /// `work/layers/{upper,ovl-work}` as its writable layers. Call on a
    /// thread that ends when the build does.
    pub fn mount(lower: &Path, work: &Path, merged: &Path) -> Result<Overlay, String> {
        let layers = work.join("layers");
        let o = Overlay {
            lower: lower.to_path_buf(),
            merged: merged.to_path_buf(),
            step_lower: work.join("step-lower"),
            step_layers: work.join("step-layers"),
            layers,
        };
        for d in [
            &o.layers,
            &o.layers.join("upper"),
            &o.layers.join("ovl-work"),
            &o.step_lower,
            &o.step_layers,
        ] {
            std::fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        // SAFETY: unshare of CLONE_NEWNS affects only the calling thread (it
        // also unshares the thread's filesystem attributes, which the kernel
        // allows for threads); mount with a constant.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS), "unshare(CLONE_NEWNS)")?;
            check(
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ),
                "making mounts private",
            )?;
        }
        o.mount_host_view()?;
        Ok(o)
    }

    /// Overlay mount options for `lower` and the layers under `layers`.
    fn options(lower: &Path, layers: &Path) -> Result<CString, String> {
        let (upper, ovl) = (layers.join("upper"), layers.join("ovl-work"));
        let paths = [lower, upper.as_path(), ovl.as_path()];
        if paths.iter().any(|p| {
            p.as_os_str()
                .as_bytes()
                .iter()
                .any(|b| b",:\\ ".contains(b))
        }) {
            return Err("a layer path contains `,`, `:`, `\\` or a space".into());
        }
        CString::new(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            ovl.display()
        ))
        .map_err(|_| "NUL in layer path".to_string())
    }

    fn mount_host_view(&self) -> Result<(), String> {
        let options = Self::options(&self.lower, &self.layers)?;
        let target = cstring(&self.merged)?;
        // A step's overlay may still be going away with its last process
        // (its namespace dies with it): retry briefly if the layers are busy.
        for _ in 0..100 {
            // SAFETY: mount with valid NUL-terminated strings.
            let rc = unsafe {
                libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    options.as_ptr().cast(),
                )
            };
            if rc == 0 {
                return Ok(());
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        check(-1, "mounting overlay")
    }

    /// Unmount the host view for a step (on the thread that mounted it);
    /// [`Suspended::resume`] mounts it again.
    pub fn suspend(&self) -> Result<Suspended<'_>, String> {
        let target = cstring(&self.merged)?;
        // Not lazily: the layers must be released before the step mounts
        // them. A file of the rootfs opened by this build a moment ago can
        // still be referenced by a child another build just forked (it
        // holds every descriptor until its exec), so "busy" is retried.
        let mut rc = -1;
        for _ in 0..500 {
            // SAFETY: umount2 of our own mount point, a valid C string.
            rc = unsafe { libc::umount2(target.as_ptr(), 0) };
            if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        check(rc, "unmounting the build overlay")?;
        Ok(Suspended {
            overlay: self,
            resumed: false,
        })
    }

    /// What the step mounts: (lower, its id-mapped mount point, the layers
    /// directory, its id-mapped mount point, overlay options over those).
    pub(crate) fn step_view(
        &self,
    ) -> Result<(PathBuf, PathBuf, PathBuf, PathBuf, CString), String> {
        let options = Self::options(&self.step_lower, &self.step_layers)?;
        Ok((
            self.lower.clone(),
            self.step_lower.clone(),
            self.layers.clone(),
            self.step_layers.clone(),
            options,
        ))
    }

    /// Where the rootfs is assembled.
    pub fn merged(&self) -> &Path {
        &self.merged
    }
}

/// The host view, unmounted for a step.
#[derive(Debug)]
pub struct Suspended<'a> {
    overlay: &'a Overlay,
    resumed: bool,
}

impl Suspended<'_> {
    /// Mount the host view again.
    pub fn resume(mut self) -> Result<(), String> {
        self.resumed = true;
        self.overlay.mount_host_view()
    }
}

impl Drop for Suspended<'_> {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = self.overlay.mount_host_view();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_is_private_to_its_thread_and_leaves_the_lower_layer_alone() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let work = d.path().join("work");
        let merged = d.path().join("merged");
        for p in [&lower, &work, &merged] {
            std::fs::create_dir(p).unwrap();
        }
        std::fs::write(lower.join("base.txt"), "base").unwrap();
        let (lower2, work2, merged2) = (lower.clone(), work.clone(), merged.clone());
        std::thread::spawn(move || {
            let o = Overlay::mount(&lower2, &work2, &merged2).unwrap();
            assert_eq!(
                std::fs::read_to_string(merged2.join("base.txt")).unwrap(),
                "base"
            );
            std::fs::write(merged2.join("base.txt"), "changed").unwrap();
            let s = o.suspend().unwrap();
            assert!(
                !merged2.join("base.txt").exists(),
                "unmounted while suspended"
            );
            s.resume().unwrap();
            std::fs::write(merged2.join("new.txt"), "new").unwrap();
            assert_eq!(o.merged(), merged2.as_path());
        })
        .join()
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(lower.join("base.txt")).unwrap(),
            "base"
        );
        assert_eq!(
            std::fs::read_to_string(work.join("layers/upper/base.txt")).unwrap(),
            "changed"
        );
        assert!(work.join("layers/upper/new.txt").is_file());
        assert!(
            !merged.join("base.txt").exists(),
            "the overlay is not visible outside its thread"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(merged.to_str().unwrap()));
    }
}
