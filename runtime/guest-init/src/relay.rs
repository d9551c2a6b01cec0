//! `byteport-init --relay SOCKET`, on the host: copies stdin to a Unix
//! socket and the socket to stdout until both directions end. QEMU runs it
//! for each guest connection to the egress address (`guestfwd=...-cmd:`),
//! inside QEMU's jail and seccomp filter; the socket is the runtime's door
//! to the app's egress proxy. Its stderr is the guest's connection too, so
//! it never writes there.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Relays until both sides are done; the exit status (0 ok, 1 no socket).
pub fn run(socket: &Path) -> i32 {
    let Ok(up) = UnixStream::connect(socket) else {
        return 1;
    };
    let Ok(down) = up.try_clone() else {
        return 1;
    };
    std::thread::spawn(move || {
        let mut up = up;
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut down = down;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
        }
    }
    // stdin and stdout are one socket (QEMU's end of the guest connection):
    // shutting its write side tells the guest the proxy is done. The other
    // direction has nobody left to talk to; exiting ends it.
    // SAFETY: plain syscall on our own descriptor.
    unsafe { libc::shutdown(1, libc::SHUT_WR) };
    0
}
