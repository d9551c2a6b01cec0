//! Where build output goes: a [`LogSink`] the caller supplies (gitd's
//! side-band, the dashboard, stderr for the CLI).

use std::sync::Mutex;

/// Receives build log lines, one call per line (no trailing newline).
///
/// Called from the build thread and from a step's output reader thread, so
/// implementations must be `Sync`.
pub trait LogSink: Send + Sync {
    /// Record one line.
    fn line(&self, line: &str);
}

impl<F: Fn(&str) + Send + Sync> LogSink for F {
    fn line(&self, line: &str) {
        self(line)
    }
}

/// Writes every line to stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrSink;

impl LogSink for StderrSink {
    fn line(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Discards every line.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl LogSink for NullSink {
    fn line(&self, _line: &str) {}
}

/// Keeps every line in memory (tests, the dashboard's build view).
#[derive(Debug, Default)]
pub struct MemorySink {
    lines: Mutex<Vec<String>>,
}

impl MemorySink {
    /// A copy of the lines recorded so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl LogSink for MemorySink {
    fn line(&self, line: &str) {
        if let Ok(mut l) = self.lines.lock() {
            l.push(line.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_and_memory_sink_receive_lines() {
        let mem = MemorySink::default();
        mem.line("a");
        mem.line("b");
        assert_eq!(mem.lines(), vec!["a", "b"]);
        let count = std::sync::atomic::AtomicUsize::new(0);
        let f = |_: &str| {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        };
        (&f as &dyn LogSink).line("x");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
