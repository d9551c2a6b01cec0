//! Host-side helpers of the vsock muxer: the Unix-socket side (non-blocking
//! connect, the `CONNECT <port>` line) and the raw header of packets for the guest.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use virtio_vsock::packet::PKT_HEADER_SIZE;

use super::{HOST_CID, TYPE_STREAM};

pub(super) fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// Non-blocking connect to a Unix socket: a host listener with a full backlog
/// must not stall the event loop.
pub(super) fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain syscall; the returned fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `addr` is a valid sockaddr_un and the length is its size.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(owned))
}

/// Parses `CONNECT <port>` (without the newline).
pub(super) fn parse_connect(line: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(line).ok()?;
    let port = s.strip_prefix("CONNECT ")?.trim_end_matches('\r');
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

/// What one RX packet carries (see [`Muxer::fill_rx`]).
pub(super) struct Out {
    pub key: (u32, u32),
    pub op: u16,
    pub flags: u32,
    pub len: u32,
    pub credit: (u32, u32),
}

/// The raw header of an RX packet from the host (CID 2) to the guest.
pub(super) fn header(guest_cid: u64, o: &Out) -> [u8; PKT_HEADER_SIZE] {
    let mut h = [0u8; PKT_HEADER_SIZE];
    h[0..8].copy_from_slice(&HOST_CID.to_le_bytes());
    h[8..16].copy_from_slice(&guest_cid.to_le_bytes());
    h[16..20].copy_from_slice(&o.key.0.to_le_bytes());
    h[20..24].copy_from_slice(&o.key.1.to_le_bytes());
    h[24..28].copy_from_slice(&o.len.to_le_bytes());
    h[28..30].copy_from_slice(&TYPE_STREAM.to_le_bytes());
    h[30..32].copy_from_slice(&o.op.to_le_bytes());
    h[32..36].copy_from_slice(&o.flags.to_le_bytes());
    h[36..40].copy_from_slice(&o.credit.0.to_le_bytes());
    h[40..44].copy_from_slice(&o.credit.1.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 80"), Some(80));
        assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Some(u32::MAX));
        for bad in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"CONNECT -1",
            b"CONNECT 4294967296",
            b"connect 80",
            b"CONNECT 80 81",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_connect(bad), None, "{bad:?}");
        }
    }
}
