//! The host side of what a VM says: its records channel (app output and
//! the guest init's events, from PID 1 only — see `guest_init::records`)
//! and its serial console (kernel messages, kept for error messages and
//! `console.log`). Both are read within budgets, so a guest that floods
//! them costs the host bounded memory and CPU:
//!
//! - lines are cut at a fixed length (records at [`MAX_RECORD`], console
//!   lines at [`MAX_CONSOLE_LINE`]); nothing is buffered beyond one line;
//! - bytes are read at most at the budget's rate: past it the reader waits,
//!   and the guest's writes block in its channel (backpressure);
//! - records past the line rate are dropped and announced in the app's log
//!   (`rate-limited: N lines dropped`), at most once a second;
//! - events queue up to [`MAX_QUEUED_EVENTS`] until the daemon drains them;
//! - `console.log` stops at [`MAX_CONSOLE_LOG`] bytes.
//!
//! The reader also keeps the guest's state for boot and health checks
//! ([`GuestStatus`]): READY, FATAL, whether the checked process listens, how
//! often it exited, its last output.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use guest_init::records::{self, Budget, Record, MAX_RECORD};

use crate::drivers::guest::ConsoleTail;
use crate::drivers::AppLog;

/// Records per second one VM may send (bursts of twice that).
pub const RECORD_LINES_PER_SEC: u32 = 2000;
/// Record bytes per second read from one VM (bursts of twice that); lines
/// dropped for the line rate count too, so this bounds the reader's CPU.
pub const RECORD_BYTES_PER_SEC: u32 = 1 << 20;
/// Console bytes per second read from one VM (bursts of twice that).
pub const CONSOLE_BYTES_PER_SEC: u32 = 64 << 10;
/// Longest console line kept; the rest of a longer one is skipped.
pub const MAX_CONSOLE_LINE: usize = 1024;
/// `console.log` is not written past this many bytes.
pub const MAX_CONSOLE_LOG: u64 = 4 << 20;
/// Events kept until the daemon drains them; later ones are dropped.
pub const MAX_QUEUED_EVENTS: usize = 1024;
/// App output lines kept for error messages.
const RECENT_OUTPUT: usize = 20;

/// What the host knows about the guest init and the app, from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestStatus {
    /// The init has started the app's processes.
    pub ready: bool,
    /// The init failed (`FATAL ...`).
    pub fatal: Option<String>,
    /// The checked process accepts connections on its port inside the
    /// guest (`LISTENING web 10.0.2.15:8080`): the event's text.
    pub listening: Option<String>,
    /// Times the checked process exited.
    pub exits: u32,
    /// Its last `EXITED ...` event.
    pub last_exit: Option<String>,
    /// The app's last output lines (`web err: ...`), oldest first.
    pub recent_output: Vec<String>,
    /// Records dropped: over the rate, malformed or overlong.
    pub dropped: u64,
}

#[derive(Default)]
struct State {
    status: GuestStatus,
    recent: VecDeque<String>,
}

/// Routes one VM's records; clones share state (one per reader thread).
#[derive(Clone)]
pub struct GuestLink {
    state: Arc<Mutex<State>>,
    budget: Arc<Mutex<Budget>>,
    app_log: AppLog,
    events: SyncSender<String>,
    checked: Option<String>,
}

impl GuestLink {
    /// A link delivering app output to `app_log`; `checked` is the process
    /// whose listening and exits the health check follows (`web`). Returns
    /// the receiving end of the events.
    pub fn new(app_log: AppLog, checked: Option<String>) -> (GuestLink, Receiver<String>) {
        let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_EVENTS);
        let link = GuestLink {
            state: Arc::default(),
            budget: Arc::new(Mutex::new(Budget::new(
                RECORD_LINES_PER_SEC,
                RECORD_BYTES_PER_SEC,
                Instant::now(),
            ))),
            app_log,
            events: tx,
            checked,
        };
        (link, rx)
    }

    /// The guest's state now.
    pub fn status(&self) -> GuestStatus {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut status = s.status.clone();
        status.recent_output = s.recent.iter().cloned().collect();
        status
    }

    /// Reads records from `r` until it ends (the guest powered off or the
    /// connection closed). Call from a thread of its own.
    pub fn read_records(&self, r: impl Read) {
        let mut r = BufReader::with_capacity(64 << 10, r);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            let n = match r
                .by_ref()
                .take(MAX_RECORD as u64 + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if line.last() != Some(&b'\n') && n > MAX_RECORD {
                // Overlong: not a record the guest init writes. Skip to the
                // end of it, within the same budget.
                self.count_dropped();
                if !skip_line(&mut r, &self.budget) {
                    return;
                }
                continue;
            }
            self.throttle(n);
            let admitted = {
                let now = Instant::now();
                let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
                b.spend(n, now);
                let ok = b.admit_line(now);
                if let Some(d) = b.notice(now) {
                    (self.app_log)(
                        "init",
                        "err",
                        &records::rate_limited_notice(d, b.lines_per_sec()),
                    );
                }
                ok
            };
            if !admitted {
                self.count_dropped();
                continue;
            }
            match records::parse(&String::from_utf8_lossy(&line)) {
                Some(Record::App {
                    process,
                    stream,
                    text,
                }) => {
                    self.remember(&process, &stream, &text);
                    (self.app_log)(&process, &stream, &text);
                }
                Some(Record::Event(e)) => self.event(e),
                None => self.count_dropped(),
            }
        }
    }

    /// Waits until `bytes` more fit in the byte budget: the reader then
    /// never processes more than the budget's rate (bounded CPU), and the
    /// guest's further writes wait in its channel (bounded memory).
    fn throttle(&self, bytes: usize) {
        let wait = self
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait_for_bytes(bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    fn count_dropped(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .dropped += 1;
    }

    fn remember(&self, process: &str, stream: &str, text: &str) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let short: String = text.chars().take(300).collect();
        s.recent.push_back(format!("{process} {stream}: {short}"));
        if s.recent.len() > RECENT_OUTPUT {
            s.recent.pop_front();
        }
    }

    fn event(&self, e: String) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (kind, rest) = e.split_once(' ').unwrap_or((e.as_str(), ""));
            let process = rest.split(' ').next().unwrap_or("");
            let is_checked = self.checked.as_deref() == Some(process);
            match kind {
                "READY" => s.status.ready = true,
                "FATAL" => s.status.fatal = Some(e.clone()),
                "LISTENING" if is_checked => s.status.listening = Some(rest.to_string()),
                "EXITED" if is_checked => {
                    s.status.exits += 1;
                    s.status.last_exit = Some(e.clone());
                }
                _ => {}
            }
        }
        if let Err(TrySendError::Full(_)) = self.events.try_send(e) {
            self.count_dropped();
        }
    }
}

/// Skips the rest of an overlong line, reading within `budget`; false at EOF.
fn skip_line(r: &mut impl BufRead, budget: &Mutex<Budget>) -> bool {
    loop {
        let (done, used) = match r.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, buf.len()),
            },
        };
        r.consume(used);
        let wait = budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait_for_bytes(used, Instant::now());
        std::thread::sleep(wait);
        // A skipped flood costs the budget like a read one.
        budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spend(used, Instant::now());
        if done {
            return true;
        }
    }
}

/// Reads a console (the guest's serial port, or the VMM's stderr) line by
/// line into `tail` (each prefixed with `prefix`) and, if given, `log`
/// (up to [`MAX_CONSOLE_LOG`] bytes), within [`CONSOLE_BYTES_PER_SEC`].
/// Call from a thread of its own; returns when `r` ends.
pub fn read_console(r: impl Read, mut log: Option<std::fs::File>, tail: ConsoleTail, prefix: &str) {
    let budget = Mutex::new(Budget::new(
        u32::MAX / 4,
        CONSOLE_BYTES_PER_SEC,
        Instant::now(),
    ));
    let mut r = BufReader::with_capacity(16 << 10, r);
    let mut line = Vec::with_capacity(256);
    let mut written: u64 = 0;
    loop {
        line.clear();
        let n = match r
            .by_ref()
            .take(MAX_CONSOLE_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let cut = line.last() != Some(&b'\n') && n == MAX_CONSOLE_LINE;
        let wait = budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait_for_bytes(n, Instant::now());
        std::thread::sleep(wait);
        budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spend(n, Instant::now());
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Some(f) = log.as_mut() {
            if written < MAX_CONSOLE_LOG {
                let _ = writeln!(f, "{text}");
                written += text.len() as u64 + 1;
                if written >= MAX_CONSOLE_LOG {
                    let _ = writeln!(f, "[console log stops here: {MAX_CONSOLE_LOG} bytes]");
                }
            }
        }
        tail.push(format!("{prefix}{text}"));
        if cut && !skip_line(&mut r, &budget) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn collecting() -> (AppLog, Arc<Mutex<Vec<String>>>) {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let g = got.clone();
        let log: AppLog = Arc::new(move |p: &str, s: &str, t: &str| {
            g.lock().unwrap().push(format!("{p} {s} {t}"))
        });
        (log, got)
    }

    #[test]
    fn records_route_to_the_log_events_and_status() {
        let (log, got) = collecting();
        let (link, events) = GuestLink::new(log, Some("web".into()));
        let input = "\
[bp 1 init evt] BOOT byteport-init
[bp 2 web err] sh: python3: not found
[bp 3 init evt] EXITED web pid=7 status=127
[bp 3 init evt] EXITED worker pid=8 status=1
garbage that is not a record
[bp 4 init evt] READY
[bp 5 init evt] LISTENING web 10.0.2.15:8080
";
        link.read_records(input.as_bytes());
        assert_eq!(*got.lock().unwrap(), ["web err sh: python3: not found"]);
        let evs: Vec<String> = events.try_iter().collect();
        assert_eq!(evs.len(), 5, "{evs:?}");
        let s = link.status();
        assert!(s.ready);
        assert_eq!(s.exits, 1, "only the checked process counts");
        assert_eq!(s.last_exit.as_deref(), Some("EXITED web pid=7 status=127"));
        assert_eq!(s.listening.as_deref(), Some("web 10.0.2.15:8080"));
        assert_eq!(s.recent_output, ["web err: sh: python3: not found"]);
        assert_eq!(s.dropped, 1, "the garbage line");
    }

    #[test]
    fn a_flooding_guest_is_cut_to_the_budget_with_bounded_memory() {
        let (log, got) = collecting();
        let (link, _events) = GuestLink::new(log, None);
        let (mut guest, host) = UnixStream::pair().unwrap();
        let reader = {
            let link = link.clone();
            std::thread::spawn(move || link.read_records(host))
        };
        // A compromised init floods as fast as it can for a while, with
        // overlong lines among the records.
        let started = Instant::now();
        let mut sent = 0u64;
        let writer = std::thread::spawn(move || {
            let rec = "[bp 1 web out] y\n".as_bytes();
            let overlong = vec![b'x'; MAX_RECORD * 3];
            while started.elapsed() < Duration::from_millis(1500) {
                if guest.write_all(rec).is_err() {
                    break;
                }
                sent += 1;
                if sent.is_multiple_of(10_000) && guest.write_all(&overlong).is_err() {
                    break;
                }
            }
            drop(guest);
            sent
        });
        let sent = writer.join().unwrap();
        reader.join().unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let lines = got.lock().unwrap();
        let passed = lines.iter().filter(|l| *l == "web out y").count() as f64;
        // At most the burst plus the sustained rate over the time it ran.
        let bound =
            2.0 * f64::from(RECORD_LINES_PER_SEC) + f64::from(RECORD_LINES_PER_SEC) * elapsed;
        assert!(passed <= bound, "{passed} records passed, bound {bound}");
        assert!(
            (sent as f64) > passed,
            "the flood was not cut ({sent} sent)"
        );
        // What was read at all is bounded by the byte budget (the writer was
        // held back): the reader's CPU is bounded, whatever the guest sends.
        let read_bound =
            2.0 * f64::from(RECORD_BYTES_PER_SEC) + f64::from(RECORD_BYTES_PER_SEC) * elapsed;
        let read = sent as f64 * 17.0;
        assert!(
            read <= read_bound * 1.1,
            "read {read} bytes, bound {read_bound}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("init err rate-limited: ")),
            "no rate-limited notice"
        );
        assert!(link.status().dropped > 0);
    }

    #[test]
    fn console_lines_are_cut_and_the_log_capped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("console.log");
        let tail = ConsoleTail::default();
        let mut input = Vec::new();
        input.extend(b"[    0.1] hello\r\n");
        input.extend(vec![b'z'; MAX_CONSOLE_LINE * 3]);
        input.extend(b"\nafter\n");
        read_console(
            &input[..],
            Some(std::fs::File::create(&path).unwrap()),
            tail.clone(),
            "",
        );
        let log = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines[0], "[    0.1] hello");
        assert_eq!(lines[1].len(), MAX_CONSOLE_LINE);
        assert_eq!(lines[2], "after");
        assert!(tail.text().ends_with("after"));
    }
}
