//! The app's way out, plumbed to an egress proxy that lives outside the
//! runtime (the policy — no loopback, no private ranges, what counts as
//! another app's public name — is that proxy's business, not ours).
//!
//! Each VM gets a *door*: a Unix socket in its socket directory that the
//! VM's side reaches (QEMU's per-connection relay for the guest's
//! `10.0.2.100:3128`; the own VMM's vsock host port 3128). The daemon
//! accepts there and connects to the endpoint — as itself, so the jailed
//! VM process needs no access to the proxy — for at most
//! [`MAX_CONNECTIONS`] connections at a time. A VM without an endpoint has
//! no door: its guest reaches nothing.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most connections one VM may have open through its door.
pub const MAX_CONNECTIONS: usize = 64;

/// The guest port of the egress proxy (QEMU: at [`QEMU_GUEST_ADDR`]; own VMM:
/// `127.0.0.1` in the guest, and this vsock host port).
pub const PROXY_PORT: u16 = 3128;
/// Where the guest reaches the proxy under QEMU (a `guestfwd` address).
pub const QEMU_GUEST_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 100);

/// Where an app's outbound proxy listens on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressEndpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address (normally on loopback).
    Tcp(SocketAddr),
}

enum Upstream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl EgressEndpoint {
    fn connect(&self) -> io::Result<Upstream> {
        Ok(match self {
            EgressEndpoint::Unix(p) => Upstream::Unix(UnixStream::connect(p)?),
            EgressEndpoint::Tcp(a) => {
                Upstream::Tcp(TcpStream::connect_timeout(a, Duration::from_secs(5))?)
            }
        })
    }
}

/// A VM's door to its egress endpoint; closed when dropped.
pub struct Door {
    path: PathBuf,
    closing: Arc<AtomicBool>,
    /// The listening socket (shared with the accept loop): shutting it down
    /// wakes that loop even when the socket's path is already gone.
    listener: UnixListener,
}

impl Door {
    /// Listens at `path` (owned by `owner`, the jailed VM process's uid, if
    /// any, so it may connect) and relays each connection to `endpoint`.
    pub fn open(path: &Path, endpoint: EgressEndpoint, owner: Option<u32>) -> io::Result<Door> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        if let Some(uid) = owner {
            std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
        }
        let closing = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let stop = closing.clone();
        let ours = listener.try_clone()?;
        std::thread::Builder::new()
            .name("egress-door".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else {
                        // EINVAL once shut down; anything else: try again.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        open.fetch_sub(1, Ordering::SeqCst);
                        continue; // closed at once: too many
                    }
                    let (open, endpoint) = (open.clone(), endpoint.clone());
                    std::thread::spawn(move || {
                        if let Ok(up) = endpoint.connect() {
                            match up {
                                Upstream::Unix(u) => splice_unix(conn, u),
                                Upstream::Tcp(t) => splice_tcp(conn, t),
                            }
                        }
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })?;
        Ok(Door {
            path: path.to_path_buf(),
            closing,
            listener: ours,
        })
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `closing`.
        // SAFETY: shutting down a socket we own; no memory is involved.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = std::fs::remove_file(&self.path);
    }
}

fn splice_unix(a: UnixStream, b: UnixStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || {
        let (mut a, mut b) = (a, b);
        let _ = io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = t.join();
}

fn splice_tcp(a: UnixStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || {
        let (mut a, mut b) = (a, b);
        let _ = io::copy(&mut a, &mut b);
        let _ = b.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = t.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn echo_upper_tcp() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        let _ = c.write_all(&buf[..n].to_ascii_uppercase());
                    }
                });
            }
        });
        a
    }

    #[test]
    fn the_door_relays_to_the_endpoint_and_caps_connections() {
        let d = tempfile::tempdir().unwrap();
        let door_path = d.path().join("egress");
        let door = Door::open(&door_path, EgressEndpoint::Tcp(echo_upper_tcp()), None).unwrap();
        let mut c = UnixStream::connect(&door_path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"connect").unwrap();
        let mut got = [0u8; 7];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"CONNECT");

        // The cap: MAX_CONNECTIONS held open, the next one is closed unserved.
        let mut held = vec![c];
        for _ in 1..MAX_CONNECTIONS {
            let mut c = UnixStream::connect(&door_path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap();
            held.push(c);
        }
        let mut extra = UnixStream::connect(&door_path).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = extra.write_all(b"x");
        let mut rest = Vec::new();
        let _ = extra.read_to_end(&mut rest);
        assert!(rest.is_empty(), "a connection over the cap was served");
        drop(held);
        std::fs::remove_file(&door_path).unwrap(); // as when the VM directory goes first
        drop(door);
        assert!(!door_path.exists());
    }

    #[test]
    fn unix_endpoints_work_too() {
        let d = tempfile::tempdir().unwrap();
        let proxy = d.path().join("proxy.sock");
        let l = UnixListener::bind(&proxy).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap();
        });
        let door_path = d.path().join("door");
        let _door = Door::open(&door_path, EgressEndpoint::Unix(proxy), None).unwrap();
        let mut c = UnixStream::connect(&door_path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    }
}
