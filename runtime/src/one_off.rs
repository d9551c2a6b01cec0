//! One-off VMs: a release command (Heroku's release phase) or a
//! `byteport run` runs in a VM of its own, booted with
//! [`AppSpec::one_off`](crate::AppSpec::one_off) — the guest init runs the
//! processes once, restarts none, and powers off when they have exited. Its
//! result is the first process's exit status, reported by the guest init
//! (`EXITED <name> pid=N status=S`) on the channel only it holds.
//!
//! With [`AppSpec::console`](crate::AppSpec::console) (`byteport run` with a
//! TTY, QEMU driver) the one command runs on a pseudo-terminal in the
//! guest: the caller relays [`AppVm::take_console`] to the user and
//! forwards window changes with [`AppVm::resize_console`]; the result is
//! still [`wait_exit`]'s. Without a console the command's stdin is
//! `/dev/null` and its output arrives line by line as app log records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::drivers::AppVm;

/// Why a one-off VM gave no exit status.
#[derive(Debug, thiserror::Error)]
pub enum OneOffError {
    /// It ran longer than allowed; it was powered off.
    #[error("the command did not finish within {} s; its VM was stopped", .0.as_secs())]
    Timeout(Duration),
    /// It was cancelled (the job asking went away); its VM was stopped.
    #[error("cancelled; the VM was stopped")]
    Cancelled,
    /// The command was ended by a signal.
    #[error("the command was killed by signal {0}")]
    Signal(i32),
    /// The VM ended without the guest init reporting an exit.
    #[error("the VM ended ({how}) before the command reported an exit; console:\n{tail}")]
    VmEnded {
        /// How the VM process ended.
        how: String,
        /// The console's last lines.
        tail: String,
    },
}

/// Parses `EXITED <name> pid=N status=S|signal=S` into `Ok(S)` / `Err(signal)`.
pub fn parse_exit(event: &str) -> Option<Result<i32, i32>> {
    let mut words = event.split_whitespace();
    (words.next()? == "EXITED").then_some(())?;
    let how = words.nth(2)?;
    if let Some(s) = how.strip_prefix("status=") {
        return s.parse().ok().map(Ok);
    }
    how.strip_prefix("signal=")?.parse().ok().map(Err)
}

/// Waits up to `timeout` for a booted one-off VM to power off, and returns
/// its first process's exit status. At the timeout the VM is stopped.
pub fn wait_exit(vm: &mut dyn AppVm, timeout: Duration) -> Result<i32, OneOffError> {
    wait_exit_unless(vm, timeout, &AtomicBool::new(false))
}

/// [`wait_exit`], and the VM is stopped as soon as `cancel` is set
/// ([`OneOffError::Cancelled`]).
pub fn wait_exit_unless(
    vm: &mut dyn AppVm,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<i32, OneOffError> {
    wait_exit_tending(vm, timeout, cancel, &mut |_| {})
}

/// [`wait_exit_unless`], calling `tend` with the VM at every poll (every
/// 100 ms) while it runs: where a console's window changes are passed on
/// ([`AppVm::resize_console`]), from the thread that owns the VM.
pub fn wait_exit_tending(
    vm: &mut dyn AppVm,
    timeout: Duration,
    cancel: &AtomicBool,
    tend: &mut dyn FnMut(&mut dyn AppVm),
) -> Result<i32, OneOffError> {
    let deadline = Instant::now() + timeout;
    loop {
        tend(vm);
        if cancel.load(Ordering::SeqCst) && vm.exit_status().is_none() {
            vm.stop(Duration::from_secs(5));
            return Err(OneOffError::Cancelled);
        }
        if let Some(how) = vm.exit_status() {
            // Let the records reader catch the last events.
            std::thread::sleep(Duration::from_millis(100));
            return match vm.guest().last_exit.as_deref().and_then(parse_exit) {
                Some(Ok(status)) => Ok(status),
                Some(Err(signal)) => Err(OneOffError::Signal(signal)),
                None => Err(OneOffError::VmEnded {
                    how,
                    tail: vm.console_tail(),
                }),
            };
        }
        if Instant::now() >= deadline {
            vm.stop(Duration::from_secs(5));
            return Err(OneOffError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_events_parse() {
        assert_eq!(parse_exit("EXITED release pid=7 status=3"), Some(Ok(3)));
        assert_eq!(parse_exit("EXITED release pid=0 status=127"), Some(Ok(127)));
        assert_eq!(parse_exit("EXITED release pid=7 signal=9"), Some(Err(9)));
        assert_eq!(parse_exit("STARTED release pid=7"), None);
        assert_eq!(parse_exit("EXITED"), None);
        assert_eq!(parse_exit("EXITED r pid=1 status=x"), None);
    }
}
