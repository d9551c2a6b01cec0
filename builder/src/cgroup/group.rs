//! One step's cgroup: created with its limits before the step starts,
//! joined by the step's first process (before it unshares, so every process
//! of the step is inside), read back for the step's report, and emptied and
//! removed on drop.

use super::{group_dir, Controller, Hierarchy, Limits, PARENT};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// CFS period written on both versions (the kernel default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// A step's cgroup (one directory on v2, one per controller on v1).
#[derive(Debug)]
pub struct StepGroup {
    v2: bool,
    /// Distinct group directories.
    dirs: Vec<PathBuf>,
    /// Which directory holds each limited controller.
    controllers: Vec<(Controller, usize)>,
}

/// What the kernel says about a step's group: the limits as read back from
/// its files, and what happened at them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupReport {
    /// `cgroup v2` or `cgroup v1`.
    pub hierarchy: &'static str,
    /// Controllers whose limits were written.
    pub limited: Vec<Controller>,
    /// Memory limit in bytes, as read back.
    pub memory_limit: Option<u64>,
    /// Highest memory use of the step in bytes.
    pub memory_peak: Option<u64>,
    /// Processes the kernel's OOM killer killed at the limit.
    pub oom_kills: u64,
    /// `pids.max`, as read back.
    pub pids_limit: Option<u64>,
    /// Most processes the step had at once (`pids.peak`, newer kernels).
    pub pids_peak: Option<u64>,
    /// Forks refused because `pids.max` was reached.
    pub pids_refused: u64,
    /// CPU quota and period in µs, as read back.
    pub cpu_quota: Option<(u64, u64)>,
    /// Scheduling periods in which the step was throttled at the quota.
    pub cpu_throttled: u64,
}

fn ctx(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value).map_err(|e| ctx(path, e))
}

fn mkdir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir(path).map_err(|e| ctx(path, e))
}

impl StepGroup {
    /// Create the group `byteport-build/<name>` in `hierarchy` and write `limits`.
    pub fn create(hierarchy: &Hierarchy, name: &str, limits: Limits) -> std::io::Result<StepGroup> {
        match hierarchy {
            Hierarchy::V2 { root, controllers } => Self::create_v2(root, controllers, name, limits),
            Hierarchy::V1 { mounts } => Self::create_v1(mounts, name, limits),
            Hierarchy::Unsupported(why) => Err(std::io::Error::other(why.clone())),
        }
    }

    fn create_v2(
        root: &Path,
        available: &[Controller],
        name: &str,
        limits: Limits,
    ) -> std::io::Result<StepGroup> {
        let parent = root.join(PARENT);
        std::fs::create_dir_all(&parent).map_err(|e| ctx(&parent, e))?;
        // A controller must be enabled in the subtree_control of every
        // ancestor. The root is exempt from the no-internal-processes rule,
        // so the groups live directly below it.
        let mut enabled = Vec::new();
        for c in available {
            let on = format!("+{}", c.name());
            if write(&root.join("cgroup.subtree_control"), &on).is_ok()
                && write(&parent.join("cgroup.subtree_control"), &on).is_ok()
            {
                enabled.push(*c);
            }
        }
        if enabled.is_empty() {
            return Err(std::io::Error::other(format!(
                "cannot enable any of {} in {}",
                names(available),
                parent.join("cgroup.subtree_control").display()
            )));
        }
        let dir = group_dir(root, name);
        mkdir(&dir)?;
        let group = StepGroup {
            v2: true,
            dirs: vec![dir.clone()],
            controllers: enabled.iter().map(|c| (*c, 0)).collect(),
        };
        for c in &enabled {
            match c {
                Controller::Memory => {
                    write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                    // Like memsw on v1: no swapping past the limit (absent without swap support).
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                Controller::Pids => write(&dir.join("pids.max"), &limits.pids.to_string())?,
                Controller::Cpu => write(
                    &dir.join("cpu.max"),
                    &format!("{} {CPU_PERIOD_US}", cpu_quota(limits)),
                )?,
            }
        }
        Ok(group)
    }

    fn create_v1(
        mounts: &[(Controller, PathBuf)],
        name: &str,
        limits: Limits,
    ) -> std::io::Result<StepGroup> {
        let mut group = StepGroup {
            v2: false,
            dirs: Vec::new(),
            controllers: Vec::new(),
        };
        for (c, mount) in mounts {
            let dir = group_dir(mount, name);
            let index = match group.dirs.iter().position(|d| *d == dir) {
                Some(i) => i,
                None => {
                    let parent = mount.join(PARENT);
                    std::fs::create_dir_all(&parent).map_err(|e| ctx(&parent, e))?;
                    mkdir(&dir)?;
                    group.dirs.push(dir.clone());
                    group.dirs.len() - 1
                }
            };
            match c {
                Controller::Memory => {
                    write(
                        &dir.join("memory.limit_in_bytes"),
                        &limits.memory_bytes.to_string(),
                    )?;
                    // Present only with swap accounting; must be >= the limit above.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &limits.memory_bytes.to_string())?;
                    }
                }
                Controller::Pids => write(&dir.join("pids.max"), &limits.pids.to_string())?,
                Controller::Cpu => {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(
                        &dir.join("cpu.cfs_quota_us"),
                        &cpu_quota(limits).to_string(),
                    )?;
                }
            }
            group.controllers.push((*c, index));
        }
        Ok(group)
    }

    /// The `cgroup.procs` files a process writes `0` into to join (one per directory).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The group's directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Controllers whose limits were written.
    pub fn limited(&self) -> Vec<Controller> {
        self.controllers.iter().map(|(c, _)| *c).collect()
    }

    fn file(&self, c: Controller, v2: &str, v1: &str) -> Option<PathBuf> {
        let (_, i) = self.controllers.iter().find(|(x, _)| *x == c)?;
        Some(self.dirs[*i].join(if self.v2 { v2 } else { v1 }))
    }

    fn number(&self, c: Controller, v2: &str, v1: &str) -> Option<u64> {
        read_trimmed(&self.file(c, v2, v1)?)?.parse().ok()
    }

    fn keyed(&self, c: Controller, v2: &str, v1: &str, key: &str) -> u64 {
        self.file(c, v2, v1)
            .and_then(|p| read_trimmed(&p))
            .and_then(|text| keyed_value(&text, key))
            .unwrap_or(0)
    }

    /// Read the limits back and what happened at them (call before drop).
    pub fn report(&self) -> GroupReport {
        use Controller::*;
        let cpu_quota = if self.v2 {
            self.file(Cpu, "cpu.max", "")
                .and_then(|p| read_trimmed(&p))
                .and_then(|t| {
                    let (q, p) = t.split_once(' ')?;
                    Some((q.parse().ok()?, p.parse().ok()?))
                })
        } else {
            self.number(Cpu, "", "cpu.cfs_quota_us")
                .zip(self.number(Cpu, "", "cpu.cfs_period_us"))
        };
        GroupReport {
            hierarchy: if self.v2 { "cgroup v2" } else { "cgroup v1" },
            limited: self.limited(),
            memory_limit: self.number(Memory, "memory.max", "memory.limit_in_bytes"),
            memory_peak: self.number(Memory, "memory.peak", "memory.max_usage_in_bytes"),
            oom_kills: self.keyed(Memory, "memory.events", "memory.oom_control", "oom_kill"),
            pids_limit: self.number(Pids, "pids.max", "pids.max"),
            pids_peak: self.number(Pids, "pids.peak", "pids.peak"),
            pids_refused: self.keyed(Pids, "pids.events", "pids.events", "max"),
            cpu_quota,
            cpu_throttled: self.keyed(Cpu, "cpu.stat", "cpu.stat", "nr_throttled"),
        }
    }

    /// Pids (host namespace) still in the group.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        let mut pids: Vec<libc::pid_t> = self
            .procs_files()
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILL every process still in the group, until it is empty (≤ 2 s).
    fn kill_all(&self) {
        if self.v2 {
            // Kernel >= 5.14 kills the whole group atomically, forks included.
            let _ = std::fs::write(self.dirs[0].join("cgroup.kill"), "1");
        }
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                // SAFETY: kill(2) with a pid read from the group's own
                // cgroup.procs; it only sends a signal.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl StepGroup {
    /// Kill whatever is left in the group and remove it; an error names the
    /// directory and the processes that would not go away.
    pub fn close(mut self) -> std::io::Result<()> {
        let result = self.teardown();
        self.dirs.clear();
        result
    }

    fn teardown(&self) -> std::io::Result<()> {
        self.kill_all();
        for dir in &self.dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if dir.exists() {
                return Err(std::io::Error::other(format!(
                    "cgroup {} could not be removed (processes left: {:?})",
                    dir.display(),
                    self.pids()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for StepGroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            let _ = self.teardown();
        }
    }
}

fn cpu_quota(limits: Limits) -> u64 {
    u64::from(limits.cpus.max(1)) * CPU_PERIOD_US
}

fn names(cs: &[Controller]) -> String {
    cs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The value of `key` in a flat-keyed cgroup file (`oom_kill 3`).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_exact_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(2));
        assert_eq!(keyed_value(text, "oom"), None);
        assert_eq!(keyed_value("max 7", "max"), Some(7));
        assert_eq!(keyed_value("", "max"), None);
    }

    #[test]
    fn unsupported_hierarchy_is_an_error_with_its_reason() {
        let e = StepGroup::create(
            &Hierarchy::Unsupported("why not".into()),
            "x",
            Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "why not");
    }
}
