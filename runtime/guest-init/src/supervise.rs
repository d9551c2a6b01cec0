//! Starting the app's processes as the unprivileged user, shipping their
//! output as records (each process within its [`Budget`]: a flood is cut and
//! announced as `rate-limited` in the app's own log), reaping every child
//! (PID 1 adopts orphans), and restarting crashed processes with
//! exponential backoff.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guest_init::config::{InitConfig, Process};
use guest_init::records::{self, Budget, MAX_TEXT};

/// Where records go: the records channel to the host (the console only
/// before that channel is open, for a `FATAL` the host shows from the
/// console's tail).
pub type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// Longest log line shipped; longer ones are cut (and say so).
pub const MAX_LINE: usize = MAX_TEXT;
/// Lines per second one app process may log (bursts of twice that).
pub const LINES_PER_SEC: u32 = 1000;
/// Bytes per second one app process may log (bursts of twice that).
pub const BYTES_PER_SEC: u32 = 1 << 20;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Formats one log record: `[bp <unix-ms> <process> <stream>] <text>`.
pub fn record(process: &str, stream: &str, text: &str) -> String {
    records::format(now_ms(), process, stream, text)
}

/// Writes one record to the sink.
pub fn emit(sink: &Sink, process: &str, stream: &str, text: &str) {
    let line = record(process, stream, text);
    if let Ok(mut w) = sink.lock() {
        let _ = w.write_all(line.as_bytes());
        let _ = w.flush();
    }
}

/// Reads `pipe` line by line into the sink until it closes, within
/// `budget` (shared by the process's streams).
pub fn pump(
    sink: Sink,
    process: String,
    stream: &'static str,
    pipe: impl Read + Send + 'static,
    budget: Arc<Mutex<Budget>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = match reader
                .by_ref()
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => {
                    let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                    let dropped = b.take_dropped();
                    if dropped > 0 {
                        let notice = records::rate_limited_notice(dropped, b.lines_per_sec());
                        drop(b);
                        emit(&sink, &process, stream, &notice);
                    }
                    break;
                }
                Ok(n) => n,
            };
            let now = Instant::now();
            let (admitted, notice) = {
                let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                let admitted = b.admit(n, now);
                let notice = b
                    .notice(now)
                    .map(|d| records::rate_limited_notice(d, b.lines_per_sec()));
                (admitted, notice)
            };
            if let Some(notice) = notice {
                emit(&sink, &process, stream, &notice);
            }
            if !admitted {
                continue;
            }
            let cut = n == MAX_LINE && buf.last() != Some(&b'\n');
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']);
            if cut {
                emit(
                    &sink,
                    &process,
                    stream,
                    &format!("{text} [line cut at {MAX_LINE} bytes]"),
                );
            } else {
                emit(&sink, &process, stream, text);
            }
        }
    });
}

/// The command that runs `p`: through `/bin/sh -c` when the rootfs has a
/// shell, else split like a shell would and executed directly.
pub fn command_for(p: &Process, has_shell: bool) -> Result<Command, String> {
    if has_shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(&p.command);
        return Ok(c);
    }
    let words = shlex::split(&p.command)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            format!(
                "cannot parse the command of `{}` (unbalanced quotes)",
                p.name
            )
        })?;
    let mut c = Command::new(&words[0]);
    c.args(&words[1..]);
    Ok(c)
}

struct Running {
    process: Process,
    started: Instant,
    failures: u32,
}

/// Supervises the configured processes.
pub struct Supervisor {
    config: InitConfig,
    sink: Sink,
    running: HashMap<i32, Running>,
    pending: Vec<(Instant, Process, u32)>,
    /// The console's port, until the process it is for starts.
    console_port: Option<std::fs::File>,
    /// The console's process and the end of its output relay.
    console_relay: Option<(i32, Receiver<()>)>,
}

/// How long an exited console process's last output may take to reach the
/// host before its exit is reported anyway (a background child may hold
/// the terminal open).
pub const CONSOLE_DRAIN: Duration = Duration::from_secs(3);

impl Supervisor {
    /// A supervisor for `config`, logging to `sink`.
    pub fn new(config: InitConfig, sink: Sink) -> Supervisor {
        Supervisor {
            config,
            sink,
            running: HashMap::new(),
            pending: Vec::new(),
            console_port: None,
            console_relay: None,
        }
    }

    /// The console's opened port (see [`crate::console`]); the configured
    /// process gets the terminal when it starts.
    pub fn attach_console(&mut self, port: std::fs::File) {
        self.console_port = Some(port);
    }

    /// The configuration it runs.
    pub fn config(&self) -> &InitConfig {
        &self.config
    }

    /// Starts every process.
    pub fn start_all(&mut self) {
        for p in self.config.processes.clone() {
            self.spawn(p, 0);
        }
    }

    fn spawn(&mut self, p: Process, failures: u32) {
        let has_shell = Path::new("/bin/sh").exists();
        let mut cmd = match command_for(&p, has_shell) {
            Ok(c) => c,
            Err(e) => {
                emit(&self.sink, "init", "evt", &format!("FAILED {} {e}", p.name));
                if self.config.once {
                    self.exited_once(&p.name, "status=127");
                }
                return;
            }
        };
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env(
                "HOME",
                if self.config.user.uid == 0 && Path::new("/root").is_dir() {
                    "/root"
                } else {
                    "/tmp"
                },
            )
            .envs(&self.config.env)
            .current_dir(&self.config.workdir)
            .uid(self.config.user.uid)
            .gid(self.config.user.gid);
        let console = match self.console_with_terminal(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                emit(
                    &self.sink,
                    "init",
                    "evt",
                    &format!("FAILED {} console: {e}", p.name),
                );
                self.exited_once(&p.name, "status=127");
                return;
            }
        };
        if console.is_none() {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
        }
        let spawned = cmd.spawn();
        // The init's copies of the terminal's slave go now: the relay ends
        // when the last holder closes it.
        drop(cmd);
        match spawned {
            Ok(mut child) => {
                let pid = child.id() as i32;
                if let Some((port, master)) = console {
                    match crate::console::relay(port, master, pid) {
                        Ok(done) => self.console_relay = Some((pid, done)),
                        Err(e) => emit(
                            &self.sink,
                            "init",
                            "evt",
                            &format!("WARN console relay: {e}"),
                        ),
                    }
                }
                let budget = Arc::new(Mutex::new(Budget::new(
                    LINES_PER_SEC,
                    BYTES_PER_SEC,
                    Instant::now(),
                )));
                if let Some(out) = child.stdout.take() {
                    pump(
                        self.sink.clone(),
                        p.name.clone(),
                        "out",
                        out,
                        budget.clone(),
                    );
                }
                if let Some(err) = child.stderr.take() {
                    pump(self.sink.clone(), p.name.clone(), "err", err, budget);
                }
                emit(
                    &self.sink,
                    "init",
                    "evt",
                    &format!("STARTED {} pid={pid}", p.name),
                );
                // The child is reaped by `reap` through waitpid(-1), not by `Child`.
                drop(child);
                self.running.insert(
                    pid,
                    Running {
                        process: p,
                        started: Instant::now(),
                        failures,
                    },
                );
            }
            Err(e) => {
                emit(
                    &self.sink,
                    "init",
                    "evt",
                    &format!("FAILED {} cannot start: {e}", p.name),
                );
                if self.config.once {
                    self.exited_once(&p.name, "status=127");
                } else {
                    self.schedule_restart(p, failures + 1);
                }
            }
        }
    }

    fn schedule_restart(&mut self, p: Process, failures: u32) {
        let delay = backoff(failures);
        emit(
            &self.sink,
            "init",
            "evt",
            &format!(
                "RESTART {} in {}ms (failure {failures})",
                p.name,
                delay.as_millis()
            ),
        );
        self.pending.push((Instant::now() + delay, p, failures));
    }

    /// Reaps every exited child; supervised ones are restarted.
    pub fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with WNOHANG and a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if let Some(r) = self.running.remove(&pid) {
                self.drain_console(pid);
                let how = if libc::WIFEXITED(status) {
                    format!("status={}", libc::WEXITSTATUS(status))
                } else {
                    format!("signal={}", libc::WTERMSIG(status))
                };
                emit(
                    &self.sink,
                    "init",
                    "evt",
                    &format!("EXITED {} pid={pid} {how}", r.process.name),
                );
                if self.config.once {
                    continue;
                }
                // A process that ran for a while starts its backoff afresh.
                let failures = if r.started.elapsed() > Duration::from_secs(60) {
                    1
                } else {
                    r.failures + 1
                };
                self.schedule_restart(r.process, failures);
            }
        }
    }

    /// With a console configured and its port not yet used: a terminal for
    /// `cmd` (stdin, stdout and stderr, a session of its own with `TERM`
    /// set); the port and the master to relay once it runs.
    fn console_with_terminal(
        &mut self,
        cmd: &mut Command,
    ) -> std::io::Result<Option<(std::fs::File, std::fs::File)>> {
        let (Some(t), Some(port)) = (self.config.console.as_ref(), self.console_port.take()) else {
            return Ok(None);
        };
        let pty =
            crate::console::open_pty(t.cols, t.rows, self.config.user.uid, self.config.user.gid)?;
        cmd.env("TERM", &t.term)
            .stdin(pty.slave.try_clone()?)
            .stdout(pty.slave.try_clone()?)
            .stderr(pty.slave);
        // SAFETY: the closure calls only async-signal-safe functions.
        unsafe {
            cmd.pre_exec(crate::console::become_session_leader);
        }
        Ok(Some((port, pty.master)))
    }

    /// Before the console's process is reported exited: its last output
    /// reaches the host first (within [`CONSOLE_DRAIN`]).
    fn drain_console(&mut self, pid: i32) {
        if self.console_relay.as_ref().is_some_and(|(p, _)| *p == pid) {
            if let Some((_, done)) = self.console_relay.take() {
                let _ = done.recv_timeout(CONSOLE_DRAIN);
            }
        }
    }

    /// A one-off process that could not start counts as exited (127, as a
    /// shell says for a command it cannot run).
    fn exited_once(&self, name: &str, how: &str) {
        emit(
            &self.sink,
            "init",
            "evt",
            &format!("EXITED {name} pid=0 {how}"),
        );
    }

    /// In a one-off VM: whether every process has exited.
    pub fn all_done(&self) -> bool {
        self.config.once && self.running.is_empty() && self.pending.is_empty()
    }

    /// Starts processes whose backoff has passed.
    pub fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(at, _, _)| *at <= now);
        self.pending = later;
        for (_, p, failures) in due {
            self.spawn(p, failures);
        }
    }

    /// SIGTERM to every process group, wait up to `grace`, then SIGKILL.
    pub fn stop_all(&mut self, grace: Duration) {
        self.pending.clear();
        for pid in self.running.keys() {
            // SAFETY: signalling a process group we created.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while !self.running.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let mut status = 0;
            // SAFETY: as in `reap`.
            while let pid @ 1.. = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
                if let Some(r) = self.running.remove(&pid) {
                    emit(
                        &self.sink,
                        "init",
                        "evt",
                        &format!("STOPPED {}", r.process.name),
                    );
                }
            }
        }
        for pid in self.running.keys() {
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

/// 1 s, 2 s, 4 s, … capped at 30 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_parseable_and_sanitised() {
        let r = record("web", "out", "hello\u{1b}[31m world");
        assert!(r.starts_with("[bp "));
        assert!(r.ends_with("] hello\u{fffd}[31m world\n"), "{r}");
        assert!(r.contains(" web out] "));
    }

    #[test]
    fn a_flood_is_cut_to_the_budget_and_announced() {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink: Sink = Arc::new(Mutex::new(Box::new(W(buf.clone()))));
        let input = "y\n".repeat(5000);
        let budget = Arc::new(Mutex::new(Budget::new(10, 1 << 20, Instant::now())));
        pump(
            sink,
            "web".into(),
            "out",
            std::io::Cursor::new(input),
            budget,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
            let dropped: u64 = text
                .lines()
                .filter_map(|l| l.split("rate-limited: ").nth(1))
                .filter_map(|n| n.split(' ').next()?.parse::<u64>().ok())
                .sum();
            let passed = text.lines().filter(|l| l.ends_with("web out] y")).count() as u64;
            if passed + dropped == 5000 {
                // The burst (twice the rate), plus what refilled meanwhile.
                assert!((20..100).contains(&passed), "{passed} lines passed");
                assert!(text.contains("(limit 10 lines/s)"), "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "no rate-limited notice: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(30));
    }

    #[test]
    fn commands_without_a_shell_are_split() {
        let p = Process {
            name: "w".into(),
            command: "/bin/echo 'a b' c".into(),
        };
        let c = command_for(&p, false).unwrap();
        assert_eq!(c.get_program(), "/bin/echo");
        assert_eq!(c.get_args().collect::<Vec<_>>(), ["a b", "c"]);
        let bad = Process {
            name: "w".into(),
            command: "echo 'oops".into(),
        };
        assert!(command_for(&bad, false).unwrap_err().contains("unbalanced"));
        let c = command_for(&p, true).unwrap();
        assert_eq!(c.get_program(), "/bin/sh");
    }

    #[test]
    fn pumped_output_becomes_records_and_long_lines_are_cut() {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink: Sink = Arc::new(Mutex::new(Box::new(W(buf.clone()))));
        let mut input = b"one\ntwo\r\n".to_vec();
        input.extend(vec![b'x'; MAX_LINE + 10]);
        let budget = Arc::new(Mutex::new(Budget::new(1000, 1 << 20, Instant::now())));
        pump(
            sink,
            "web".into(),
            "err",
            std::io::Cursor::new(input),
            budget,
        );
        std::thread::sleep(Duration::from_millis(200));
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{}", &text[..200]);
        assert!(lines[0].ends_with("web err] one"));
        assert!(lines[1].ends_with("web err] two"));
        assert!(lines[2].ends_with("[line cut at 16384 bytes]"));
        assert!(lines[3].ends_with(&"x".repeat(10)));
    }
}
