//! The resource-limit checks of build steps, shared by `tests/limits.rs`
//! (this host: cgroup v1) and `examples/limits_probe.rs` (run as a static
//! binary in a QEMU guest with cgroup v2), so both hierarchies pass the very
//! same checks through the builder's own `isolate::run_step`.
//!
//! Each check returns `Ok(detail)` or `Err(why)`; nothing panics, so the
//! guest can report every result over the serial console.

use builder::cgroup::{self, Hierarchy, PARENT};
use builder::ids::{IdRange, RANGE_SIZE};
use builder::isolate::{run_step, StepNetwork, StepRoot, StepRun, UserNs};
use builder::{BuildError, Limits, MemorySink};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Limits every check runs with: small enough to hit quickly.
pub const LIMITS: Limits = Limits {
    memory_bytes: 64 << 20,
    pids: 32,
    cpus: 1,
};

/// A check's name and result.
pub type CheckResult = (&'static str, Result<String, String>);

/// Run every check in a busybox rootfs made under `work` from `busybox`.
pub fn run_all(busybox: &Path, work: &Path) -> Vec<CheckResult> {
    let hierarchy = cgroup::detect();
    let mut results = vec![("hierarchy", describe(&hierarchy))];
    if matches!(hierarchy, Hierarchy::Unsupported(_)) {
        return results;
    }
    let rootfs = match builder::base::ensure(
        &work.join("bases"),
        &builder::BaseSpec::Busybox,
        &[],
        Some(busybox),
        &builder::NullSink,
    ) {
        Ok(b) => b.rootfs,
        Err(e) => {
            results.push(("busybox rootfs", Err(e.to_string())));
            return results;
        }
    };
    // Steps run as root of a user namespace. The rootfs is handed to its
    // range on disk (`StepRoot::Owned`) rather than id-mapped, because the
    // guest's tmpfs on Linux 6.1 has no id-mapped mounts; the limits do not
    // care which.
    let range = IdRange {
        first: 0x6ff0_0000,
        count: RANGE_SIZE,
    };
    if let Err(e) = chown_tree(&rootfs, range.first) {
        results.push(("rootfs to the step's ids", Err(e.to_string())));
        return results;
    }
    let user = match UserNs::new(range) {
        Ok(u) => u,
        Err(e) => {
            results.push(("user namespace", Err(e.to_string())));
            return results;
        }
    };
    let ctx = Ctx {
        rootfs,
        hierarchy,
        env: BTreeMap::new(),
        user,
    };
    results.push(("limits read back", limits_read_back(&ctx)));
    results.push(("oom names the limit", oom_names_the_limit(&ctx)));
    results.push(("fork bomb stopped", fork_bomb_stopped(&ctx)));
    results.push(("timeout kills the group", timeout_kills_the_group(&ctx)));
    results.push(("nothing left behind", nothing_left_behind(&ctx)));
    results
}

struct Ctx {
    rootfs: PathBuf,
    hierarchy: Hierarchy,
    env: BTreeMap<String, String>,
    user: UserNs,
}

/// `chown -hR id:id root`.
fn chown_tree(root: &Path, id: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(root, Some(id), Some(id))?;
    for e in std::fs::read_dir(root)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            chown_tree(&e.path(), id)?;
        } else {
            std::os::unix::fs::lchown(e.path(), Some(id), Some(id))?;
        }
    }
    Ok(())
}

impl Ctx {
    fn step<'a>(&'a self, command: &'a str, timeout: Duration) -> StepRun<'a> {
        StepRun {
            number: 1,
            command,
            rootfs: &self.rootfs,
            workdir: "/",
            env: &self.env,
            timeout,
            limits: LIMITS,
            hierarchy: &self.hierarchy,
            ca_bundle: None,
            caches: &[],
            user: &self.user,
            root: StepRoot::Owned,
            cancel: None,
            network: StepNetwork::Off,
        }
    }
}

fn describe(h: &Hierarchy) -> Result<String, String> {
    match h {
        Hierarchy::Unsupported(why) => Err(format!("no usable cgroup hierarchy: {why}")),
        h if !h.missing().is_empty() => Err(format!("{} lacks {:?}", h.label(), h.missing())),
        h => Ok(format!("{h:?}")),
    }
}

fn limits_read_back(ctx: &Ctx) -> Result<String, String> {
    let log = MemorySink::default();
    let out = run_step(&ctx.step("echo limited", Duration::from_secs(30)), &log)
        .map_err(|e| format!("{e}\n{:?}", log.lines()))?;
    let r = out
        .report
        .ok_or("no cgroup report: limits were not applied")?;
    let want = (
        Some(LIMITS.memory_bytes),
        Some(u64::from(LIMITS.pids)),
        Some((100_000, 100_000)),
    );
    let got = (r.memory_limit, r.pids_limit, r.cpu_quota);
    if got != want || r.hierarchy != ctx.hierarchy.label() {
        return Err(format!(
            "read back {got:?} on {}, want {want:?}",
            r.hierarchy
        ));
    }
    Ok(format!("{} memory/pids/cpu = {got:?}", r.hierarchy))
}

fn oom_names_the_limit(ctx: &Ctx) -> Result<String, String> {
    let log = MemorySink::default();
    // busybox dd allocates its block (200 MiB) and fills it from /dev/zero.
    let cmd =
        "set -e; echo allocating; dd if=/dev/zero of=/dev/null bs=200M count=1; echo survived";
    match run_step(&ctx.step(cmd, Duration::from_secs(60)), &log) {
        Err(e @ BuildError::StepOutOfMemory { .. }) => {
            let msg = e.to_string();
            let BuildError::StepOutOfMemory {
                limit_bytes,
                last_lines,
                ..
            } = &e
            else {
                unreachable!()
            };
            if *limit_bytes != LIMITS.memory_bytes || !msg.contains("limit of 64 MiB") {
                return Err(format!("wrong limit in: {msg}"));
            }
            if last_lines.iter().any(|l| l == "survived") {
                return Err(format!("dd survived: {msg}"));
            }
            Ok(msg.lines().next().unwrap_or_default().to_string())
        }
        other => Err(format!(
            "expected StepOutOfMemory, got {other:?}\n{:?}",
            log.lines()
        )),
    }
}

fn fork_bomb_stopped(ctx: &Ctx) -> Result<String, String> {
    let log = MemorySink::default();
    // The bomb runs in the background; the step's shell (PID 1) waits with
    // builtins only (a fork would fail), counts the processes, and exits,
    // which ends every process of the step's pid namespace.
    let cmd = "mkfifo /tmp/wait; exec 3<>/tmp/wait; rm /tmp/wait; \
               bomb() { bomb | bomb & }; bomb; \
               read -t 3 x <&3; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n; exit 0";
    let out = run_step(&ctx.step(cmd, Duration::from_secs(60)), &log)
        .map_err(|e| format!("{e}\n{:?}", log.lines()))?;
    let r = out.report.ok_or("no cgroup report")?;
    let lines = log.lines();
    let procs: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("[step 1] procs="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no procs= line in {lines:?}"))?;
    if procs > u64::from(LIMITS.pids) || r.pids_refused == 0 {
        return Err(format!(
            "{procs} processes in the step, {} forks refused, limit {}",
            r.pids_refused, LIMITS.pids
        ));
    }
    if let Some(peak) = r.pids_peak.filter(|p| *p > u64::from(LIMITS.pids)) {
        return Err(format!("pids.peak {peak} above the limit"));
    }
    Ok(format!(
        "pids.peak {:?} (limit {}), {} forks refused, {procs} process(es) left after 3 s",
        r.pids_peak, LIMITS.pids, r.pids_refused
    ))
}

fn timeout_kills_the_group(ctx: &Ctx) -> Result<String, String> {
    let log = MemorySink::default();
    let cmd = "sleep 4711 & (sleep 4712 &); echo started; sleep 4713";
    match run_step(&ctx.step(cmd, Duration::from_secs(2)), &log) {
        Err(BuildError::StepTimeout { .. }) => Ok("timed out, killed".into()),
        other => Err(format!("expected StepTimeout, got {other:?}")),
    }
}

/// No group directory of this process left in any hierarchy, and no
/// process anywhere still in one of them.
fn nothing_left_behind(ctx: &Ctx) -> Result<String, String> {
    let prefix = format!("{}-", std::process::id());
    let roots: Vec<PathBuf> = match &ctx.hierarchy {
        Hierarchy::V2 { root, .. } => vec![root.clone()],
        Hierarchy::V1 { mounts } => mounts.iter().map(|(_, m)| m.clone()).collect(),
        Hierarchy::Unsupported(_) => Vec::new(),
    };
    let mut left = Vec::new();
    for r in &roots {
        if let Ok(rd) = std::fs::read_dir(r.join(PARENT)) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    left.push(e.path().display().to_string());
                }
            }
        }
    }
    let needle = format!("/{PARENT}/{prefix}");
    let mut strays = Vec::new();
    for e in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
    {
        if let Ok(cg) = std::fs::read_to_string(e.path().join("cgroup")) {
            if cg.contains(&needle) {
                strays.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    if !left.is_empty() || !strays.is_empty() {
        return Err(format!(
            "groups left: {left:?}; processes left in them: {strays:?}"
        ));
    }
    Ok(format!(
        "no group under {} {PARENT}/, no process in one",
        ctx.hierarchy.label()
    ))
}
