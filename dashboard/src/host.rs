//! The Host page's facts: `doctor` results (from the binary, through
//! [`HostInfo`]), running VMs with their CPU and memory (from `/proc`),
//! disk used under `$BYTEPORT_HOME`, and the artifact garbage collector.

use std::collections::HashSet;
use std::path::Path;

use platform::store::DeployStatus;
use platform::Platform;
use serde::Serialize;

/// One line of `byteport doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HostCheck {
    /// What was checked.
    pub name: String,
    /// `ok`, `warn` or `missing`.
    pub status: String,
    /// What was found.
    pub detail: String,
    /// How to fix it.
    pub fix: Option<String>,
}

/// What only the binary knows about the host; it provides this so the
/// dashboard does not depend on it.
pub trait HostInfo: Send + Sync {
    /// The runtime driver in use and why (`qemu: no hardware virtualization`).
    fn driver(&self) -> String;
    /// Runs `byteport doctor`'s checks (blocking: called off the async workers).
    fn doctor(&self) -> Vec<HostCheck>;
}

/// A running VM's host process.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VmUsage {
    /// The app.
    pub app: String,
    /// The deploy it runs.
    pub deploy: i64,
    /// The VM's name.
    pub vm: String,
    /// The QEMU or byteport-vmm process.
    pub pid: Option<u32>,
    /// Seconds since it went live.
    pub uptime_secs: u64,
    /// CPU time used, seconds.
    pub cpu_secs: f64,
    /// Average CPU use since it started, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Disk used under `$BYTEPORT_HOME`, bytes.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DiskUsage {
    /// Bare git repositories.
    pub repos: u64,
    /// Built artifacts (rootfs images).
    pub artifacts: u64,
    /// Build caches and base layers.
    pub caches: u64,
    /// Event journals (logs).
    pub logs: u64,
    /// VM run directories.
    pub vms: u64,
}

/// What a `gc` removed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct GcReport {
    /// Artifacts deleted.
    pub removed: usize,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Artifacts kept (live, rollback-able, or too new to judge).
    pub kept: usize,
}

/// Bytes a directory tree takes on disk (symlinks not followed).
pub fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                total += du(&e.path());
            }
        }
    }
    total
}

/// Disk use of each part of `home`.
pub fn disk_usage(home: &Path) -> DiskUsage {
    DiskUsage {
        repos: du(&home.join("repos")),
        artifacts: du(&home.join("artifacts")),
        caches: du(&home.join("cache")),
        logs: du(&home.join("logs")),
        vms: du(&home.join("vms")),
    }
}

/// CPU seconds and resident bytes of a process, from `/proc`.
fn proc_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11, 12 here).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports USER_HZ = 100 to user space on every architecture we run on.
    let cpu = ticks as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Some((cpu, rss_kib * 1024))
}

/// The running VMs with their CPU and memory.
pub fn vm_usage(platform: &Platform) -> Vec<VmUsage> {
    platform
        .status()
        .into_iter()
        .map(|s| {
            let (cpu_secs, rss_bytes) = s.pid.and_then(proc_usage).unwrap_or((0.0, 0));
            VmUsage {
                cpu_percent: if s.uptime_secs > 0 {
                    (cpu_secs / s.uptime_secs as f64 * 100.0 * 10.0).round() / 10.0
                } else {
                    0.0
                },
                app: s.app,
                deploy: s.deploy,
                vm: s.vm,
                pid: s.pid,
                uptime_secs: s.uptime_secs,
                cpu_secs,
                rss_bytes,
            }
        })
        .collect()
}

/// An artifact younger than this is never collected: a build may have
/// just written it and not yet recorded it on its deploy.
const GC_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes artifacts that no live or rollback-able deploy (live or
/// superseded, with its artifact) and no deploy in progress needs.
/// Refuses while jobs are queued or running.
pub async fn gc(platform: &Platform) -> Result<GcReport, crate::Error> {
    let store = &platform.store;
    if store.queue_length().await? > 0 || !platform.queue.running_ids().is_empty() {
        return Err(crate::Error::Conflict(
            "jobs are queued or running; collect garbage when the queue is empty".into(),
        ));
    }
    let mut needed = HashSet::new();
    for app in store.list_apps(None).await? {
        if !store.active_jobs(&app.name).await?.is_empty() {
            return Err(crate::Error::Conflict(format!(
                "{} has a job in progress; collect garbage when the queue is empty",
                app.name
            )));
        }
        for d in store.list_deploys(&app.name, i64::MAX).await? {
            let keep = !matches!(d.status, DeployStatus::Failed);
            if let (true, Some(a)) = (keep, d.artifact) {
                needed.insert(a);
            }
        }
    }
    let root = platform.home().join("artifacts");
    tokio::task::spawn_blocking(move || sweep(&root, &needed))
        .await
        .map_err(|e| crate::Error::internal("gc task", &e))
}

fn sweep(root: &Path, needed: &HashSet<String>) -> GcReport {
    let mut report = GcReport::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return report;
    };
    let mut removed = HashSet::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name == "by-input" || name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < GC_MIN_AGE);
        if needed.contains(&name) || young {
            report.kept += 1;
            continue;
        }
        let size = du(&e.path());
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => {
                report.removed += 1;
                report.freed_bytes += size;
                removed.insert(name);
            }
            Err(err) => {
                tracing::warn!(artifact = %name, error = %err, "gc cannot remove an artifact");
                report.kept += 1;
            }
        }
    }
    // Build-cache index entries that pointed at what is gone.
    if let Ok(index) = std::fs::read_dir(root.join("by-input")) {
        for e in index.flatten() {
            let target = std::fs::read_to_string(e.path()).unwrap_or_default();
            if removed.contains(target.trim()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_keeps_needed_and_young_artifacts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in ["keep", "old", "young"] {
            std::fs::create_dir_all(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("rootfs.ext4"), vec![0u8; 8192]).unwrap();
        }
        std::fs::create_dir_all(root.join("by-input")).unwrap();
        std::fs::write(root.join("by-input/k1"), "old").unwrap();
        std::fs::write(root.join("by-input/k2"), "keep").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for name in ["keep", "old"] {
            std::fs::File::open(root.join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let needed: HashSet<String> = ["keep".to_string()].into();
        let r = sweep(root, &needed);
        assert_eq!((r.removed, r.kept), (1, 2));
        assert!(r.freed_bytes >= 8192);
        assert!(!root.join("old").exists());
        assert!(root.join("keep").exists() && root.join("young").exists());
        assert!(!root.join("by-input/k1").exists());
        assert!(root.join("by-input/k2").exists());
    }

    #[test]
    fn reads_own_process_usage() {
        let (cpu, rss) = proc_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0);
        assert!(rss > 1024 * 1024, "{rss}");
    }
}
