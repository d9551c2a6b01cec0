//! What both drivers share about a booting guest: their error type, the
//! console's last lines (for error messages), and waiting for the guest
//! init's `READY` while watching for `FATAL` and for the VM process dying.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// Remembers `line`, forgetting the oldest beyond [`Self::LINES`].
    pub fn push(&self, line: String) {
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

/// Waits up to `timeout` for the guest init's `READY` on `events`. A
/// `FATAL` event, or the VM's process ending (`exited` returns how), fails
/// the boot at once, with the console's last lines.
pub fn wait_ready(
    vm: &str,
    events: &Receiver<String>,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<String>,
    tail: &ConsoleTail,
) -> Result<(), DriverError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(e) if e == "READY" => return Ok(()),
            Ok(e) if e.starts_with("FATAL") => {
                return Err(DriverError::BootFailed {
                    vm: vm.to_string(),
                    reason: e,
                })
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(status) = exited() {
                    return Err(DriverError::BootFailed {
                        vm: vm.to_string(),
                        reason: format!("{status}; console:\n{}", tail.text()),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(DriverError::NotReady {
                        vm: vm.to_string(),
                        seconds: timeout.as_secs(),
                        tail: tail.text(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn ready_fatal_exit_and_timeout() {
        let tail = ConsoleTail::default();
        for i in 0..50 {
            tail.push(format!("line {i}"));
        }
        assert!(tail.text().starts_with("line 10\n") && tail.text().ends_with("line 49"));

        let (tx, rx) = channel();
        tx.send("BOOT byteport-init".to_string()).unwrap();
        tx.send("READY".to_string()).unwrap();
        assert!(wait_ready("a", &rx, Duration::from_secs(5), || None, &tail).is_ok());

        tx.send("FATAL cannot mount /dev/vda".to_string()).unwrap();
        let e = wait_ready("a", &rx, Duration::from_secs(5), || None, &tail).unwrap_err();
        assert!(e.to_string().contains("FATAL cannot mount"), "{e}");

        let e = wait_ready(
            "a",
            &rx,
            Duration::from_secs(5),
            || Some("exited (signal 9)".into()),
            &tail,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("exited (signal 9); console:\nline 10"),
            "{e}"
        );

        let e = wait_ready("a", &rx, Duration::from_millis(300), || None, &tail).unwrap_err();
        assert!(matches!(e, DriverError::NotReady { seconds: 0, .. }), "{e}");
        drop(tx);
        // A closed channel (reader threads gone) still waits for the process.
        let e = wait_ready("a", &rx, Duration::from_millis(300), || None, &tail).unwrap_err();
        assert!(matches!(e, DriverError::NotReady { .. }), "{e}");
    }
}
