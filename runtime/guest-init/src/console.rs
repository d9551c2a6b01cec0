//! A terminal for a one-off process (`byteport run` with a TTY): a
//! pseudo-terminal whose slave is the process's stdin, stdout and stderr
//! (in a session of its own, with it as controlling terminal), and whose
//! master is relayed, raw, to and from the console's virtio-serial port.
//!
//! Every byte from the host is input for the terminal: there is no in-band
//! escape (anything typed could forge it). Window changes come on the
//! records channel instead (`WINCH <cols> <rows>`, a host request like
//! `STOP`, which only the host can send; [`resize`]). When the host hangs up
//! (it closes its end of the port), the session gets SIGHUP, as a terminal
//! that goes away sends; output nobody can take any more is dropped, so the
//! process never blocks on it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use guest_init::config::ConsoleChannel;

/// Bytes moved per read.
const CHUNK: usize = 16 * 1024;

/// The running console's master (a descriptor of its own), for resizes.
static MASTER: std::sync::Mutex<Option<File>> = std::sync::Mutex::new(None);

fn set_window(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    check(
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) },
        "setting the window size",
    )?;
    Ok(())
}

/// A host request `WINCH <cols> <rows>`: resizes the running console's
/// window (the kernel sends SIGWINCH to its foreground process group).
/// Anything else, or no console, is ignored.
pub fn resize(request: &str) {
    let mut words = request.split_ascii_whitespace();
    if words.next() != Some("WINCH") {
        return;
    }
    let (Some(Ok(cols)), Some(Ok(rows)), None) = (
        words.next().map(str::parse::<u16>),
        words.next().map(str::parse::<u16>),
        words.next(),
    ) else {
        return;
    };
    if let Some(m) = MASTER.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        let _ = set_window(m.as_raw_fd(), cols, rows);
    }
}

/// A pseudo-terminal pair.
pub struct Pty {
    /// The side the init relays.
    pub master: File,
    /// The side the process gets.
    pub slave: File,
}

fn check(rc: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

/// Opens a pseudo-terminal with a `cols`×`rows` window, its slave owned by
/// `uid:gid` (as `login` does).
pub fn open_pty(cols: u16, rows: u16, uid: u32, gid: u32) -> io::Result<Pty> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let fd = check(
        unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
        "opening /dev/ptmx",
    )?;
    // SAFETY: fd is ours from here on.
    let master = unsafe { File::from_raw_fd(fd) };
    let m = master.as_raw_fd();
    // SAFETY: plain calls on a valid master descriptor.
    check(unsafe { libc::grantpt(m) }, "grantpt")?;
    check(unsafe { libc::unlockpt(m) }, "unlockpt")?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer and its length are valid; ptsname_r NUL-terminates.
    let rc = unsafe { libc::ptsname_r(m, name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(io::Error::new(
            io::Error::from_raw_os_error(rc).kind(),
            "ptsname",
        ));
    }
    // SAFETY: NUL-terminated by ptsname_r.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    std::os::unix::fs::fchown(&slave, Some(uid), Some(gid))
        .map_err(|e| io::Error::new(e.kind(), format!("chown {path}: {e}")))?;
    set_window(m, cols, rows)?;
    Ok(Pty { master, slave })
}

/// For `pre_exec` in the child: a new session whose controlling terminal is
/// its stdin (the slave).
pub fn become_session_leader() -> io::Result<()> {
    // SAFETY: async-signal-safe calls in the forked child.
    unsafe {
        if libc::setsid() < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Opens the console's port for relaying (non-blocking: a host that went
/// away must not stall the relay).
pub fn open_port(dev: &std::path::Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dev)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dev.display())))
}

/// Opens the console's channel: the virtio-serial port (QEMU), or the
/// vsock connections to the host (own VMM), whose control connection then
/// carries the window changes (`WINCH` lines, [`resize`]). Non-blocking:
/// a host that went away must not stall the relay.
pub fn open_channel(channel: &ConsoleChannel) -> io::Result<File> {
    match channel {
        ConsoleChannel::VirtioPort { name } => open_port(&crate::channel::find_port(name, 100)?),
        ConsoleChannel::Vsock { data, control } => {
            let data = File::from(OwnedFd::from(
                crate::vsock::VsockStream::connect_host_privileged(*data)?,
            ));
            let control = File::from(OwnedFd::from(
                crate::vsock::VsockStream::connect_host_privileged(*control)?,
            ));
            crate::channel::watch_requests(control, ignore_stop);
            set_nonblocking(&data)?;
            Ok(data)
        }
    }
}

/// A `STOP` on the console's control connection: the own VMM stops a VM
/// with the ACPI power button, never with this.
fn ignore_stop() {}

fn set_nonblocking(f: &File) -> io::Result<()> {
    // SAFETY: fcntl on a valid descriptor.
    let flags = check(
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) },
        "reading the console's flags",
    )?;
    // SAFETY: as above.
    check(
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) },
        "making the console non-blocking",
    )?;
    Ok(())
}

/// Waits until `fd` has one of `events` (or a hang-up); the returned events.
fn wait_for(fd: RawFd, events: libc::c_short, timeout: Duration) -> libc::c_short {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    if n > 0 {
        p.revents
    } else {
        0
    }
}

/// Relays `master` ↔ `port` in two threads for the session led by
/// `session`. The receiver gets a message once all output has been
/// relayed (every holder of the slave closed it).
pub fn relay(port: File, master: File, session: i32) -> io::Result<Receiver<()>> {
    let (done, finished) = mpsc::channel();
    let port_in = port.try_clone()?;
    let master_in = master.try_clone()?;
    *MASTER.lock().unwrap_or_else(|p| p.into_inner()) = Some(master.try_clone()?);
    std::thread::Builder::new()
        .name("console-in".into())
        .spawn(move || relay_input(port_in, master_in, session))?;
    std::thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            relay_output(master, port);
            let _ = done.send(());
        })?;
    Ok(finished)
}

/// Host → terminal. Input is written as it comes; the terminal's own
/// buffer gives back-pressure when the process does not read.
fn relay_input(mut port: File, mut master: File, session: i32) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match port.read(&mut buf) {
            // The host closed its end: hang up, as a terminal does.
            Ok(0) => {
                // SAFETY: signalling the session's process group.
                unsafe { libc::kill(-session, libc::SIGHUP) };
                return;
            }
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    return; // the process is gone
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_for(port.as_raw_fd(), libc::POLLIN, Duration::from_secs(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Terminal → host, until every holder of the slave has closed it (the
/// master then reads EIO). Once the host has hung up, output is dropped.
fn relay_output(mut master: File, mut port: File) {
    let mut buf = vec![0u8; CHUNK];
    let mut host_gone = false;
    loop {
        let n = match master.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return, // EIO: the slave is closed
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() && !host_gone {
            match port.write(rest) {
                Ok(0) => host_gone = true,
                Ok(k) => rest = &rest[k..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let ev = wait_for(port.as_raw_fd(), libc::POLLOUT, Duration::from_secs(1));
                    if ev & libc::POLLHUP != 0 {
                        host_gone = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => host_gone = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_has_the_window_it_was_given() {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let pty = match open_pty(132, 43, uid, gid) {
            Ok(p) => p,
            Err(e) => panic!("no pseudo-terminal on this host: {e}"),
        };
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
        let rc = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_col, size.ws_row), (132, 43));
    }
    #[test]
    fn winch_requests_resize_the_running_console_and_nothing_else_does() {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let pty = open_pty(80, 24, uid, gid).expect("a pseudo-terminal");
        *MASTER.lock().unwrap() = Some(pty.master.try_clone().unwrap());
        let window = || {
            let mut size = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes a winsize to a valid pointer.
            unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
            (size.ws_col, size.ws_row)
        };
        for ignored in [
            "STOP",
            "WINCH 1",
            "WINCH 1 2 3",
            "WINCH x 2",
            "WINCH 70000 2",
        ] {
            resize(ignored);
            assert_eq!(window(), (80, 24), "{ignored}");
        }
        resize("WINCH 90 33\n");
        assert_eq!(window(), (90, 33));
        *MASTER.lock().unwrap() = None;
    }
}
