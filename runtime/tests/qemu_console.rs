//! A one-off VM with a console (`byteport run` with a TTY), under QEMU
//! (TCG) with a busybox guest: the command gets a real terminal whose bytes
//! the host reads and writes raw, its exit is still `wait_exit`'s, a console
//! nobody takes does not hold the command up, closing it hangs up the
//! command, and arbitrary bytes are only ever input.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use runtime::one_off::{wait_exit, OneOffError};
use runtime::Tty;

const WAIT: Duration = Duration::from_secs(300);

fn console_spec(
    g: &common::Guest,
    rootfs: &std::path::Path,
    command: &str,
    tty: Tty,
) -> runtime::AppSpec {
    let mut spec = common::spec(g, "run", rootfs, &[("run", command)], None, None);
    spec.one_off = true;
    spec.console = Some(tty);
    spec
}

fn tty(cols: u16, rows: u16) -> Tty {
    Tty {
        term: "xterm-256color".into(),
        cols,
        rows,
    }
}

/// Reads `stream` until `done` holds for what was read, or `timeout`.
fn read_until(stream: &mut UnixStream, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !done(&String::from_utf8_lossy(&seen)) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the console: {e}"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn lines(text: &str) -> Vec<String> {
    text.split('\n')
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

#[test]
fn a_one_off_shell_with_a_console_is_a_terminal_both_ways() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let spec = console_spec(&g, &rootfs, "sh", tty(101, 31));
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let mut console = vm.vm.take_console().expect("a console stream");
    assert!(vm.vm.take_console().is_none(), "the console is given once");
    console
        .write_all(b"echo $((6*7)); tty; stty size; echo $TERM; exit 3\n")
        .unwrap();
    let out = read_until(&mut console, WAIT, |s| {
        lines(s).iter().any(|l| l == "xterm-256color")
    });
    let got = lines(&out);
    assert!(got.iter().any(|l| l == "42"), "{out:?}\n{}", logs.dump());
    assert!(
        got.iter().any(|l| l.starts_with("/dev/pts/")),
        "the command's stdin is a pseudo-terminal: {out:?}"
    );
    assert!(
        got.iter().any(|l| l == "31 101"),
        "the window is the configured rows and columns: {out:?}"
    );
    let status = wait_exit(vm.vm.as_mut(), WAIT).unwrap_or_else(|e| panic!("{e}\n{}", logs.dump()));
    assert_eq!(status, 3, "{}", logs.dump());
    assert!(
        !vm.vm.resize_console(90, 20),
        "a VM that is gone cannot be resized"
    );
    assert!(
        logs.of("run").is_empty(),
        "a terminal's output goes to the console, not the log: {:?}",
        logs.of("run")
    );
}

#[test]
fn a_console_nobody_takes_does_not_hold_up_the_command() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let spec = console_spec(&g, &rootfs, "echo hello; tty; exit 7", tty(80, 24));
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let status = wait_exit(vm.vm.as_mut(), WAIT).unwrap_or_else(|e| panic!("{e}\n{}", logs.dump()));
    assert_eq!(status, 7, "{}", logs.dump());
    // What it wrote waited in the stream, whole, after the VM had gone.
    let mut console = vm.vm.take_console().expect("a console stream");
    let out = read_until(&mut console, Duration::from_secs(10), |s| {
        s.contains("/dev/pts/")
    });
    assert!(lines(&out).iter().any(|l| l == "hello"), "{out:?}");
}

#[test]
fn closing_the_console_hangs_up_the_command() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let spec = console_spec(&g, &rootfs, "sleep 600", tty(80, 24));
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    drop(vm.vm.take_console().expect("a console stream"));
    match wait_exit(vm.vm.as_mut(), WAIT) {
        Err(OneOffError::Signal(libc_sighup)) => assert_eq!(libc_sighup, 1, "SIGHUP"),
        other => panic!(
            "a hung-up command ends by SIGHUP, not {other:?}\n{}",
            logs.dump()
        ),
    }
}

#[test]
fn any_bytes_at_any_length_are_only_input() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    const LEN: usize = 256 * 1024;
    let spec = console_spec(
        &g,
        &rootfs,
        &format!("stty raw -echo -iexten; echo READY; head -c {LEN} | wc -c; exit 4"),
        tty(80, 24),
    );
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let mut console = vm.vm.take_console().expect("a console stream");
    let ready = read_until(&mut console, WAIT, |s| s.contains("READY"));
    assert!(ready.contains("READY"), "{ready:?}\n{}", logs.dump());
    // Every byte value, control characters and invalid UTF-8 included.
    let mut x: u32 = 0x9e37_79b9;
    let garbage: Vec<u8> = (0..LEN)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i < 256 {
                i as u8
            } else {
                x as u8
            }
        })
        .collect();
    console
        .set_write_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    console.write_all(&garbage).unwrap();
    let out = read_until(&mut console, WAIT, |s| s.contains(&LEN.to_string()));
    assert!(
        lines(&out).iter().any(|l| l.trim() == LEN.to_string()),
        "{out:?}\n{}",
        logs.dump()
    );
    let status = wait_exit(vm.vm.as_mut(), WAIT).unwrap_or_else(|e| panic!("{e}\n{}", logs.dump()));
    assert_eq!(status, 4, "{}", logs.dump());
}

#[test]
fn a_console_is_refused_where_it_cannot_work() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let mut spec = console_spec(&g, &rootfs, "sh", tty(80, 24));
    spec.one_off = false;
    let e = runtime::boot(&spec, &opts, common::Logs::default().sink())
        .err()
        .expect("a console without a one-off VM is refused");
    assert!(e.to_string().contains("one-off"), "{e}");
    let mut spec = console_spec(&g, &rootfs, "sh", tty(80, 24));
    spec.console.as_mut().unwrap().term = "xterm\u{1b}]0;owned\u{7}".into();
    let e = runtime::boot(&spec, &opts, common::Logs::default().sink())
        .err()
        .expect("a bad TERM is refused");
    assert!(e.to_string().contains("not a terminal name"), "{e}");
}

/// The attack: the command (the app's user) opens the virtio-serial ports
/// itself, to read what is typed or to forge records. Both device nodes are
/// root's and already held by PID 1: refused.
#[test]
fn the_command_cannot_open_the_console_or_records_port_itself() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let spec = console_spec(
        &g,
        &rootfs,
        "id -u; for d in /dev/vport*; do \
           (echo x > $d) 2>/dev/null && echo OPENED-W $d || echo REFUSED-W $d; \
           (head -c 1 < $d) 2>/dev/null && echo OPENED-R $d || echo REFUSED-R $d; \
         done; echo END; exit 0",
        tty(80, 24),
    );
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let mut console = vm.vm.take_console().expect("a console stream");
    let out = read_until(&mut console, WAIT, |s| lines(s).iter().any(|l| l == "END"));
    let got = lines(&out);
    assert!(
        got.iter().any(|l| l == "1000"),
        "runs as the app's user: {out:?}"
    );
    for how in ["REFUSED-W", "REFUSED-R"] {
        let refused = got.iter().filter(|l| l.starts_with(how)).count();
        assert!(
            refused >= 2,
            "both ports (records, console) were tried and refused ({how}): {out:?}"
        );
    }
    assert!(
        !got.iter().any(|l| l.starts_with("OPENED")),
        "the app opened a port: {out:?}"
    );
    assert_eq!(wait_exit(vm.vm.as_mut(), WAIT).unwrap(), 0);
}

/// A window change (SSH `window-change`) reaches the terminal apart from
/// the typed bytes; typing the request's text resizes nothing.
#[test]
fn a_window_change_resizes_the_terminal_and_typing_cannot() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let spec = console_spec(&g, &rootfs, "sh", tty(80, 24));
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let mut console = vm.vm.take_console().expect("a console stream");
    console
        .write_all(b"echo WINCH 10 5; stty size; echo FIRST-DONE\n")
        .unwrap();
    let out = read_until(&mut console, WAIT, |s| {
        lines(s).iter().any(|l| l == "FIRST-DONE")
    });
    assert!(lines(&out).iter().any(|l| l == "24 80"), "{out:?}");
    assert!(vm.vm.resize_console(132, 43), "the request was sent");
    // The request and the typing travel apart: give the request a moment.
    std::thread::sleep(Duration::from_secs(2));
    console.write_all(b"stty size; exit 0\n").unwrap();
    let out = read_until(&mut console, WAIT, |s| {
        lines(s).iter().any(|l| l == "43 132")
    });
    assert!(
        lines(&out).iter().any(|l| l == "43 132"),
        "{out:?}\n{}",
        logs.dump()
    );
    assert_eq!(wait_exit(vm.vm.as_mut(), WAIT).unwrap(), 0);
}
