//! Resource limits for build steps: a cgroup v2 group with `memory.max`,
//! `pids.max` and `cpu.max` when the host has the unified hierarchy; on
//! cgroup v1 hosts the limits are not enforced and the build log says so.

use std::path::{Path, PathBuf};

/// Limits applied to one build step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes (`memory.max`).
    pub memory_bytes: u64,
    /// Maximum number of processes (`pids.max`).
    pub pids: u32,
    /// CPU quota in whole CPUs (`cpu.max`).
    pub cpus: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 2 << 30,
            pids: 4096,
            cpus: 2,
        }
    }
}

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified (v2) hierarchy mounted at the path.
    V2(PathBuf),
    /// Legacy v1 (or none): limits cannot be applied.
    Unsupported(String),
}

/// Detect the host's hierarchy under `mount` (normally `/sys/fs/cgroup`).
pub fn detect(mount: &Path) -> Hierarchy {
    if mount.join("cgroup.controllers").is_file() {
        Hierarchy::V2(mount.to_path_buf())
    } else if mount.join("memory").is_dir() || mount.join("cpu").is_dir() {
        Hierarchy::Unsupported("this host uses cgroup v1".into())
    } else {
        Hierarchy::Unsupported(format!("no cgroup hierarchy at {}", mount.display()))
    }
}

/// A cgroup v2 group for one step; killed and removed on drop.
#[derive(Debug)]
pub struct StepGroup {
    dir: PathBuf,
}

impl StepGroup {
    /// Create `byteport-build/<name>` under the v2 mount and write the limits.
    pub fn create(mount: &Path, name: &str, limits: Limits) -> std::io::Result<StepGroup> {
        let parent = mount.join("byteport-build");
        std::fs::create_dir_all(&parent)?;
        // Controllers must be enabled in every ancestor's subtree_control.
        std::fs::write(mount.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
        std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
        let dir = parent.join(name);
        std::fs::create_dir(&dir)?;
        let group = StepGroup { dir };
        std::fs::write(
            group.dir.join("memory.max"),
            limits.memory_bytes.to_string(),
        )?;
        std::fs::write(group.dir.join("pids.max"), limits.pids.to_string())?;
        std::fs::write(
            group.dir.join("cpu.max"),
            format!("{} 100000", u64::from(limits.cpus.max(1)) * 100_000),
        )?;
        Ok(group)
    }

    /// The `cgroup.procs` file a process writes its pid into to join.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for StepGroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_v1_v2_and_none() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(detect(d.path()), Hierarchy::Unsupported(m) if m.contains("no cgroup")));
        std::fs::create_dir(d.path().join("memory")).unwrap();
        assert!(matches!(detect(d.path()), Hierarchy::Unsupported(m) if m.contains("v1")));
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        assert_eq!(detect(d.path()), Hierarchy::V2(d.path().to_path_buf()));
    }
}
