//! Admin commands with the client's terminal, stdin and window size
//! (`Commands::run_interactive`), driven by the real OpenSSH client: with
//! `-tt` and a piped stdin, with a real pty as its stdin (so it sends its
//! window size and, on SIGWINCH, `window-change`), and git over a channel
//! that asked for a terminal (stdin floods: `stdin_flood.rs`). Commands that implement
//! only `run` behave as before. Timings are hang guards only.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::client::*;
use support::probe::Probe;
use support::*;

/// Bytes a terminal would mangle if anything on the way translated them.
const BINARY: &[u8] = b"hello\r\nworld\n\x00\xff\x1b[31mred\x04\x03 done";

#[test]
fn stdin_reaches_an_interactive_command_untranslated_with_its_terminal() {
    let s = Server::start_with(|_| {}, Probe::new());
    // `-tt` with a piped stdin: OpenSSH asks for a terminal of size 0x0.
    let (status, out, err) = run_piped(&s, "-tt git@127.0.0.1 echo", BINARY);
    let shown = String::from_utf8_lossy(&out);
    assert_eq!(status.code(), Some(0), "{shown} {err}");
    assert!(contains(&out, b"tty: xterm-test 0x0\r\n"), "{shown}");
    assert!(contains(&out, BINARY), "{shown}");
    assert!(contains(&out, b"[eof]\r\n"), "the client's EOF: {shown}");
    assert!(!err.contains("PTY allocation request failed"), "{err}");
}

#[test]
fn without_a_terminal_stdin_still_reaches_the_command() {
    let s = Server::start_with(|_| {}, Probe::new());
    let (status, out, err) = run_piped(&s, "git@127.0.0.1 echo", BINARY);
    let shown = String::from_utf8_lossy(&out);
    assert_eq!(status.code(), Some(0), "{shown} {err}");
    assert!(out.starts_with(b"tty: none\r\n"), "{shown}");
    assert!(contains(&out, BINARY), "{shown}");
    assert!(contains(&out, b"[eof]"), "{shown}");
}

/// A pty pair whose slave is ssh's stdin, so ssh reports its size.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn set_size(fd: &OwnedFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a valid fd and a valid winsize for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds; the name, termios and size are unused.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fds this process now owns.
    unsafe {
        Pty {
            master: OwnedFd::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// Waits until `out` holds `needle`.
fn wait_for(out: &Mutex<Vec<u8>>, needle: &str, child: &mut Child) {
    let started = Instant::now();
    while !contains(&out.lock().unwrap(), needle.as_bytes()) {
        if started.elapsed() > GUARD || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "never saw {needle:?}: {} (stderr: {err})",
                String::from_utf8_lossy(&out.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_window_size_and_its_changes_reach_the_command_clamped() {
    let s = Server::start_with(|_| {}, Probe::new());
    let pty = open_pty();
    set_size(&pty.slave, 120, 40);
    let mut child = ssh_command(&s, "-tt git@127.0.0.1 winch")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, reader) = collect(&mut child);
    wait_for(&out, "tty: xterm-test 120x40\r\n", &mut child);
    let pid = child.id() as libc::pid_t;
    for (cols, rows, want) in [
        (200, 50, "size 200x50\r\n"),
        (65_000, 3, "size 10000x3\r\n"),
    ] {
        set_size(&pty.slave, cols, rows);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGWINCH) };
        wait_for(&out, want, &mut child);
    }
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    master.write_all(b"q").unwrap();
    let status = wait(&mut child, "winch");
    drop(pty);
    reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn a_bad_term_becomes_dumb_and_the_client_is_told() {
    let s = Server::start_with(|_| {}, Probe::new());
    let mut c = ssh_command(&s, "-tt git@127.0.0.1 echo");
    c.env("TERM", "xterm;rm -rf /");
    let out = c.stdin(Stdio::null()).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{shown} {err}");
    assert!(
        err.contains("byteport: TERM `xterm;rm -rf /` cannot be used") && err.contains("`dumb`"),
        "{err}"
    );
    assert!(shown.starts_with("tty: dumb 0x0\r\n"), "{shown}");
}

#[test]
fn git_over_a_channel_that_asked_for_a_terminal_is_byte_exact() {
    // The terminal is ignored for git services: nothing is translated, so
    // a push and a clone through `ssh -tt` work.
    let s = Server::start(|_| {});
    let ssh = format!("{} -tt -e none", s.ssh());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    git_ok(&src, &["init", "-q", "-b", "main"], "");
    commit(&src, "bin", "\r\n\x00\x1b binary-ish\r\n", "first");
    git_ok(&src, &["push", "-q", &s.url("ptyapp"), "main"], &ssh);
    let dst = work.path().join("dst");
    git_ok(
        work.path(),
        &["clone", "-q", &s.url("ptyapp"), dst.to_str().unwrap()],
        &ssh,
    );
    assert_eq!(
        git_ok(&src, &["rev-parse", "HEAD"], ""),
        git_ok(&dst, &["rev-parse", "HEAD"], "")
    );
    assert_eq!(
        std::fs::read(dst.join("bin")).unwrap(),
        b"\r\n\x00\x1b binary-ish\r\n"
    );
}

#[test]
fn commands_that_only_implement_run_are_unchanged_and_their_stdin_is_dropped() {
    // The test server's commands implement `run` only.
    let s = Server::start(|_| {});
    for args in ["git@127.0.0.1 apps", "-tt git@127.0.0.1 apps"] {
        let junk = vec![b'j'; 1 << 20];
        let (status, out, err) = run_piped(&s, args, &junk);
        let shown = String::from_utf8_lossy(&out);
        assert_eq!(status.code(), Some(0), "{args}: {shown} {err}");
        assert_eq!(shown, "ran apps\n", "{args}: {err}");
    }
}
