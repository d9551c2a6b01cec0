//! A client flooding an admin command's stdin (`Commands::run_interactive`)
//! with the real OpenSSH client: held back while the command neither reads
//! nor writes, taken in (up to `MAX_UNREAD_INPUT`) while its output waits,
//! so echoing a flood never deadlocks; a command that ends or a client that
//! leaves mid-flood is still noticed. Timings are hang guards only.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::client::*;
use support::probe::Probe;
use support::*;

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
