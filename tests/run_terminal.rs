//! `ssh -t git@HOST run APP CMD` through `byteport up`: the command runs
//! on a pseudo-terminal in a one-off VM of the live deploy, driven by the
//! real OpenSSH client — its keystrokes go in untranslated (Ctrl-C is a
//! signal to the guest's foreground process), the guest's terminal comes
//! out, the client's window size and its changes reach the guest, and the
//! exit status is the command's. A client that goes away takes its VM
//! with it; someone else's app is refused. `byteport run` on the
//! operator's own terminal does the same through the control socket.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::{push_site, wait_for, Daemon};

/// Longest wait for anything the guest prints (a TCG boot included).
const GUARD: Duration = Duration::from_secs(240);

/// `ssh -tt git@127.0.0.1 LINE` with `TERM` set, stdout piped.
fn ssh_tt(d: &Daemon, key: &std::path::Path, line: &str, stdin: Stdio) -> Child {
    let mut args: Vec<String> = d
        .ssh_command(key)
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    args.extend(["-tt".into(), "git@127.0.0.1".into(), line.into()]);
    Command::new("ssh")
        .args(&args)
        .env("TERM", "xterm-256color")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh (openssh-client) is needed")
}

/// Collects a child's stdout as it comes.
fn collect(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    std::thread::spawn({
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
    out
}

fn shown(out: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&out.lock().unwrap()).into_owned()
}

/// Waits until the terminal shows `needle`, doing `nudge` every 2 s.
fn wait_shown(out: &Mutex<Vec<u8>>, needle: &str, child: &mut Child, mut nudge: impl FnMut()) {
    let started = Instant::now();
    let mut nudged = Instant::now();
    while !shown(out).contains(needle) {
        if started.elapsed() > GUARD || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("never saw {needle:?} in {:?} (stderr: {err})", shown(out));
        }
        if nudged.elapsed() > Duration::from_secs(2) {
            nudge();
            nudged = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ssh -tt LINE` with no input: its exit status, stdout and stderr.
fn refused(d: &Daemon, key: &std::path::Path, line: &str) -> (Option<i32>, String, String) {
    let mut client = ssh_tt(d, key, line, Stdio::null());
    let out = collect(&mut client);
    let status = wait_exit(&mut client);
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, shown(&out), err)
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > GUARD {
            let _ = child.kill();
            panic!("ssh never exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pty pair: the slave is ssh's stdin, so ssh reports its window size
/// and sends `window-change` on SIGWINCH; the test types into the master.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
}

fn open_pty(cols: u16, rows: u16) -> Pty {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two fds; the name and termios are unused and
    // the size outlives the call.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fds this process now owns.
    unsafe {
        Pty {
            master: std::fs::File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

fn resize(pty: &Pty, cols: u16, rows: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: a valid fd and a valid winsize for the duration of the call.
    let r = unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

#[test]
fn run_on_a_terminal_is_the_guests_terminal_with_the_clients_keys_and_window() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let mallory = d.add_key(tmp.path(), "mallory");
    let ssh = d.ssh_command(&key);
    push_site(&d, &ssh, tmp.path(), "tool", false);
    wait_for(&d, "the app's VM", 120, || d.recorded_vm_pids().len() == 1);
    let serving = d.recorded_vm_pids();

    // A script piped into `ssh -tt`: the shell runs on a terminal in the
    // guest, as the app's user, with the client's TERM; the end of the
    // script does not hang it up; its exit status is ssh's.
    let mut client = ssh_tt(&d, &key, "run tool -- sh", Stdio::piped());
    let out = collect(&mut client);
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo $((6*7)); tty; echo $TERM; id -u; exit 3\n")
        .unwrap();
    let status = wait_exit(&mut client);
    let text = shown(&out);
    assert_eq!(status, Some(3), "terminal: {text:?}\n{}", d.log());
    for expected in [
        "\r\n42\r\n",
        "/dev/pts/",
        "\r\nxterm-256color\r\n",
        "\r\n1000\r\n",
    ] {
        assert!(text.contains(expected), "no {expected:?} in {text:?}");
    }
    assert_eq!(d.recorded_vm_pids(), serving, "the serving VM was touched");

    // ssh on a real terminal: its window reaches the guest at start and
    // when it changes; Ctrl-C interrupts the guest's foreground command,
    // not the session.
    let pty = open_pty(100, 30);
    let slave = Stdio::from(pty.slave.try_clone().unwrap());
    let mut client = ssh_tt(&d, &key, "run tool -- sh", slave);
    let out = collect(&mut client);
    let mut master = pty.master.try_clone().unwrap();
    master.write_all(b"stty size\n").unwrap();
    wait_shown(&out, "30 100", &mut client, || {});
    resize(&pty, 132, 43);
    let ssh_pid = client.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(ssh_pid, libc::SIGWINCH) };
    wait_shown(&out, "43 132", &mut client, || {
        master.write_all(b"stty size\n").unwrap();
    });
    master.write_all(b"sleep 600; echo slept\n").unwrap();
    wait_for(&d, "sleep never started", 60, || {
        // The typed line echoes back once the guest's shell has read it.
        shown(&out).contains("slept\r\n")
    });
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"\x03").unwrap();
    master.write_all(b"echo after-$((1+1))\n").unwrap();
    wait_shown(&out, "after-2", &mut client, || {});
    assert!(
        !shown(&out).contains("\r\nslept\r\n"),
        "Ctrl-C did not interrupt sleep: {:?}",
        shown(&out)
    );
    master.write_all(b"exit 5\n").unwrap();
    assert_eq!(wait_exit(&mut client), Some(5), "{:?}", shown(&out));
    drop(pty);

    // A client that goes away mid-command: its VM is stopped.
    let mut client = ssh_tt(&d, &key, "run tool -- sh", Stdio::piped());
    let out = collect(&mut client);
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"echo up-$((40+2))\n").unwrap();
    wait_shown(&out, "up-42", &mut client, || {});
    assert_eq!(
        d.recorded_vm_pids().len(),
        2,
        "no one-off VM beside the app"
    );
    client.kill().unwrap();
    client.wait().unwrap();
    wait_for(&d, "the one-off VM outlived its client", 120, || {
        d.recorded_vm_pids() == serving
    });

    // Refused: someone else's app (the same words as for a missing app),
    // and --stop-app, which is a job without a terminal.
    for (who, line, why) in [
        (&mallory, "run tool -- sh", "no access"),
        (
            &key,
            "run tool --stop-app -- sh",
            "--stop-app runs without a terminal",
        ),
    ] {
        let (status, shown, err) = refused(&d, who, line);
        assert_eq!(status, Some(1), "{line}: {shown:?} {err:?}");
        assert!(err.contains(why), "{line}: stdout {shown:?} stderr {err:?}");
    }

    // `byteport run` on the operator's terminal (stdin a tty): the same,
    // through the control socket, with the CLI's terminal in raw mode.
    let pty = open_pty(90, 20);
    let mut client = Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(["run", "tool", "--", "sh"])
        .env("BYTEPORT_HOME", &d.home)
        .env("TERM", "xterm-256color")
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(&mut client);
    let mut master = pty.master.try_clone().unwrap();
    master.write_all(b"stty size; echo $TERM\n").unwrap();
    wait_shown(&out, "20 90", &mut client, || {});
    wait_shown(&out, "\r\nxterm-256color\r\n", &mut client, || {});
    resize(&pty, 120, 33);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(client.id() as i32, libc::SIGWINCH) };
    wait_shown(&out, "33 120", &mut client, || {
        master.write_all(b"stty size\n").unwrap();
    });
    // Raw mode: Ctrl-C is a byte for the guest, not a signal for the CLI.
    master.write_all(b"sleep 600; echo slept\n").unwrap();
    wait_shown(&out, "slept\r\n", &mut client, || {});
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"\x03").unwrap();
    master.write_all(b"echo cli-$((2+2)); exit 4\n").unwrap();
    assert_eq!(wait_exit(&mut client), Some(4), "{:?}", shown(&out));
    assert!(shown(&out).contains("cli-4"), "{:?}", shown(&out));
    drop(pty);
    wait_for(&d, "the CLI's one-off VM stayed", 120, || {
        d.recorded_vm_pids() == serving
    });

    // Other commands ignore the terminal.
    let mut client = ssh_tt(&d, &key, "apps", Stdio::null());
    let out = collect(&mut client);
    assert_eq!(wait_exit(&mut client), Some(0));
    assert!(shown(&out).contains("tool"), "{:?}", shown(&out));
    assert_eq!(d.recorded_vm_pids(), serving);
}
