//! Reaping what a daemon that was killed (SIGKILL, OOM, power cut of the
//! process) left in its run directory — call [`reap_leftovers`] when the
//! daemon starts, before it boots or restores anything.
//!
//! Its VM processes normally died with it (`PR_SET_PDEATHSIG`, see
//! [`crate::process`]); one that did not — reparented before the signal
//! could fire, started by an older version — is found through the
//! `vm.json` of its VM directory and killed, but only if its pid, start
//! time and boot id all still match: a pid the kernel gave to an unrelated
//! process since is never signalled. The kill goes through a pidfd opened
//! before the final check, so the pid cannot be recycled in between. Then
//! every VM directory (a stopped VM's too) and the VM's cgroup are removed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::jail::cgroup;
use crate::process::VmRecord;

/// A VM process of an earlier run that was still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Its VM directory.
    pub dir: PathBuf,
    /// Its pid.
    pub pid: u32,
}

/// What [`reap_leftovers`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeftoverReport {
    /// VM processes that were still running and were killed.
    pub killed: Vec<Leftover>,
    /// VM directories whose process was gone already — or whose pid now
    /// belongs to another process, which was left alone.
    pub gone: Vec<PathBuf>,
    /// VM directories removed.
    pub removed: usize,
    /// What could not be done (the daemon logs these).
    pub errors: Vec<String>,
}

impl std::fmt::Display for LeftoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} leftover VM process(es) killed, {} VM director{} removed",
            self.killed.len(),
            self.removed,
            if self.removed == 1 { "y" } else { "ies" }
        )?;
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

/// Kills the VM processes an earlier run of the daemon left running under
/// `run_dir` and removes every VM directory there (`run_dir/vms/*`).
pub fn reap_leftovers(run_dir: &Path) -> LeftoverReport {
    let mut report = LeftoverReport::default();
    let vms = run_dir.join("vms");
    let entries = match std::fs::read_dir(&vms) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return report,
        Err(e) => {
            report
                .errors
                .push(format!("cannot list {}: {e}", vms.display()));
            return report;
        }
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match VmRecord::read(&dir) {
            Ok(rec) => {
                if rec.is_alive() {
                    match kill_verified(&rec) {
                        Ok(true) => report.killed.push(Leftover {
                            dir: dir.clone(),
                            pid: rec.pid,
                        }),
                        Ok(false) => report.gone.push(dir.clone()),
                        Err(e) => {
                            report.errors.push(format!(
                                "cannot kill VM process {} of {}: {e}",
                                rec.pid,
                                dir.display()
                            ));
                            // Leave its directory: it still runs.
                            continue;
                        }
                    }
                } else {
                    report.gone.push(dir.clone());
                }
                cgroup::remove(&rec.cgroups);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report.errors.push(format!(
                "unreadable {}: {e}; its process (if any) was left alone",
                dir.join(crate::process::RECORD_FILE).display()
            )),
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => report.removed += 1,
            Err(e) => report
                .errors
                .push(format!("cannot remove {}: {e}", dir.display())),
        }
    }
    report
}

/// Kills the process `rec` names if it is still that process; waits up to
/// ten seconds for it to end. `Ok(false)`: it was gone (or not ours).
fn kill_verified(rec: &VmRecord) -> io::Result<bool> {
    // SAFETY: plain syscall; the descriptor is owned right below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    // SAFETY: `fd` is a new pidfd nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process it was opened for: checked after opening,
    // the record's start time proves that process is ours.
    if !rec.is_alive() {
        return Ok(false);
    }
    // SAFETY: a valid pidfd; no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut p = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. A pidfd polls readable once the process ended.
        if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other("still running 10 s after SIGKILL"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn nothing_to_do_without_a_run_directory() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            reap_leftovers(&d.path().join("nope")),
            LeftoverReport::default()
        );
    }

    #[test]
    fn stopped_vms_directories_go_and_unreadable_records_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let vms = d.path().join("vms");
        std::fs::create_dir_all(vms.join("a-1.1")).unwrap();
        std::fs::create_dir_all(vms.join("b-1.2")).unwrap();
        std::fs::write(vms.join("b-1.2/vm.json"), "{oops").unwrap();
        let r = reap_leftovers(d.path());
        assert_eq!(r.removed, 2);
        assert!(r.killed.is_empty());
        assert_eq!(r.errors.len(), 1, "{r}");
        assert!(r.errors[0].contains("left alone"), "{r}");
        assert_eq!(std::fs::read_dir(&vms).unwrap().count(), 0);
    }

    #[test]
    fn a_live_leftover_is_killed_and_a_recycled_pid_is_not() {
        let d = tempfile::tempdir().unwrap();
        let vms = d.path().join("vms");
        // A leftover: a process whose record matches.
        let mut leftover = Command::new("sleep").arg("600").spawn().unwrap();
        let dir = vms.join("hello-3.1");
        std::fs::create_dir_all(&dir).unwrap();
        VmRecord::of(leftover.id(), vec![])
            .unwrap()
            .write(&dir)
            .unwrap();
        // An unrelated process that has the pid a record names, but not its
        // start time: what a recycled pid looks like.
        let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
        let dir2 = vms.join("hello-2.1");
        std::fs::create_dir_all(&dir2).unwrap();
        let mut rec = VmRecord::of(bystander.id(), vec![]).unwrap();
        rec.start_ticks -= 1;
        rec.write(&dir2).unwrap();

        let r = reap_leftovers(d.path());
        assert_eq!(
            r.killed,
            [Leftover {
                dir: dir.clone(),
                pid: leftover.id()
            }]
        );
        assert_eq!(r.gone, std::slice::from_ref(&dir2));
        assert_eq!(r.removed, 2);
        let status = leftover.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(
            bystander.try_wait().unwrap().is_none(),
            "the bystander was killed"
        );
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }
}
