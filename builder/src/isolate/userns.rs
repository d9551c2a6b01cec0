//! The user namespace an app's steps run in: uid/gid 0..65536 inside map
//! onto the app's host range ([`crate::ids`]). Made once per build by a
//! short-lived helper process (a multi-threaded process cannot unshare a
//! user namespace itself) whose maps BytePort writes as root; kept as a
//! file descriptor, which steps join with `setns` and which id-mapped
//! mounts use to show on-disk owner 0 as the range's first id.

use crate::ids::IdRange;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A user namespace mapping 0..count to `range`.
#[derive(Debug)]
pub struct UserNs {
    fd: OwnedFd,
    range: IdRange,
}

impl UserNs {
    /// Create the namespace (as root: the maps name arbitrary host ids).
    pub fn new(range: IdRange) -> std::io::Result<UserNs> {
        let (mut ready_r, ready_w) = std::io::pipe()?;
        let (go_r, mut go_w) = std::io::pipe()?;
        let (ready_fd, go_fd) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
        // SAFETY: fork in a multi-threaded process; the child only makes
        // async-signal-safe system calls (unshare, write, read, _exit) on
        // descriptors opened before the fork, and allocates nothing.
        let pid = unsafe { libc::fork() };
        if pid == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; the child never returns.
            unsafe { helper(ready_fd, go_fd) }
        }
        drop((ready_w, go_r));
        let result = (|| {
            let mut errno = [0u8; 4];
            ready_r.read_exact(&mut errno)?;
            let errno = i32::from_ne_bytes(errno);
            if errno != 0 {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            let map = format!("0 {} {}\n", range.first, range.count);
            for file in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{pid}/{file}"), &map).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("writing {file} `{}`: {e}", map.trim()))
                })?;
            }
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
            Ok(OwnedFd::from(ns))
        })();
        let _ = go_w.write_all(b"x");
        drop(go_w);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Ok(UserNs { fd: result?, range })
    }

    /// The host ids the namespace maps to.
    pub fn range(&self) -> IdRange {
        self.range
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The helper child: unshare, report errno (0 = done), wait, exit.
unsafe fn helper(ready: RawFd, go: RawFd) -> ! {
    let errno: i32 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
        0
    } else {
        *libc::__errno_location()
    };
    let bytes = errno.to_ne_bytes();
    libc::write(ready, bytes.as_ptr().cast(), 4);
    let mut b = 0u8;
    libc::read(go, (&mut b as *mut u8).cast(), 1);
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_maps_zero_to_the_range() {
        let range = IdRange {
            first: 0x6fff_0000,
            count: 65536,
        };
        let ns = UserNs::new(range).unwrap();
        assert_eq!(ns.range(), range);
        // The map is visible through the descriptor's namespace: a process
        // that joins it sees it as its own.
        let fd = ns.raw_fd();
        let out = unsafe_child_reading_uid_map(fd);
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            ["0", "1878982656", "65536"]
        );
    }

    /// Fork a child that joins the namespace and prints its uid_map.
    fn unsafe_child_reading_uid_map(fd: RawFd) -> String {
        let mut cmd = std::process::Command::new("/bin/cat");
        cmd.arg("/proc/self/uid_map");
        // SAFETY: setns in the forked child before exec; async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}
