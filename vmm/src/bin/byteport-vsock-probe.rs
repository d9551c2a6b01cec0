//! `byteport-vsock-probe`: a small static tool to check a VM's vsock path end to end,
//! from both sides (used by the nested test host; handy when debugging a guest).
//!
//! ```text
//! byteport-vsock-probe serve PORT            # guest: answer each line on vsock PORT with "pong:<line>"
//! byteport-vsock-probe dial PORT MSG         # guest: connect to the host (CID 2) PORT, send MSG, print the answer
//! byteport-vsock-probe serve-uds PATH        # host: answer each line on Unix socket PATH (guest dials land here)
//! byteport-vsock-probe call UDS PORT MSG [SECS]
//!                                            # host: `CONNECT PORT` through the VMM's socket UDS (retrying
//!                                            # for SECS seconds while the guest is not listening), send MSG,
//!                                            # print the answer
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

const HOST_CID: u32 = 2;

fn fail(msg: String) -> ! {
    eprintln!("byteport-vsock-probe: {msg}");
    std::process::exit(1)
}

fn vsock_socket() -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        fail(format!("vsock socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// Answers each line of `conn` with `pong:<line>`.
fn answer(conn: impl Read + Write) {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
        let reply = format!("pong:{}\n", line.trim_end());
        if r.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

fn ask(mut conn: impl Read + Write, msg: &str) -> String {
    writeln!(conn, "{msg}").unwrap_or_else(|e| fail(format!("send: {e}")));
    let mut reply = String::new();
    BufReader::new(conn)
        .read_line(&mut reply)
        .unwrap_or_else(|e| fail(format!("reply: {e}")));
    reply.trim_end().to_string()
}

fn port(s: &str) -> u32 {
    s.parse()
        .unwrap_or_else(|_| fail(format!("{s:?} is not a port")))
}

fn serve(port: u32) -> ! {
    let s = vsock_socket();
    let a = vsock_addr(libc::VMADDR_CID_ANY, port);
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd and sockaddr_vm of the given length.
    if unsafe { libc::bind(s.as_raw_fd(), (&a as *const libc::sockaddr_vm).cast(), ADDR_LEN) } < 0
    // SAFETY: valid listening fd.
        || unsafe { libc::listen(s.as_raw_fd(), 16) } < 0
    {
        fail(format!(
            "vsock port {port}: {}",
            std::io::Error::last_os_error()
        ));
    }
    loop {
        // SAFETY: valid fd; we do not want the peer address.
        let c = unsafe {
            libc::accept4(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            continue;
        }
        // SAFETY: `c` is a fresh fd we own; a vsock stream behaves like any stream socket.
        let conn = unsafe { UnixStream::from(OwnedFd::from_raw_fd(c)) };
        std::thread::spawn(move || answer(conn));
    }
}

fn dial(port: u32, msg: &str) {
    let s = vsock_socket();
    let a = vsock_addr(HOST_CID, port);
    use std::os::fd::AsRawFd;
    // SAFETY: valid fd and sockaddr_vm of the given length.
    if unsafe {
        libc::connect(
            s.as_raw_fd(),
            (&a as *const libc::sockaddr_vm).cast(),
            ADDR_LEN,
        )
    } < 0
    {
        fail(format!(
            "vsock connect to host port {port}: {}",
            std::io::Error::last_os_error()
        ));
    }
    println!("{}", ask(UnixStream::from(s), msg));
}

/// The Firecracker-style handshake; `None` if the guest refused (not listening yet).
fn call_once(uds: &str, port: u32, msg: &str) -> Option<String> {
    let mut s = UnixStream::connect(uds).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    writeln!(s, "CONNECT {port}").ok()?;
    let mut ok = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        ok.push(b[0]);
    }
    if !ok.starts_with(b"OK ") {
        fail(format!(
            "unexpected handshake reply {:?}",
            String::from_utf8_lossy(&ok)
        ));
    }
    Some(ask(s, msg))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["serve", p] => serve(port(p)),
        ["dial", p, msg] => dial(port(p), msg),
        ["serve-uds", path] => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).unwrap_or_else(|e| fail(format!("{path}: {e}")));
            for c in l.incoming().flatten() {
                std::thread::spawn(move || answer(c));
            }
        }
        ["call", uds, p, msg, rest @ ..] => {
            let secs: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(0);
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                if let Some(r) = call_once(uds, port(p), msg) {
                    println!("{r}");
                    return;
                }
                if Instant::now() >= deadline {
                    fail(format!("no answer on vsock port {p} through {uds}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        _ => fail(
            "usage: serve PORT | dial PORT MSG | serve-uds PATH | call UDS PORT MSG [SECS]".into(),
        ),
    }
}
