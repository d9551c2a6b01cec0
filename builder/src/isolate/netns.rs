//! A step's network namespace: a fresh one per step, owned by the host's
//! user namespace (so root in the step cannot add interfaces, routes or
//! raw sockets to it), with only loopback up — and, when the build may use
//! the network, a listening socket on `127.0.0.1:3128` created *inside*
//! it and served by BytePort's egress proxy from the host side. The step
//! sees no host interface, address or abstract unix socket.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Where the proxy listens inside every step's namespace.
pub const PROXY_PORT: u16 = 3128;

/// A network namespace made for one step.
#[derive(Debug)]
pub struct StepNetns {
    fd: OwnedFd,
    /// The proxy's listening socket inside it, when the step has network.
    pub listener: Option<TcpListener>,
}

impl StepNetns {
    /// A new namespace with loopback up, plus the proxy listener if asked.
    pub fn new(with_proxy: bool) -> std::io::Result<StepNetns> {
        // unshare(CLONE_NEWNET) moves only the calling thread, so a
        // throwaway thread makes the namespace and leaves it behind as a
        // descriptor (and the listener, which stays in it).
        std::thread::spawn(move || -> std::io::Result<StepNetns> {
            // SAFETY: unshare on this thread only; no pointers.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            loopback_up()?;
            let listener = if with_proxy {
                Some(TcpListener::bind(("127.0.0.1", PROXY_PORT))?)
            } else {
                None
            };
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            Ok(StepNetns {
                fd: OwnedFd::from(ns),
                listener,
            })
        })
        .join()
        .map_err(|_| std::io::Error::other("the network namespace thread panicked"))?
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `struct ifreq` with the flags member (Linux, 40 bytes).
#[repr(C)]
struct IfreqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip link set lo up` in the calling thread's namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket we close below, and ioctls with a properly sized,
    // initialised ifreq that lives across the calls.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req = IfreqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        for (d, c) in req.name.iter_mut().zip(b"lo") {
            *d = *c as libc::c_char;
        }
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_namespace_has_only_loopback_and_the_proxy_listener() {
        let ns = StepNetns::new(true).unwrap();
        let l = ns.listener.as_ref().unwrap();
        assert_eq!(l.local_addr().unwrap().port(), PROXY_PORT);
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["-o", "addr"]);
        let fd = ns.raw_fd();
        // SAFETY: setns in the forked child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        assert!(out.contains("lo    inet 127.0.0.1/8"), "{out}");
        assert_eq!(
            out.lines().filter(|l| l.contains("inet ")).count(),
            1,
            "{out}"
        );
        assert!(StepNetns::new(false).unwrap().listener.is_none());
    }
}
