//! What both drivers do with the VM's host process: start it (jailed, with
//! the parent-death signal, recorded in `vm.json`), read its console, wait
//! for the guest init's `READY`, stop or kill it, and — when the handle is
//! dropped — make sure it is gone and clean up after it: its cgroup and its
//! VM directory (a stopped VM leaves nothing in `run/vms`).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::guest::{ConsoleTail, DriverError};
use crate::guest_link::{read_console, GuestLink, GuestStatus};
use crate::jail::{cgroup, Jail, JailPlan, Limits};
use crate::process::{self, Spawn, VmRecord};
use crate::volume::Claim;

/// A running VM process and what is read from it.
pub struct VmProcess {
    name: String,
    program: &'static str,
    child: Child,
    dir: PathBuf,
    cgroups: Vec<PathBuf>,
    link: GuestLink,
    events: Receiver<String>,
    tail: ConsoleTail,
}

/// How to start one.
pub struct Start<'a> {
    /// The VM's name.
    pub name: &'a str,
    /// `qemu` or `byteport-vmm`, for messages.
    pub program: &'static str,
    /// The command (program path as seen inside the jail, if any).
    pub cmd: Command,
    /// Descriptors to pass (open here, number in the child).
    pub fds: Vec<(std::os::fd::OwnedFd, std::os::fd::RawFd)>,
    /// The VM directory.
    pub dir: &'a Path,
    /// The jail, described, with the host's jail settings and cgroup limits.
    pub jail: Option<(JailPlan, &'a Jail, Limits)>,
    /// How to install the program, for a failed spawn.
    pub hint: &'static str,
    /// The host path of the program, for a failed spawn.
    pub program_path: PathBuf,
    /// The guest link the records reader(s) feed, and its events.
    pub link: (GuestLink, Receiver<String>),
}

/// `Err` if `path` is missing, or not readable by a jailed VM's own user.
pub fn check_input(
    vm: &str,
    what: &'static str,
    path: &Path,
    jailed: bool,
) -> Result<(), DriverError> {
    let md = std::fs::metadata(path).map_err(|_| DriverError::Missing {
        vm: vm.to_string(),
        what,
        path: path.to_path_buf(),
    })?;
    if jailed && md.mode() & 0o004 == 0 {
        return Err(DriverError::NotReadable {
            vm: vm.to_string(),
            what,
            path: path.to_path_buf(),
            mode: md.mode() & 0o7777,
        });
    }
    Ok(())
}

/// A [`DriverError::Io`] maker naming `vm` and what was being done.
pub fn io_error(vm: &str, context: &str) -> impl FnOnce(std::io::Error) -> DriverError {
    let (vm, context) = (vm.to_string(), context.to_string());
    move |source| DriverError::Io {
        vm,
        context,
        source,
    }
}

/// The first descriptor number of the volume locks a VM process holds.
pub const VOLUME_LOCK_FDS: i32 = 10;

/// A volume as the VM process sees it.
pub struct VolumeDisk {
    /// The volume's name.
    pub name: String,
    /// Its image: inside the jail (read-write, owned by the jail's uid), or
    /// on the host when unjailed.
    pub path: String,
    /// A share of its lock, handed down at descriptor
    /// [`VOLUME_LOCK_FDS`]` + i`.
    pub lock: (std::os::fd::OwnedFd, std::os::fd::RawFd),
}

/// Each claimed volume made visible to the VM process (see [`VolumeDisk`]).
pub fn attach_volumes(
    vm: &str,
    claims: &[std::sync::Arc<Claim>],
    mut plan: Option<&mut JailPlan>,
) -> Result<Vec<VolumeDisk>, DriverError> {
    let mut out = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        let name = c.volume.name.clone();
        let path = match plan.as_deref_mut() {
            Some(p) => {
                c.hand_to(p.id())
                    .map_err(io_error(vm, "handing a volume image to the VM's user"))?;
                p.file_rw(&c.volume.image, &format!("vol-{name}"))
                    .map_err(io_error(vm, "preparing the jail"))?
                    .display()
                    .to_string()
            }
            None => c.volume.image.display().to_string(),
        };
        let lock = c
            .lock_fd()
            .map_err(io_error(vm, "sharing a volume's lock with the VM"))?;
        out.push(VolumeDisk {
            name,
            path,
            lock: (lock, VOLUME_LOCK_FDS + i as i32),
        });
    }
    Ok(out)
}

impl VmProcess {
    /// Starts the process: its cgroup, the jail, the parent-death signal,
    /// `vm.json`, and threads reading its console (stdout, into
    /// `console.log` and the tail) and stderr (into the tail).
    pub fn start(s: Start<'_>) -> Result<VmProcess, DriverError> {
        let Start {
            name,
            program,
            mut cmd,
            fds,
            dir,
            jail,
            hint,
            program_path,
            link,
        } = s;
        let mut cgroups = Vec::new();
        let prepared = match jail {
            Some((mut plan, settings, limits)) => {
                let group = cgroup_name(dir);
                cgroups = cgroup::create(&settings.cgroups, &group, limits)
                    .map_err(io_error(name, "creating the VM's cgroup"))?;
                plan.cgroups(cgroups.clone());
                Some(
                    plan.prepare()
                        .map_err(io_error(name, "preparing the jail"))?,
                )
            }
            None => None,
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = process::spawn(Spawn {
            cmd,
            fds,
            jail: prepared,
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                cgroup::remove(&cgroups);
                return Err(DriverError::Spawn {
                    program: program_path,
                    vm: name.to_string(),
                    hint,
                    source,
                });
            }
        };
        let record = VmRecord::of(child.id(), cgroups.clone());
        if let Err(e) = record.and_then(|r| r.write(dir)) {
            tracing::warn!(vm = name, error = %e, "cannot record the VM process; a crash of the daemon would leave it to the parent-death signal alone");
        }
        let tail = ConsoleTail::default();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let console = crate::fsutil::create_private(&dir.join("console.log"))
            .map_err(io_error(name, "creating the console log"))?;
        spawn_reader(
            "vm-console",
            stdout,
            Some(console),
            tail.clone(),
            String::new(),
        );
        spawn_reader(
            "vm-stderr",
            stderr,
            None,
            tail.clone(),
            format!("{program}: "),
        );
        let (link, events) = link;
        Ok(VmProcess {
            name: name.to_string(),
            program,
            child,
            dir: dir.to_path_buf(),
            cgroups,
            link,
            events,
            tail,
        })
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The console's last lines, and the app's last output.
    pub fn console_tail(&self) -> String {
        let status = self.link.status();
        let mut t = self.tail.text();
        if !status.recent_output.is_empty() {
            t.push_str("\nlast app output:\n");
            t.push_str(&status.recent_output.join("\n"));
        }
        t
    }

    /// The guest's state from its events.
    pub fn guest(&self) -> GuestStatus {
        self.link.status()
    }

    /// Events since the last call.
    pub fn drain_events(&self) -> Vec<String> {
        self.events.try_iter().collect()
    }

    /// `None` while the process runs; how it ended once it has.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.program)),
            Ok(None) => None,
            Err(e) => Some(format!("cannot query {}: {e}", self.program)),
        }
    }

    /// Waits up to `timeout` for the guest init's READY; a FATAL event or
    /// the process ending fails at once, with the console's last lines.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), DriverError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.link.status();
            if let Some(fatal) = status.fatal {
                return Err(DriverError::BootFailed {
                    vm: self.name.clone(),
                    reason: fatal,
                });
            }
            if status.ready {
                return Ok(());
            }
            if let Some(how) = self.exit_status() {
                // Let the readers catch the last words (a one-off VM may
                // have said READY and be done already).
                std::thread::sleep(Duration::from_millis(100));
                if self.link.status().ready {
                    return Ok(());
                }
                return Err(DriverError::BootFailed {
                    vm: self.name.clone(),
                    reason: format!("{how}; console:\n{}", self.console_tail()),
                });
            }
            if Instant::now() >= deadline {
                return Err(DriverError::NotReady {
                    vm: self.name.clone(),
                    seconds: timeout.as_secs(),
                    tail: self.console_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `grace` for the process to end by itself.
    pub fn wait_exit(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            tracing::warn!(vm = %self.name, "{}: killing", self.program);
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        self.kill();
        cgroup::remove(&self.cgroups);
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(vm = %self.name, dir = %self.dir.display(), error = %e, "cannot remove the VM directory");
            }
        }
    }
}

fn spawn_reader(
    thread: &str,
    r: impl Read + Send + 'static,
    log: Option<std::fs::File>,
    tail: ConsoleTail,
    prefix: String,
) {
    let _ = std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || read_console(r, log, tail, &prefix));
}

/// The cgroup of the VM in `dir`: unique per VM directory (VMs of several
/// daemons share `byteport-vms`), short, and found again by
/// [`crate::leftovers`] through `vm.json`.
fn cgroup_name(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let leaf = dir
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(40).collect::<String>())
        .unwrap_or_default();
    format!(
        "{leaf}-{}",
        h.iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}
