//! Running one `run` step inside the rootfs being assembled, isolated and
//! unprivileged.
//!
//! The step's shell is PID 1 of its own pid namespace, in its own mount,
//! uts, ipc, cgroup and network namespaces, `pivot_root`ed into the rootfs
//! with a masked `/proc`, a minimal `/dev` and a read-only `/sys`; the host's
//! filesystem is detached and invisible. It runs as root of the app's user
//! namespace ([`userns`], ids from [`crate::ids`]): an unprivileged host
//! uid, a container-like capability set valid only inside, no new
//! privileges, a seccomp filter ([`seccomp`]). Its network namespace has
//! loopback only, plus BytePort's egress proxy at `127.0.0.1:3128` when the
//! build may use the network ([`net`]). Memory, process count and CPU are
//! limited by a cgroup ([`crate::cgroup`], v2 or v1). A wall-clock timeout
//! kills the namespace's init, which makes the kernel kill every process in
//! it; the cgroup is emptied and removed afterwards. All mounts live in the
//! step's mount namespace and vanish with it.
//!
//! Process layout: builder thread → *intermediate* (host root: joins the
//! cgroup and the network namespace, `unshare`s, forks, waits, exits with
//! the step's status) → *step* (PID 1: mounts, pivots, drops to the app's
//! user namespace, execs `/bin/sh -c`). Both die by `PR_SET_PDEATHSIG` if
//! their parent does. `spawn` returns only after the exec, so by the time a
//! timeout can kill the intermediate the step is already bound to it.

mod bind;
pub mod net;
pub mod netns;
mod output;
mod sandbox;
mod seccomp;
pub mod userns;

use crate::cgroup::{GroupReport, Hierarchy, Limits, StepGroup};
use crate::error::{BuildError, Result};
use crate::log::LogSink;
use crate::overlay::Overlay;
use bind::{BindDir, BindFile};
pub use net::{Egress, StepNetwork};
use netns::StepNetns;
use sandbox::{MountPlan, Prepared, RootMount, Stage};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
pub use userns::UserNs;

/// `PATH` of a step unless the manifest sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where Debian's ca-certificates keeps the bundle; a trusted bundle is bound here.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Variables pointing common tools (OpenSSL, node, pip, requests, curl, git)
/// at the bound CA bundle; the manifest's env overrides them.
pub const CA_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// A host directory mounted read-write at a path of the rootfs during a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMount {
    /// Directory on the host.
    pub host: PathBuf,
    /// Absolute path in the rootfs.
    pub target: &'static str,
}

/// How the rootfs is presented to the step.
#[derive(Debug, Clone, Copy)]
pub enum StepRoot<'a> {
    /// `rootfs` is a directory owned as images are (0 = root): the step
    /// sees it through a mount id-mapped to its namespace.
    Mapped,
    /// `rootfs` is the host view of this overlay (mounted by the calling
    /// thread): it is unmounted for the step, which mounts the same layers
    /// id-mapped, and mounted again afterwards.
    Overlay(&'a Overlay),
    /// `rootfs` is already owned by the namespace's range on disk (for
    /// filesystems without id-mapped mounts, such as tmpfs before Linux 6.3).
    Owned,
}

/// One step to run.
pub struct StepRun<'a> {
    /// 1-based step number (for messages and the log prefix).
    pub number: usize,
    /// Command for `/bin/sh -c`.
    pub command: &'a str,
    /// Root of the rootfs being assembled (host path).
    pub rootfs: &'a Path,
    /// Working directory inside the rootfs (absolute, must exist).
    pub workdir: &'a str,
    /// Environment (builder defaults, then manifest env plus build-time secrets).
    pub env: &'a BTreeMap<String, String>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// The host's cgroup hierarchy ([`crate::cgroup::detect`]).
    pub hierarchy: &'a Hierarchy,
    /// A CA bundle to trust during the step (bound read-only over the
    /// rootfs's bundle when it has `/etc/ssl/certs`).
    pub ca_bundle: Option<&'a Path>,
    /// Build caches mounted during the step (never part of the image).
    pub caches: &'a [CacheMount],
    /// The app's user namespace: the step is root there, its range's first
    /// id on the host.
    pub user: &'a UserNs,
    /// How the rootfs appears.
    pub root: StepRoot<'a>,
    /// The step's network.
    pub network: StepNetwork<'a>,
    /// When it turns `true` the step is killed and the run ends with
    /// [`BuildError::Cancelled`].
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for StepRun<'_> {
    /// Environment values are left out: build-time secrets are among them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRun")
            .field("number", &self.number)
            .field("command", &self.command)
            .field("rootfs", &self.rootfs)
            .field("workdir", &self.workdir)
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("limits", &self.limits)
            .field("user", &self.user.range())
            .field("root", &self.root)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// How the step ended, when it ran to completion successfully.
#[derive(Debug)]
pub struct StepOutcome {
    /// Wall time.
    pub elapsed: Duration,
    /// The cgroup's limits and usage, when limits were applied.
    pub report: Option<GroupReport>,
}

pub(crate) fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// The highest capability number this kernel knows.
fn cap_last() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Run the step, streaming its output to `log` prefixed with `[step N]`.
pub fn run_step(step: &StepRun<'_>, log: &dyn LogSink) -> Result<StepOutcome> {
    let iso = |context: &str, source: std::io::Error| BuildError::Isolation {
        number: step.number,
        context: context.to_string(),
        source,
    };
    let root = std::fs::canonicalize(step.rootfs).map_err(|e| iso("resolving rootfs", e))?;
    for d in ["proc", "dev", "sys"] {
        let p = root.join(d);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(iso(
                    &format!("/{d} in the rootfs is not a directory"),
                    std::io::ErrorKind::InvalidData.into(),
                ))
            }
            Err(_) => {
                std::fs::create_dir(&p).map_err(|e| iso("creating /proc, /dev or /sys", e))?
            }
        }
    }
    let bind_files: Vec<BindFile> = step
        .ca_bundle
        .map(|ca| BindFile::prepare(&root, ca, CA_BUNDLE))
        .into_iter()
        .collect();
    let ca_bound = bind_files.first().is_some_and(|b| b.target.is_some());
    let bind_dirs: Vec<BindDir> = step
        .caches
        .iter()
        .map(|c| BindDir::prepare(&root, &c.host, c.target))
        .collect();
    for (c, b) in step.caches.iter().zip(&bind_dirs) {
        if b.target.is_none() {
            log.line(&format!(
                "[step {}] warning: build cache not mounted at {} (a part of that path is not a directory); what the step writes there stays in the image",
                step.number, c.target
            ));
        }
    }

    let group = match StepGroup::create(
        step.hierarchy,
        &format!("{}-{}-{}", std::process::id(), step.number, unique()),
        step.limits,
    ) {
        Ok(g) => Some(g),
        Err(e) => {
            if !matches!(step.hierarchy, Hierarchy::Unsupported(_)) {
                log.line(&format!(
                    "[step {}] warning: {} limits not applied ({e}); running without memory/pids/cpu limits",
                    step.number,
                    step.hierarchy.label()
                ));
            }
            None
        }
    };
    let procs: Vec<std::fs::File> = match &group {
        Some(g) => g
            .procs_files()
            .iter()
            .map(|p| std::fs::OpenOptions::new().write(true).open(p))
            .collect::<std::io::Result<_>>()
            .map_err(|e| iso("opening cgroup.procs", e))?,
        None => Vec::new(),
    };

    let egress = match step.network {
        StepNetwork::Egress(e) => Some(e),
        StepNetwork::Off => None,
    };
    let mut netns =
        StepNetns::new(egress.is_some()).map_err(|e| iso("creating the network namespace", e))?;
    let serving = match (egress, netns.listener.take()) {
        (Some(e), Some(l)) => Some(
            e.serve(l)
                .map_err(|e| iso("starting the egress proxy", e))?,
        ),
        _ => None,
    };

    let root_mount = match step.root {
        StepRoot::Overlay(o) => {
            let (lower, lower_at, layers, layers_at, options) = o
                .step_view()
                .map_err(|e| iso(&e, std::io::ErrorKind::InvalidInput.into()))?;
            RootMount::Overlay {
                lower: cstr(&lower),
                lower_at: cstr(&lower_at),
                layers: cstr(&layers),
                layers_at: cstr(&layers_at),
                options,
            }
        }
        StepRoot::Mapped => RootMount::Idmapped,
        StepRoot::Owned => RootMount::Owned,
    };
    let (mut stage_r, stage_w) = std::io::pipe().map_err(|e| iso("creating a pipe", e))?;
    let prepared = Prepared {
        stage_fd: stage_w.as_raw_fd(),
        procs_fds: procs.iter().map(|f| f.as_raw_fd()).collect(),
        netns_fd: netns.raw_fd(),
        userns_fd: step.user.raw_fd(),
        range_first: step.user.range().first,
        root: cstr(&root),
        root_mount,
        mounts: MountPlan::new(
            &root,
            bind_files
                .iter()
                .filter_map(|b| b.target.as_ref().map(|t| (b.host.clone(), cstr(t))))
                .collect(),
            bind_dirs
                .iter()
                .filter_map(|b| b.target.as_ref().map(|t| (b.host.clone(), cstr(t))))
                .collect(),
        ),
        workdir: CString::new(step.workdir.as_bytes()).map_err(|_| {
            iso(
                "workdir contains NUL",
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?,
        cap_keep: sandbox::keep_mask(),
        cap_last: cap_last(),
        filters: seccomp::step_filters().map_err(|e| iso("preparing seccomp", e))?,
    };

    let (reader, writer) = std::io::pipe().map_err(|e| iso("creating output pipe", e))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(step.command);
    cmd.env_clear();
    cmd.env("PATH", DEFAULT_PATH)
        .env("HOME", "/root")
        .env("SOURCE_DATE_EPOCH", crate::image::EPOCH.to_string());
    if ca_bound {
        cmd.envs(CA_ENV.iter().map(|k| (*k, CA_BUNDLE)));
    }
    if egress.is_some() {
        cmd.envs(net::PROXY_ENV.iter().map(|k| (*k, net::PROXY_URL)));
        cmd.env("no_proxy", net::NO_PROXY)
            .env("NO_PROXY", net::NO_PROXY);
    }
    cmd.envs(step.env);
    cmd.stdin(Stdio::null());
    cmd.stdout(writer.try_clone().map_err(|e| iso("duplicating pipe", e))?);
    cmd.stderr(writer);
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe system calls (see `sandbox`) on data prepared before
    // the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || sandbox::enter_sandbox(&prepared));
    }
    let suspended = match step.root {
        StepRoot::Overlay(o) => Some(
            o.suspend()
                .map_err(|e| iso(&e, std::io::ErrorKind::ResourceBusy.into()))?,
        ),
        _ => None,
    };
    let start = Instant::now();
    let spawned = cmd.spawn();
    drop(cmd); // close our copies of the pipe's write end (and the prepared data)
    drop(stage_w);
    drop(procs);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let mut stages = Vec::new();
            let _ = stage_r.read_to_end(&mut stages);
            let at = stages.last().and_then(|b| Stage::from_byte(*b));
            let context = at.map_or("starting the isolated step", Stage::describe);
            return Err(iso(context, e));
        }
    };

    let deadline = start + step.timeout;
    let (status, timed_out, tail) = std::thread::scope(|s| {
        let reader_thread = s.spawn(move || output::stream_lines(reader, step.number, log));
        let mut timed_out = false;
        let mut cancelled = false;
        let status = loop {
            for r in egress.map(|e| e.take_refusals()).unwrap_or_default() {
                log.line(&format!("[step {}] network: refused {r}", step.number));
            }
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            cancelled = step
                .cancel
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
            if cancelled || Instant::now() >= deadline {
                timed_out = !cancelled;
                // SAFETY: kill(2) on the pid of our own unreaped child; the
                // step (its child, PID 1 of the namespace) dies by PDEATHSIG,
                // and with it every process of the namespace.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
                }
                break child.wait();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let tail = reader_thread.join().unwrap_or_default();
        (status, (timed_out, cancelled), tail)
    });
    let (timed_out, cancelled) = timed_out;
    let report = group.as_ref().map(|g| g.report());
    if let Some(g) = group {
        if let Err(e) = g.close() {
            log.line(&format!("[step {}] warning: {e}", step.number));
        }
    }
    drop(serving);
    drop(netns);
    for r in egress.map(|e| e.take_refusals()).unwrap_or_default() {
        log.line(&format!("[step {}] network: refused {r}", step.number));
    }
    if let Some(s) = suspended {
        s.resume()
            .map_err(|e| iso(&e, std::io::ErrorKind::ResourceBusy.into()))?;
    }
    drop(bind_files);
    drop(bind_dirs);
    let status = status.map_err(|e| iso("waiting for the step", e))?;
    let last_lines: Vec<String> = tail.into_iter().collect();
    let oom_kills = report.as_ref().map_or(0, |r| r.oom_kills);
    if cancelled {
        return Err(BuildError::Cancelled {
            step: Some(step.number),
        });
    }
    if timed_out {
        return Err(BuildError::StepTimeout {
            number: step.number,
            command: step.command.to_string(),
            timeout: step.timeout,
            last_lines,
        });
    }
    if !status.success() {
        if let (Some(r), true) = (&report, oom_kills > 0) {
            return Err(BuildError::StepOutOfMemory {
                number: step.number,
                command: step.command.to_string(),
                limit_bytes: r.memory_limit.unwrap_or(step.limits.memory_bytes),
                hierarchy: r.hierarchy,
                last_lines,
            });
        }
        let status = match (status.code(), status.signal()) {
            (Some(c), _) if c > 128 => format!("exit code {c} (signal {})", c - 128),
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown status".to_string(),
        };
        return Err(BuildError::StepFailed {
            number: step.number,
            command: step.command.to_string(),
            status,
            last_lines,
        });
    }
    if oom_kills > 0 {
        log.line(&format!(
            "[step {}] warning: the kernel killed {oom_kills} process(es) of this step at its memory limit of {} MiB; the step still exited 0",
            step.number,
            step.limits.memory_bytes >> 20
        ));
    }
    Ok(StepOutcome {
        elapsed: start.elapsed(),
        report,
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_variables_but_never_their_values() {
        let env = BTreeMap::from([("NPM_TOKEN".to_string(), "s3cr3t-value".to_string())]);
        let user = UserNs::new(crate::ids::IdRange {
            first: 0x6fff_0000,
            count: crate::ids::RANGE_SIZE,
        })
        .unwrap();
        let hierarchy = Hierarchy::Unsupported("test".into());
        let step = StepRun {
            number: 1,
            command: "npm ci",
            rootfs: Path::new("/nonexistent"),
            workdir: "/",
            env: &env,
            timeout: Duration::from_secs(1),
            limits: Limits::default(),
            hierarchy: &hierarchy,
            ca_bundle: None,
            caches: &[],
            user: &user,
            root: StepRoot::Mapped,
            network: StepNetwork::Off,
            cancel: None,
        };
        let shown = format!("{step:?}");
        assert!(
            shown.contains("NPM_TOKEN") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        let sink = crate::log::NullSink;
        let mut req = crate::BuildRequest::new("/h", crate::Source::Dir("d".into()), &sink);
        req.secrets
            .insert("NPM_TOKEN".into(), "s3cr3t-value".into());
        let shown = format!("{req:?}");
        assert!(
            shown.contains("NPM_TOKEN") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }
}
