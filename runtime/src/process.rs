//! Starting VM processes (QEMU, `byteport-vmm`) so that none outlives the
//! daemon that started it, and recording who they are so that a daemon that
//! was killed anyway can find them at its next start (see
//! [`crate::leftovers`]).
//!
//! - Every child gets `PR_SET_PDEATHSIG(SIGKILL)`. The kernel sends that
//!   signal when the *thread* that forked the child exits, not the process;
//!   a VM started from a short-lived thread (a blocking-pool thread of the
//!   daemon's async runtime, say) would be killed when that thread retires.
//!   So every VM process is forked by one thread that lives as long as the
//!   process, [`spawn`]'s spawner thread. The child re-checks its parent
//!   after `prctl`: if the daemon died in between, it exits before exec.
//! - Descriptors the child needs besides stdio (QEMU's records channel, say)
//!   are handed over at fixed numbers.
//! - The jail ([`crate::jail`]) is entered in the child between fork and
//!   exec — before the death signal is set, since the kernel clears that
//!   setting when the process changes its uid or gid (found the hard way:
//!   a jailed VM outlived its SIGKILLed daemon).
//! - The VM directory records the child's pid, its start time (clock ticks
//!   since boot, `/proc/PID/stat` field 22) and the boot id: a pid that was
//!   recycled by an unrelated process never matches all three.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::jail::Prepared;

/// A process to start.
pub struct Spawn {
    /// Program, arguments, environment, stdio.
    pub cmd: Command,
    /// Descriptors to pass: (open in this process, number in the child).
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// The jail to enter before exec, if any.
    pub jail: Option<Prepared>,
}

type Request = (Spawn, Sender<io::Result<Child>>);

/// Starts `s` from the spawner thread (started on first use, alive for the
/// rest of the process), so that its `PR_SET_PDEATHSIG` fires only when
/// the whole process dies.
pub fn spawn(s: Spawn) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("byteport-vm-spawner".into())
            .spawn(move || {
                for (s, reply) in rx {
                    let _ = reply.send(spawn_here(s));
                }
            })
            .expect("cannot start the VM spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((s, tx))
        .map_err(|_| io::Error::other("the VM spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the VM spawner thread is gone"))?
}

/// Numbers the child's passed descriptors are first moved to, above any
/// target, so that moving them into place never overwrites another source.
const FD_STAGING: RawFd = 200;

fn spawn_here(s: Spawn) -> io::Result<Child> {
    let Spawn {
        mut cmd,
        fds,
        mut jail,
    } = s;
    // Where the child says which jail step failed (an errno alone would not).
    let (diag_r, diag_w) = pipe()?;
    let diag_fd = diag_w.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let moves: Vec<(RawFd, RawFd)> = fds.iter().map(|(f, n)| (f.as_raw_fd(), *n)).collect();
    // SAFETY: the closure runs between fork and exec. It only makes
    // async-signal-safe syscalls on memory prepared before the fork
    // (`moves`, `jail`'s C strings); it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            for (i, (from, _)) in moves.iter().enumerate() {
                if libc::dup2(*from, FD_STAGING + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (i, (_, to)) in moves.iter().enumerate() {
                // dup2 clears FD_CLOEXEC on the new descriptor.
                if libc::dup2(FD_STAGING + i as RawFd, *to) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(FD_STAGING + i as RawFd);
            }
            if let Some(j) = jail.as_mut() {
                j.enter(diag_fd)?;
            }
            // Last: a change of uid or gid (the jail's) clears the setting.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The daemon died before the prctl took effect.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    drop(cmd);
    drop(diag_w);
    drop(fds);
    spawned.map_err(|e| {
        let mut what = String::new();
        let _ = std::fs::File::from(diag_r).read_to_string(&mut what);
        if what.is_empty() {
            e
        } else {
            io::Error::new(e.kind(), format!("{}: {e}", what.trim()))
        }
    })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Who a VM's process is, written into its VM directory as `vm.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
    /// The kernel's boot id when it started.
    pub boot_id: String,
    /// Its cgroup directories (removed once it is gone).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// The record's file name in a VM directory.
pub const RECORD_FILE: &str = "vm.json";

impl VmRecord {
    /// The record of running process `pid`.
    pub fn of(pid: u32, cgroups: Vec<PathBuf>) -> io::Result<VmRecord> {
        Ok(VmRecord {
            pid,
            start_ticks: start_ticks(pid)?,
            boot_id: boot_id()?,
            cgroups,
        })
    }

    /// Writes `dir/vm.json` (mode 0600).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        crate::fsutil::write_private(&dir.join(RECORD_FILE), &json)
    }

    /// Reads `dir/vm.json`.
    pub fn read(dir: &Path) -> io::Result<VmRecord> {
        let bytes = std::fs::read(dir.join(RECORD_FILE))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Whether the process this record names still runs (same pid, same
    /// start time, same boot) — not some other process that got the pid.
    pub fn is_alive(&self) -> bool {
        boot_id().is_ok_and(|b| b == self.boot_id)
            && start_ticks(self.pid).is_ok_and(|t| t == self.start_ticks)
    }
}

/// Field 22 of `/proc/PID/stat`.
pub fn start_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its closing parenthesis.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))?;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc stat"))
}

fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Stdio;

    #[test]
    fn passed_descriptors_arrive_at_their_numbers() {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo hello >&3"]).stdin(Stdio::null());
        let mut child = spawn(Spawn {
            cmd,
            fds: vec![(OwnedFd::from(theirs), 3)],
            jail: None,
        })
        .unwrap();
        assert!(child.wait().unwrap().success());
        let mut got = String::new();
        let mut mine = mine;
        mine.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        mine.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello\n");
    }

    #[test]
    fn records_recognise_their_process_and_not_a_recycled_pid() {
        let d = tempfile::tempdir().unwrap();
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let rec = VmRecord::of(sleeper.id(), vec![]).unwrap();
        rec.write(d.path()).unwrap();
        let back = VmRecord::read(d.path()).unwrap();
        assert_eq!(back, rec);
        assert!(back.is_alive());
        let mut other = back.clone();
        other.start_ticks += 1;
        assert!(!other.is_alive(), "same pid, other start time");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(!back.is_alive());
        let mut f = std::fs::File::create(d.path().join(RECORD_FILE)).unwrap();
        f.write_all(b"{not json").unwrap();
        assert!(VmRecord::read(d.path()).is_err());
    }

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        assert!(start_ticks(std::process::id()).unwrap() > 0);
    }
}
