//! The host link over virtio-vsock, when the VM runs under BytePort's own VMM:
//! log records go to the host (CID 2) on [`VSOCK_LOG_PORT`] instead of the serial
//! console, and host connections to a vsock port are proxied to the app's TCP
//! port on 127.0.0.1. If the link cannot be made or breaks, records go back to
//! the console, as under the QEMU driver.
//!
//! [`VSOCK_LOG_PORT`]: guest_init::config::VSOCK_LOG_PORT

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use guest_init::config::VsockProxy;

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

/// Connects the log link, retrying for about two seconds (the host listens
/// before the VM starts, but the vsock transport may still be probing).
pub fn connect_log(port: u32) -> io::Result<VsockStream> {
    let mut last = io::Error::other("not tried");
    for _ in 0..20 {
        match VsockStream::connect_host(port) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// Log records over the link; on the first failure, to the console for good.
pub struct LinkWriter {
    link: Option<VsockStream>,
    console: Box<dyn Write + Send>,
}

impl LinkWriter {
    /// Writes to `link`, falling back to `console`.
    pub fn new(link: VsockStream, console: Box<dyn Write + Send>) -> Self {
        Self {
            link: Some(link),
            console,
        }
    }
}

impl Write for LinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(l) = self.link.as_mut() {
            match l.write_all(buf) {
                Ok(()) => return Ok(buf.len()),
                Err(e) => {
                    self.link = None;
                    let note = format!(
                        "[bp 0 init evt] WARN vsock log link lost ({e}); using the console\n"
                    );
                    let _ = self.console.write_all(note.as_bytes());
                }
            }
        }
        self.console.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.console.flush()
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
    use std::sync::{Arc, Mutex};

    /// A stream socket standing in for vsock (same syscalls).
    fn pair() -> (VsockStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (VsockStream(OwnedFd::from(a)), b)
    }

    #[derive(Clone, Default)]
    struct Console(Arc<Mutex<Vec<u8>>>);
    impl Write for Console {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_go_over_the_link_and_to_the_console_once_it_breaks() {
        let (link, mut host) = pair();
        let console = Console::default();
        let mut w = LinkWriter::new(link, Box::new(console.clone()));
        w.write_all(b"[bp 1 web out] one\n").unwrap();
        let mut got = [0u8; 19];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"[bp 1 web out] one\n");
        assert!(console.0.lock().unwrap().is_empty());
        drop(host);
        w.write_all(b"[bp 2 web out] two\n").unwrap();
        let text = String::from_utf8(console.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("vsock log link lost"), "{text}");
        assert!(text.ends_with("[bp 2 web out] two\n"), "{text}");
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
