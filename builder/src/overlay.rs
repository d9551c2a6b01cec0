//! The rootfs being assembled as an overlay: the cached base is the
//! read-only lower layer, the build writes only to an upper layer. The
//! overlay is mounted in a mount namespace private to the calling thread, so
//! it is invisible to the host and disappears when the thread exits — no
//! base copy per build, and no mount left behind on any error or crash.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// Move the calling thread into a new private mount namespace and mount an
/// overlay of `lower` at `merged`, with `work/upper` and `work/ovl-work` as
/// its writable layers. Call on a thread that ends when the build does.
pub fn mount(lower: &Path, work: &Path, merged: &Path) -> Result<(), String> {
    let upper = work.join("upper");
    let ovl = work.join("ovl-work");
    for d in [&upper, &ovl] {
        std::fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let paths = [lower, upper.as_path(), ovl.as_path()];
    if paths.iter().any(|p| {
        p.as_os_str()
            .as_bytes()
            .iter()
            .any(|b| b",:\\ ".contains(b))
    }) {
        return Err("a layer path contains `,`, `:`, `\\` or a space".into());
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        ovl.display()
    );
    let options = CString::new(options).map_err(|_| "NUL in layer path".to_string())?;
    let target = cstring(merged)?;
    // SAFETY: unshare and mount with valid NUL-terminated strings; unshare
    // of CLONE_NEWNS affects only the calling thread (it also unshares the
    // thread's filesystem attributes, which the kernel allows for threads).
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
        check(
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                options.as_ptr().cast(),
            ),
            "mounting overlay",
        )?;
    }
    Ok(())
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
            mount(&lower2, &work2, &merged2).unwrap();
            assert_eq!(
                std::fs::read_to_string(merged2.join("base.txt")).unwrap(),
                "base"
            );
            std::fs::write(merged2.join("base.txt"), "changed").unwrap();
            std::fs::write(merged2.join("new.txt"), "new").unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(lower.join("base.txt")).unwrap(),
            "base"
        );
        assert_eq!(
            std::fs::read_to_string(work.join("upper/base.txt")).unwrap(),
            "changed"
        );
        assert!(
            !merged.join("base.txt").exists(),
            "the overlay is not visible outside its thread"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(merged.to_str().unwrap()));
    }
}
