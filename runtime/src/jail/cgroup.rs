//! One cgroup per VM process, with limits: memory (guest RAM plus the
//! VMM's overhead; no swap beyond it), number of tasks (threads and QEMU's
//! per-connection relays), CPU bandwidth (vCPUs plus one for device
//! emulation). On the unified hierarchy (v2) the group is
//! `<root>/byteport-vms/<name>`; on legacy hierarchies (v1, or a "hybrid"
//! host whose unified mount offers none of these controllers) it is
//! `byteport-vms/<name>` in each controller's hierarchy — the layout the
//! builder uses for build steps (`byteport-build/...`). Hierarchies are
//! found in `/proc/self/mountinfo`. A host without them runs VMs without
//! limits, and [`Hierarchy::describe`] says so.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory all VM groups live in, in each hierarchy.
pub const PARENT: &str = "byteport-vms";

/// Controllers a VM group is limited with.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Limits of one VM process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Tasks (processes and threads).
    pub pids: u32,
    /// CPU bandwidth in whole CPUs.
    pub cpus: u32,
}

/// The cgroup hierarchy VM groups are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified (v2), mounted at this path.
    V2(PathBuf),
    /// Legacy (v1): (controller, mount point) for each available controller.
    V1(Vec<(&'static str, PathBuf)>),
    /// None usable; why.
    Unavailable(String),
}

impl Hierarchy {
    /// The hierarchy of this host, from `/proc/self/mountinfo`.
    pub fn detect() -> Hierarchy {
        match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => Self::from_mountinfo(&text, |p| {
                std::fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default()
            }),
            Err(e) => Hierarchy::Unavailable(format!("cannot read /proc/self/mountinfo: {e}")),
        }
    }

    fn from_mountinfo(text: &str, controllers_of: impl Fn(&Path) -> String) -> Hierarchy {
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount), Some(fstype), Some(opts)) =
                (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
            else {
                continue;
            };
            let mount = PathBuf::from(mount.replace("\\040", " "));
            match *fstype {
                "cgroup2" => {
                    let offered = controllers_of(&mount);
                    let offered: Vec<&str> = offered.split_whitespace().collect();
                    if CONTROLLERS.iter().all(|c| offered.contains(c)) {
                        v2 = Some(mount);
                    }
                }
                "cgroup" => {
                    for c in CONTROLLERS {
                        if opts.split(',').any(|o| o == c) && !v1.iter().any(|(k, _)| *k == c) {
                            v1.push((c, mount.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2 {
            Hierarchy::V2(root)
        } else if !v1.is_empty() {
            Hierarchy::V1(v1)
        } else {
            Hierarchy::Unavailable(
                "no cgroup hierarchy offers memory, pids or cpu: VMs run without resource limits"
                    .into(),
            )
        }
    }

    /// For logs and `doctor`: which hierarchy, and what is missing.
    pub fn describe(&self) -> String {
        match self {
            Hierarchy::V2(root) => format!("cgroup v2 at {}", root.display()),
            Hierarchy::V1(m) => {
                let missing: Vec<_> = CONTROLLERS
                    .iter()
                    .filter(|c| !m.iter().any(|(k, _)| k == *c))
                    .collect();
                if missing.is_empty() {
                    "cgroup v1".into()
                } else {
                    format!("cgroup v1 (no {missing:?} controller: not limited)")
                }
            }
            Hierarchy::Unavailable(why) => why.clone(),
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

/// Creates the group `name` with `limits`; returns its directories (one on
/// v2, one per controller on v1). The VM process joins them by writing to
/// their `cgroup.procs` before exec.
pub fn create(h: &Hierarchy, name: &str, limits: Limits) -> io::Result<Vec<PathBuf>> {
    let quota = u64::from(limits.cpus.max(1)) * 100_000;
    match h {
        Hierarchy::V2(root) => {
            let parent = root.join(PARENT);
            std::fs::create_dir_all(&parent)?;
            // Delegate the controllers down to the VM groups (the root is
            // exempt from the no-internal-processes rule; `byteport-vms`
            // holds no process).
            for dir in [root.as_path(), parent.as_path()] {
                write(dir, "cgroup.subtree_control", "+memory +pids +cpu")?;
            }
            let dir = parent.join(name);
            std::fs::create_dir_all(&dir)?;
            write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
            let _ = write(&dir, "memory.swap.max", "0");
            write(&dir, "pids.max", &limits.pids.to_string())?;
            write(&dir, "cpu.max", &format!("{quota} 100000"))?;
            Ok(vec![dir])
        }
        Hierarchy::V1(mounts) => {
            let mut dirs = Vec::new();
            for (c, mount) in mounts {
                let dir = mount.join(PARENT).join(name);
                std::fs::create_dir_all(&dir)?;
                dirs.push(dir.clone());
                match *c {
                    "memory" => {
                        write(
                            &dir,
                            "memory.limit_in_bytes",
                            &limits.memory_bytes.to_string(),
                        )?;
                        // With swap accounting, swap must not extend the limit.
                        let _ = write(
                            &dir,
                            "memory.memsw.limit_in_bytes",
                            &limits.memory_bytes.to_string(),
                        );
                    }
                    "pids" => write(&dir, "pids.max", &limits.pids.to_string())?,
                    "cpu" => {
                        write(&dir, "cpu.cfs_period_us", "100000")?;
                        write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                    }
                    _ => {}
                }
            }
            Ok(dirs)
        }
        Hierarchy::Unavailable(_) => Ok(vec![]),
    }
}

/// Removes VM group directories, first killing whatever still runs in them
/// (a VM process's own children — QEMU's egress relays — outlive it when it
/// is killed). An exiting process leaves its group a moment after it is
/// reaped: a few retries.
pub fn remove(dirs: &[PathBuf]) {
    for dir in dirs {
        for attempt in 0..100 {
            if attempt % 10 == 0 {
                kill_members(dir);
            }
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// SIGKILLs every process in group `dir`, each through a pidfd opened
/// before checking that the process still is in the group (a pid that was
/// recycled in between is not signalled).
fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    let Some(leaf) = dir.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return;
    };
    let member = format!("/{PARENT}/{leaf}");
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        // SAFETY: plain syscall; the descriptor is closed below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            continue;
        }
        let still = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.ends_with(&member)));
        if still {
            // SAFETY: a valid pidfd; no siginfo.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn v2_needs_its_controllers_else_v1_is_used() {
        let h = Hierarchy::from_mountinfo(HYBRID, |_| "hugetlb".into());
        let Hierarchy::V1(m) = &h else {
            panic!("{h:?}")
        };
        assert!(m.contains(&("cpu", PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))));
        assert!(m.contains(&("memory", PathBuf::from("/sys/fs/cgroup/memory"))));
        assert_eq!(h.describe(), "cgroup v1");
        let unified = "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_mountinfo(unified, |_| "cpuset cpu io memory pids".into());
        assert_eq!(h, Hierarchy::V2(PathBuf::from("/sys/fs/cgroup")));
        let h = Hierarchy::from_mountinfo("", |_| String::new());
        assert!(h.describe().contains("without resource limits"));
    }

    #[test]
    fn groups_get_their_limits_in_a_fake_v1_tree() {
        let d = tempfile::tempdir().unwrap();
        let h = Hierarchy::V1(vec![
            ("memory", d.path().join("memory")),
            ("pids", d.path().join("pids")),
            ("cpu", d.path().join("cpu")),
        ]);
        let dirs = create(
            &h,
            "vm1",
            Limits {
                memory_bytes: 512 << 20,
                pids: 64,
                cpus: 2,
            },
        )
        .unwrap();
        assert_eq!(dirs.len(), 3);
        let read = |p: &str| std::fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(
            read("memory/byteport-vms/vm1/memory.limit_in_bytes"),
            "536870912"
        );
        assert_eq!(read("pids/byteport-vms/vm1/pids.max"), "64");
        assert_eq!(read("cpu/byteport-vms/vm1/cpu.cfs_quota_us"), "200000");
    }
}
