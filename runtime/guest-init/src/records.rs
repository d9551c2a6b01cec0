//! The record protocol between the guest init and the host, shared by both
//! ends: one line per record, `[bp <unix-ms> <process> <stream>] <text>`,
//! where `init evt` records are the init's events (`BOOT`, `READY`,
//! `STARTED`, `EXITED`, `RESTART`, `LISTENING`, `FATAL`, `POWEROFF`, ...)
//! and all others are app output. Records travel on a channel only PID 1
//! holds (see [`crate::config::RecordChannel`]), so an app can neither forge
//! an event nor pose as another process.
//!
//! [`Budget`] is the flood control both ends apply: the guest init per app
//! process (dropped lines are announced in the app's log as `rate-limited`),
//! the host per VM (a guest whose init is compromised still costs the host
//! bounded memory and CPU).

use std::time::{Duration, Instant};

/// Longest text of one record; the guest init cuts longer lines (and says so).
pub const MAX_TEXT: usize = 16 * 1024;
/// Longest record line the host accepts (text plus the header).
pub const MAX_RECORD: usize = MAX_TEXT + 256;

/// One record, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An app process wrote a line.
    App {
        /// `web` or a worker's name.
        process: String,
        /// `out` or `err`.
        stream: String,
        /// The line.
        text: String,
    },
    /// An init event, e.g. `EXITED web pid=12 status=1`.
    Event(String),
}

/// Formats one record (control characters in `text` become U+FFFD, so a
/// record is always exactly one line).
pub fn format(unix_ms: u128, process: &str, stream: &str, text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    format!("[bp {unix_ms} {process} {stream}] {clean}\n")
}

/// Parses one line of the records channel; `None` for anything that is not
/// a well-formed record (the host counts and drops those).
pub fn parse(line: &str) -> Option<Record> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix("[bp ")?;
    let (head, text) = rest.split_once("] ")?;
    let mut parts = head.split(' ');
    let (ms, process, stream) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || ms.is_empty()
        || !ms.bytes().all(|b| b.is_ascii_digit())
        || process.is_empty()
        || stream.is_empty()
    {
        return None;
    }
    Some(if process == "init" && stream == "evt" {
        Record::Event(text.to_string())
    } else {
        Record::App {
            process: process.to_string(),
            stream: stream.to_string(),
            text: text.to_string(),
        }
    })
}

/// A token bucket over lines and bytes, with a count of what it refused.
#[derive(Debug, Clone)]
pub struct Budget {
    lines_per_sec: f64,
    bytes_per_sec: f64,
    burst_lines: f64,
    burst_bytes: f64,
    lines: f64,
    bytes: f64,
    last: Instant,
    dropped: u64,
    last_notice: Option<Instant>,
}

impl Budget {
    /// A full bucket: `lines_per_sec` and `bytes_per_sec` sustained, bursts
    /// of twice that.
    pub fn new(lines_per_sec: u32, bytes_per_sec: u32, now: Instant) -> Self {
        let (l, b) = (f64::from(lines_per_sec), f64::from(bytes_per_sec));
        Self {
            lines_per_sec: l,
            bytes_per_sec: b,
            burst_lines: 2.0 * l,
            burst_bytes: 2.0 * b,
            lines: 2.0 * l,
            bytes: 2.0 * b,
            last: now,
            dropped: 0,
            last_notice: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.lines = (self.lines + dt * self.lines_per_sec).min(self.burst_lines);
        self.bytes = (self.bytes + dt * self.bytes_per_sec).min(self.burst_bytes);
    }

    /// Whether a line of `bytes` may pass now; a refused one is counted.
    pub fn admit(&mut self, bytes: usize, now: Instant) -> bool {
        self.refill(now);
        let b = bytes as f64;
        if self.lines >= 1.0 && self.bytes >= b.min(self.burst_bytes) {
            self.lines -= 1.0;
            self.bytes -= b;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Spends `bytes` whether or not their line passes: a reader that
    /// charges everything it reads, and waits with [`Budget::wait_for_bytes`]
    /// before reading on, reads at most the byte rate.
    pub fn spend(&mut self, bytes: usize, now: Instant) {
        self.refill(now);
        self.bytes -= bytes as f64;
    }

    /// Whether one more line may pass now (lines only; see [`Budget::spend`]
    /// for the bytes); a refused one is counted.
    pub fn admit_line(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.lines >= 1.0 {
            self.lines -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// How long until `bytes` more bytes fit (zero if they do now): a reader
    /// that waits this long before reading on bounds its own CPU and memory.
    pub fn wait_for_bytes(&mut self, bytes: usize, now: Instant) -> Duration {
        self.refill(now);
        let missing = (bytes as f64).min(self.burst_bytes) - self.bytes;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.bytes_per_sec)
        }
    }

    /// Lines dropped since the last notice, if there are any and a notice is
    /// due (at most one a second, so the notices cannot flood either).
    pub fn notice(&mut self, now: Instant) -> Option<u64> {
        if self.dropped == 0
            || self
                .last_notice
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return None;
        }
        self.last_notice = Some(now);
        Some(std::mem::take(&mut self.dropped))
    }

    /// Lines dropped since the last notice, whether or not a notice is due
    /// (for a last notice when the stream ends).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// The sustained line rate, for notices.
    pub fn lines_per_sec(&self) -> u32 {
        self.lines_per_sec as u32
    }
}

/// The text of the notice about `dropped` lines, in the app's own log.
pub fn rate_limited_notice(dropped: u64, lines_per_sec: u32) -> String {
    format!(
        "rate-limited: {dropped} line{} dropped (limit {lines_per_sec} lines/s)",
        if dropped == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_stay_one_line() {
        let r = format(17, "web", "out", "hello\u{1b}[31m\nworld");
        assert!(r.ends_with('\n') && r.matches('\n').count() == 1, "{r:?}");
        assert_eq!(
            parse(&r),
            Some(Record::App {
                process: "web".into(),
                stream: "out".into(),
                text: "hello\u{fffd}[31m\u{fffd}world".into()
            })
        );
        assert_eq!(
            parse("[bp 1 init evt] READY\r\n"),
            Some(Record::Event("READY".into()))
        );
    }

    #[test]
    fn only_whole_records_parse() {
        for bad in [
            "kernel noise [bp 1 init evt] READY",
            "[bp x init evt] READY",
            "[bp 1 init] READY",
            "[bp 1 init evt extra] READY",
            "[bp  init evt] READY",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // An app's text that looks like an event stays the app's.
        assert!(matches!(
            parse("[bp 1 web out] [bp 1 init evt] READY"),
            Some(Record::App { .. })
        ));
    }

    #[test]
    fn the_budget_admits_bursts_then_the_rate_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut b = Budget::new(10, 1_000_000, t0);
        let passed = (0..100).filter(|_| b.admit(10, t0)).count();
        assert_eq!(passed, 20, "a burst of twice the rate");
        assert_eq!(b.notice(t0), Some(80));
        assert_eq!(b.notice(t0), None, "nothing new dropped");
        let t1 = t0 + Duration::from_millis(500);
        let passed = (0..100).filter(|_| b.admit(10, t1)).count();
        assert_eq!(passed, 5, "half a second refills half the rate");
        assert_eq!(b.notice(t1), None, "at most one notice a second");
        assert_eq!(b.notice(t0 + Duration::from_secs(1)), Some(95));
        // Bytes limit too.
        let mut b = Budget::new(1000, 100, t0);
        assert!(b.admit(150, t0));
        assert!(!b.admit(100, t0));
        assert!(b.wait_for_bytes(100, t0) > Duration::ZERO);
        // Spent bytes count whether or not their line passed.
        let mut b = Budget::new(1, 100, t0);
        b.spend(500, t0);
        // A burst of 200 bytes, 500 spent: 310 bytes to go at 100 bytes/s.
        assert_eq!(b.wait_for_bytes(10, t0), Duration::from_secs_f64(3.1));
        assert!(b.admit_line(t0) && b.admit_line(t0) && !b.admit_line(t0));
        assert_eq!(
            rate_limited_notice(1, 5),
            "rate-limited: 1 line dropped (limit 5 lines/s)"
        );
    }
}
