//! Running the real OpenSSH client against the test server: hang-guarded
//! waits, piped stdin, collected output.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Server;

/// A hang guard.
pub const GUARD: Duration = Duration::from_secs(120);

/// `ssh` with the test key and `args`, escapes off (binary stdin must not
/// be read as `~.`).
pub fn ssh_command(s: &Server, args: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("exec {} -e none {args}", s.ssh()))
        .env("TERM", "xterm-test");
    c
}

/// Waits for `child` within the hang guard.
pub fn wait(child: &mut Child, what: &str) -> std::process::ExitStatus {
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
pub fn run_piped(
    s: &Server,
    args: &str,
    stdin: &[u8],
) -> (std::process::ExitStatus, Vec<u8>, String) {
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

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Collects `child`'s stdout as it comes.
pub fn collect(child: &mut Child) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
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
