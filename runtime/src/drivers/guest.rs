//! What both drivers share about a guest: their error type and the
//! console's last lines (for error messages).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Errors from a runtime driver (`qemu` or `kvm`), naming the VM.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The VM's process could not be started.
    #[error("cannot start {program} for VM `{vm}`{hint}")]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// The VM.
        vm: String,
        /// How to get the binary (` (apt-get install ...)`), or empty.
        hint: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is missing.
    #[error("VM `{vm}`: {what} {path} does not exist")]
    Missing {
        /// The VM.
        vm: String,
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The VM directory's path is too long for the VMM's Unix sockets.
    #[error("VM `{vm}`: directory {dir} is too long for Unix sockets (keep it under {max} bytes)")]
    PathTooLong {
        /// The VM.
        vm: String,
        /// The directory.
        dir: PathBuf,
        /// The longest allowed.
        max: usize,
    },
    /// The guest did not report READY in time.
    #[error("VM `{vm}` did not become ready within {seconds}s; last console lines:\n{tail}")]
    NotReady {
        /// The VM.
        vm: String,
        /// The timeout.
        seconds: u64,
        /// The console's last lines.
        tail: String,
    },
    /// The guest init failed or the VM's process exited before READY.
    #[error("VM `{vm}` failed to boot: {reason}")]
    BootFailed {
        /// The VM.
        vm: String,
        /// The guest's FATAL line or the process's exit.
        reason: String,
    },
    /// An input file the jailed VM process could not read.
    #[error("VM `{vm}`: {what} {path} is not readable by the VM's own user (mode {mode:o}); make it world-readable (chmod o+r) — the jail shows it to that VM alone")]
    NotReadable {
        /// The VM.
        vm: String,
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// I/O while preparing the VM.
    #[error("VM `{vm}`: {context}")]
    Io {
        /// The VM.
        vm: String,
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The console's last lines, shared by the threads reading the VM's output.
#[derive(Debug, Clone, Default)]
pub struct ConsoleTail(Arc<Mutex<VecDeque<String>>>);

impl ConsoleTail {
    /// Lines kept.
    const LINES: usize = 40;
    /// Characters kept of each line.
    const WIDTH: usize = 400;

    /// Remembers `line` (cut to [`Self::WIDTH`] characters), forgetting the
    /// oldest beyond [`Self::LINES`].
    pub fn push(&self, mut line: String) {
        if let Some((i, _)) = line.char_indices().nth(Self::WIDTH) {
            line.truncate(i);
        }
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.push_back(line);
        if t.len() > Self::LINES {
            t.pop_front();
        }
    }

    /// The lines, oldest first, one per line.
    pub fn text(&self) -> String {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_cut_short() {
        let tail = ConsoleTail::default();
        for i in 0..50 {
            tail.push(format!("line {i}"));
        }
        assert!(tail.text().starts_with("line 10\n") && tail.text().ends_with("line 49"));
        tail.push("é".repeat(1000));
        assert_eq!(tail.text().lines().last().unwrap().chars().count(), 400);
    }
}
