//! Admin commands with the client's terminal, stdin and window size
//! (`Commands::run_interactive`), driven by the real OpenSSH client: with
//! `-tt` and a piped stdin, with a real pty as its stdin (so it sends its
//! window size and, on SIGWINCH, `window-change`), flooding its stdin, and
//! git over a channel that asked for a terminal. Commands that implement
//! only `run` behave as before. Timings are hang guards only.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::probe::Probe;
use support::*;

/// A hang guard.
const GUARD: Duration = Duration::from_secs(120);

/// `ssh` with the test key and `args`, escapes off (binary stdin must not
/// be read as `~.`).
fn ssh_command(s: &Server, args: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("exec {} -e none {args}", s.ssh()))
        .env("TERM", "xterm-test");
    c
}

/// Waits for `child` within the hang guard.
fn wait(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if started.elapsed() > GUARD {
            let _ = child.kill();
            panic!("{what}: still running after {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `args` with `stdin` piped in, then closed.
fn run_piped(s: &Server, args: &str, stdin: &[u8]) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = ssh_command(s, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let status = wait(&mut child, args);
    writer.join().unwrap();
    let out = reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (status, out, err)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

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

/// Collects `child`'s stdout as it comes.
fn collect(child: &mut Child) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn({
        let out = out.clone();
        move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut b) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&b[..n]);
            }
        }
    });
    (out, reader)
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
fn a_stdin_flood_is_held_back_not_buffered() {
    // 48 MiB is several times what the pipes, the client, the two
    // loopback socket buffers and gitd's bounded queues can hold together.
    const TOTAL: u64 = 48 << 20;
    let probe = Probe::new();
    let s = Server::start_with(|_| {}, probe.clone());
    let mut child = ssh_command(&s, "-tt git@127.0.0.1 count")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let accepted = accepted.clone();
        move || {
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < TOTAL {
                if input.write_all(&chunk).is_err() {
                    return;
                }
                sent += chunk.len() as u64;
                accepted.store(sent, Ordering::SeqCst);
            }
        }
    });
    // Until the command reads, what the client took stops growing.
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let now = accepted.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(started.elapsed() < GUARD, "hang guard");
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = last.0;
    eprintln!(
        "flood held back after {} KiB of {} KiB",
        held >> 10,
        TOTAL >> 10
    );
    assert!(
        held < TOTAL,
        "the whole flood was taken in before the command read any"
    );
    probe.go.send_replace(true);
    writer.join().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let status = wait(&mut child, "count");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("bytes {TOTAL}\r\n")),
        "every byte, once: {out}"
    );
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

/// How long output may stand still while a flood is echoed before the
/// test calls it a deadlock (a deadlock never moves again; gitd's idle
/// timeout, 10 min by default, is far away).
const STUCK: Duration = Duration::from_secs(60);

/// Pipes `data` into `ssh args` and collects stdout; a deadlock (stdout
/// standing still for [`STUCK`] while ssh runs) kills ssh and panics.
fn run_watched(
    s: &Server,
    args: &str,
    data: Arc<Vec<u8>>,
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = ssh_command(s, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let (data, sent) = (data.clone(), sent.clone());
        move || {
            for chunk in data.chunks(64 * 1024) {
                if input.write_all(chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
    let (out, reader) = collect(&mut child);
    let mut last = (0, Instant::now());
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        let now = out.lock().unwrap().len();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STUCK {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "deadlocked: the echoed output stood still at {now} of {} bytes for {STUCK:?} \
                 (the client had sent {} bytes)",
                data.len(),
                sent.load(Ordering::SeqCst)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    reader.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let out = std::mem::take(&mut *out.lock().unwrap());
    (status, out, err)
}

#[test]
fn a_command_echoing_a_flood_back_does_not_deadlock() {
    // The command writes each packet before it reads the next, while the
    // client keeps sending: input held back must not stop the output that
    // would let the command read on. With input held back whatever the
    // output does, the connection's one loop waits to hand the command
    // more input while the command waits for that loop to send its
    // output (seen when the machine is busy).
    let s = Server::start_with(|_| {}, Probe::new());
    let data: Arc<Vec<u8>> = Arc::new((0..48u32 << 20).map(|i| (i % 251) as u8).collect());
    for args in ["git@127.0.0.1 echo", "-tt git@127.0.0.1 echo"] {
        let (status, out, err) = run_watched(&s, args, data.clone());
        assert_eq!(status.code(), Some(0), "{args}: {err}");
        assert!(!err.contains("byteport:"), "{args}: input was cut: {err}");
        let head = if args.starts_with("-tt") {
            &b"tty: xterm-test 0x0\r\n"[..]
        } else {
            &b"tty: none\r\n"[..]
        };
        assert!(out.starts_with(head), "{args}");
        assert!(out.ends_with(b"[eof]\r\n"), "{args}");
        assert!(
            out[head.len()..out.len() - 7] == data[..],
            "{args}: every byte, in order: {} of {}",
            out.len() - head.len() - 7,
            data.len()
        );
    }
}

/// Floods `ssh args` with 48 MiB from a thread; returns the child and
/// how much of it the client has taken so far.
fn flood(s: &Server, args: &str) -> (Child, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let mut child = ssh_command(s, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let accepted = accepted.clone();
        move || {
            let chunk = vec![b'x'; 64 * 1024];
            while accepted.load(Ordering::SeqCst) < 48 << 20 {
                if input.write_all(&chunk).is_err() {
                    return;
                }
                accepted.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
    (child, accepted, writer)
}

/// Waits until what the client took stops growing for 2 s.
fn wait_until_held_back(accepted: &AtomicU64) -> u64 {
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let now = accepted.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            return now;
        }
        assert!(started.elapsed() < GUARD, "hang guard");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_command_that_ends_during_a_held_back_flood_still_reports_its_exit_status() {
    // `hold` reads nothing, so the flood is held back: the channel's
    // queue is full and the connection's loop waits on it. Then the
    // command writes ten lines, which fill the session's queue of
    // messages to send (10), and ends without reading: until its exit
    // status is out, the channel's data must still be taken (and
    // dropped), or the exit status waits for ever behind a full queue
    // that a stopped loop never empties.
    let probe = Probe::new();
    let s = Server::start_with(|_| {}, probe.clone());
    let (mut child, accepted, writer) = flood(&s, "git@127.0.0.1 hold");
    let held = wait_until_held_back(&accepted);
    assert!(held < 48 << 20, "never held back");
    probe.go.send_replace(true);
    let status = wait(&mut child, "hold");
    writer.join().unwrap();
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    assert_eq!(status.code(), Some(5), "{err}");
    let want: String = (0..10).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out, format!("tty: none\r\n{want}"), "{err}");
}

#[test]
fn a_client_that_leaves_behind_an_unread_flood_is_noticed() {
    // `count` never reads here: the queue stays full, so the client's
    // close waits behind its data until the idle timeout ends the input.
    let probe = Probe::new();
    let s = Server::start_with(|c| c.idle_timeout = Duration::from_secs(2), probe.clone());
    let mut child = ssh_command(&s, "git@127.0.0.1 count")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(32 << 4) {
            if input.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    s.wait_stats(GUARD, |st| st.authenticated == 1);
    let _ = child.kill();
    let _ = child.wait();
    writer.join().unwrap();
    s.wait_stats(GUARD, |st| st.authenticated == 0);
}

/// Bytes read so far and the last 64 KiB of them.
type Tail = Arc<Mutex<(u64, Vec<u8>)>>;

/// Reads `from` to its end on a thread, counting it and keeping its
/// last 64 KiB.
fn tail<R: Read + Send + 'static>(mut from: R) -> (Tail, std::thread::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new((0u64, Vec::new())));
    let thread = std::thread::spawn({
        let seen = seen.clone();
        move || {
            let mut b = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut b) {
                if n == 0 {
                    break;
                }
                let mut s = seen.lock().unwrap();
                s.0 += n as u64;
                s.1.extend_from_slice(&b[..n]);
                let excess = s.1.len().saturating_sub(64 * 1024);
                s.1.drain(..excess);
            }
        }
    });
    (seen, thread)
}

#[test]
fn input_piling_up_while_the_command_writes_is_cut_at_the_cap_and_the_client_told() {
    // `spew` writes output without pause and never reads, while the client
    // floods its stdin and reads the output: holding the input back would
    // stop the output, so it is taken in, up to the cap; then the input
    // ends, the rest is dropped as it arrives and the client is told.
    use gitd::terminal::{MAX_UNREAD_INPUT, QUEUED_INPUT_PACKETS};
    const TOTAL: u64 = 48 << 20;
    let probe = Probe::new();
    let s = Server::start_with(|_| {}, probe.clone());
    let mut child = ssh_command(&s, "git@127.0.0.1 spew")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let sent = sent.clone();
        move || {
            let chunk = vec![b'x'; 64 * 1024];
            while sent.load(Ordering::SeqCst) < TOTAL {
                if input.write_all(&chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
    let (out, out_thread) = tail(child.stdout.take().unwrap());
    let (err, err_thread) = tail(child.stderr.take().unwrap());
    let notice = gitd::wording::unread_input(MAX_UNREAD_INPUT);
    let started = Instant::now();
    let err_text = || String::from_utf8_lossy(&err.lock().unwrap().1).into_owned();
    while !err_text().contains(&notice) {
        if started.elapsed() > GUARD || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "no notice after {} bytes of input and {} of output: {}",
                sent.load(Ordering::SeqCst),
                out.lock().unwrap().0,
                err_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The rest of the flood is dropped as it arrives: the client is not
    // held back any more, though the command still reads nothing.
    while !writer.is_finished() {
        assert!(
            started.elapsed() < GUARD,
            "the client was held back after the cut: {} sent",
            sent.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    assert_eq!(sent.load(Ordering::SeqCst), TOTAL);
    probe.go.send_replace(true);
    let status = wait(&mut child, "spew");
    out_thread.join().unwrap();
    err_thread.join().unwrap();
    let (output, last) = std::mem::take(&mut *out.lock().unwrap());
    let last = String::from_utf8_lossy(&last).into_owned();
    assert_eq!(
        status.code(),
        Some(3),
        "the command's own exit status: {}",
        err_text()
    );
    let read: u64 = last
        .rsplit("read ")
        .next()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count: {}", &last[last.len().saturating_sub(200)..]));
    eprintln!(
        "cut: the command got {} KiB of stdin then EOF; the client sent {} KiB; {} KiB of output went through",
        read >> 10,
        TOTAL >> 10,
        output >> 10
    );
    // What piled up reached the command, then end-of-file: at least the
    // cap, at most the cap plus the packet that went over plus the
    // command's queue.
    let cap = MAX_UNREAD_INPUT as u64;
    assert!(read >= cap, "got {read}, cap {cap}");
    assert!(
        read <= cap + (QUEUED_INPUT_PACKETS as u64 + 1) * 32 * 1024,
        "got {read}, cap {cap}"
    );
    assert_eq!(
        err_text().matches(&notice).count(),
        1,
        "told once: {}",
        err_text()
    );
}
