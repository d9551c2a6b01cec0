//! virtio-vsock in the guest, when the VM runs under BytePort's own VMM: the
//! stream socket itself (connecting from a privileged port is how the records
//! channel proves it is PID 1's), host connections to a vsock port proxied to
//! the app's TCP port on 127.0.0.1, and the app's outbound proxy — a TCP
//! listener in the guest whose connections go to a host vsock port.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guest_init::config::{VsockEgress, VsockProxy};

/// Most connections the app may have open through its outbound proxy.
const MAX_EGRESS_CONNECTIONS: usize = 64;

/// The host's context id.
const HOST_CID: u32 = 2;

/// A connected vsock stream socket.
#[derive(Debug)]
pub struct VsockStream(OwnedFd);

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

impl VsockStream {
    /// Connects to `port` on the host.
    pub fn connect_host(port: u32) -> io::Result<Self> {
        let s = socket()?;
        let a = addr(HOST_CID, port);
        // SAFETY: valid socket fd and a sockaddr_vm of the given length.
        let rc = unsafe {
            libc::connect(
                s.as_raw_fd(),
                (&a as *const libc::sockaddr_vm).cast(),
                ADDR_LEN,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(s))
    }

    /// Connects to `port` on the host from a local port below 1024, which
    /// only root can bind: the host's VMM admits such connections to its
    /// root-only ports (the records channel) and refuses an app's.
    pub fn connect_host_privileged(port: u32) -> io::Result<Self> {
        let mut last = io::Error::other("no privileged vsock port is free");
        for local in (600..1024).rev() {
            let s = socket()?;
            let a = addr(libc::VMADDR_CID_ANY, local);
            // SAFETY: valid socket fd and a sockaddr_vm of the given length.
            let rc = unsafe {
                libc::bind(
                    s.as_raw_fd(),
                    (&a as *const libc::sockaddr_vm).cast(),
                    ADDR_LEN,
                )
            };
            if rc < 0 {
                last = io::Error::last_os_error();
                if last.raw_os_error() == Some(libc::EADDRINUSE) {
                    continue;
                }
                return Err(last);
            }
            let h = addr(HOST_CID, port);
            // SAFETY: valid socket fd and a sockaddr_vm of the given length.
            let rc = unsafe {
                libc::connect(
                    s.as_raw_fd(),
                    (&h as *const libc::sockaddr_vm).cast(),
                    ADDR_LEN,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(Self(s));
        }
        Err(last)
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }

    fn shutdown(&self, how: Shutdown) {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: valid socket fd.
        unsafe { libc::shutdown(self.0.as_raw_fd(), how) };
    }
}

impl From<VsockStream> for OwnedFd {
    fn from(s: VsockStream) -> OwnedFd {
        s.0
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads. MSG_NOSIGNAL: a
        // vanished host is an error, not a SIGPIPE.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects the records channel (from a privileged port), retrying for
/// about two seconds: the host listens before the VM starts, but the vsock
/// transport may still be probing.
pub fn connect_records(port: u32) -> io::Result<VsockStream> {
    let mut last = io::Error::other("not tried");
    for _ in 0..20 {
        match VsockStream::connect_host_privileged(port) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// The records channel over vsock: reconnects once when a write fails (the
/// host side restarted its listener), else drops the record — records never
/// go to the console, where the host would not believe them.
pub struct RecordsLink {
    port: u32,
    link: Option<VsockStream>,
}

impl RecordsLink {
    /// A channel to host `port` over `link`.
    pub fn new(port: u32, link: VsockStream) -> Self {
        Self {
            port,
            link: Some(link),
        }
    }
}

impl Write for RecordsLink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for _ in 0..2 {
            if self.link.is_none() {
                self.link = VsockStream::connect_host_privileged(self.port).ok();
            }
            match self.link.as_mut().map(|l| l.write_all(buf)) {
                Some(Ok(())) => return Ok(buf.len()),
                Some(Err(_)) => self.link = None,
                None => break,
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Listens on vsock `p.vsock_port` and proxies each connection to
/// `127.0.0.1:p.tcp_port` (in its own threads).
pub fn spawn_proxy(p: VsockProxy) -> io::Result<()> {
    let s = socket()?;
    let a = addr(libc::VMADDR_CID_ANY, p.vsock_port);
    // SAFETY: valid socket fd and a sockaddr_vm of the given length.
    let rc = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&a as *const libc::sockaddr_vm).cast(),
            ADDR_LEN,
        )
    };
    // SAFETY: valid bound socket fd.
    if rc < 0 || unsafe { libc::listen(s.as_raw_fd(), 64) } < 0 {
        return Err(io::Error::last_os_error());
    }
    std::thread::spawn(move || loop {
        // SAFETY: valid listening fd; the peer address is not wanted.
        let c = unsafe {
            libc::accept4(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        // SAFETY: `c` is a fresh fd we own.
        let conn = VsockStream(unsafe { OwnedFd::from_raw_fd(c) });
        std::thread::spawn(move || {
            // The app may not be listening yet (health probes); the host then
            // sees the connection close.
            if let Ok(tcp) = TcpStream::connect(("127.0.0.1", p.tcp_port)) {
                splice(conn, tcp);
            }
        });
    });
    Ok(())
}

/// Listens on `e.listen` in the guest and relays each connection to host
/// vsock port `e.host_port` (the runtime's door to the app's egress proxy),
/// at most [`MAX_EGRESS_CONNECTIONS`] at a time.
pub fn spawn_egress(e: VsockEgress) -> io::Result<()> {
    let listener = TcpListener::bind(e.listen)?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            if open.fetch_add(1, Ordering::SeqCst) >= MAX_EGRESS_CONNECTIONS {
                open.fetch_sub(1, Ordering::SeqCst);
                continue; // dropped: too many at once
            }
            let open = open.clone();
            std::thread::spawn(move || {
                if let Ok(v) = VsockStream::connect_host(e.host_port) {
                    splice(v, tcp);
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(())
}

/// Copies both ways until each side has sent EOF.
fn splice(v: VsockStream, t: TcpStream) {
    let (Ok(mut v2), Ok(mut t2)) = (v.try_clone(), t.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut v = v;
        let mut t = t;
        let _ = io::copy(&mut v, &mut t);
        let _ = t.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut t2, &mut v2);
    v2.shutdown(Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A stream socket standing in for vsock (same syscalls).
    fn pair() -> (VsockStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (VsockStream(OwnedFd::from(a)), b)
    }

    #[test]
    fn the_records_link_drops_what_it_cannot_send_without_blocking() {
        let (link, mut host) = pair();
        // Port 0 never connects in a test process (no vsock here).
        let mut w = RecordsLink::new(0, link);
        w.write_all(b"[bp 1 web out] one\n").unwrap();
        let mut got = [0u8; 19];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"[bp 1 web out] one\n");
        drop(host);
        // The host is gone and no reconnect works: the record is dropped,
        // the writer does not fail (the app keeps running).
        w.write_all(b"[bp 2 web out] two\n").unwrap();
    }

    #[test]
    fn splice_copies_both_ways_and_passes_eof_on() {
        let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = app.local_addr().unwrap();
        let (guest_end, mut host) = pair();
        let t = std::thread::spawn(move || splice(guest_end, TcpStream::connect(addr).unwrap()));
        let (mut a, _) = app.accept().unwrap();
        host.write_all(b"GET /").unwrap();
        host.shutdown(Shutdown::Write).unwrap();
        let mut req = String::new();
        a.read_to_string(&mut req).unwrap();
        assert_eq!(req, "GET /");
        a.write_all(b"200 OK").unwrap();
        drop(a);
        let mut resp = String::new();
        host.read_to_string(&mut resp).unwrap();
        assert_eq!(resp, "200 OK");
        t.join().unwrap();
    }
}
