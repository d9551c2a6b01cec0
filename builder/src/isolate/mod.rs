//! Running one `run` step inside the rootfs being assembled, isolated.
//!
//! The step's shell is PID 1 of its own pid namespace, in its own mount, uts
//! and ipc namespaces, `pivot_root`ed into the rootfs with a fresh `/proc` and
//! a minimal tmpfs `/dev`; the host's filesystem is detached and invisible.
//! Network is shared (package installs need it). Memory, process count and
//! CPU are limited by a cgroup ([`crate::cgroup`], v2 or v1). A wall-clock
//! timeout kills the namespace's init, which makes the kernel kill every
//! process in it; the cgroup is emptied and removed afterwards. All mounts
//! live in the step's mount namespace and vanish with it.
//!
//! Process layout: builder thread → *intermediate* (joins the cgroup,
//! `unshare`s, forks, waits, exits with the step's status) → *step* (PID 1,
//! mounts, pivots, execs `/bin/sh -c`). Both die by `PR_SET_PDEATHSIG` if
//! their parent does. The step sets its death signal before it execs, and
//! `spawn` returns only after that exec, so by the time a timeout can kill
//! the intermediate the step is already bound to it.

mod bind;
mod output;
mod sandbox;

use crate::cgroup::{GroupReport, Hierarchy, Limits, StepGroup};
use crate::error::{BuildError, Result};
use crate::log::LogSink;
use bind::{BindDir, BindFile};
use sandbox::Paths;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// One step to run.
#[derive(Debug)]
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

/// Run the step, streaming its output to `log` prefixed with `[step N]`.
pub fn run_step(step: &StepRun<'_>, log: &dyn LogSink) -> Result<StepOutcome> {
    let iso = |context: &str, source: std::io::Error| BuildError::Isolation {
        number: step.number,
        context: context.to_string(),
        source,
    };
    let root = std::fs::canonicalize(step.rootfs).map_err(|e| iso("resolving rootfs", e))?;
    for d in ["proc", "dev"] {
        let p = root.join(d);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(iso(
                    &format!("/{d} in the rootfs is not a directory"),
                    std::io::ErrorKind::InvalidData.into(),
                ))
            }
            Err(_) => std::fs::create_dir(&p).map_err(|e| iso("creating /proc or /dev", e))?,
        }
    }
    let mut bind_files = vec![BindFile::prepare(
        &root,
        Path::new("/etc/resolv.conf"),
        "/etc/resolv.conf",
    )];
    if let Some(ca) = step.ca_bundle {
        bind_files.push(BindFile::prepare(&root, ca, CA_BUNDLE));
    }
    let ca_bound = bind_files.get(1).is_some_and(|b| b.target.is_some());
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
    let dev = root.join("dev");
    let node = |n: &str, maj: u32, min: u32| {
        (
            cstr(&dev.join(n)),
            libc::S_IFCHR | 0o666,
            libc::makedev(maj, min),
        )
    };

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

    let paths = Paths {
        root: cstr(&root),
        proc_: cstr(&root.join("proc")),
        dev: cstr(&dev),
        dev_shm: cstr(&dev.join("shm")),
        dev_pts: cstr(&dev.join("pts")),
        dev_fd: cstr(&dev.join("fd")),
        nodes: vec![
            node("null", 1, 3),
            node("zero", 1, 5),
            node("full", 1, 7),
            node("random", 1, 8),
            node("urandom", 1, 9),
            node("tty", 5, 0),
        ],
        files: bind_files
            .iter()
            .filter_map(|b| b.target.as_ref().map(|t| (b.host.clone(), cstr(t))))
            .collect(),
        dirs: bind_dirs
            .iter()
            .filter_map(|b| b.target.as_ref().map(|t| (b.host.clone(), cstr(t))))
            .collect(),
        workdir: CString::new(step.workdir.as_bytes()).map_err(|_| {
            iso(
                "workdir contains NUL",
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?,
        procs_fds: procs.iter().map(|f| f.as_raw_fd()).collect(),
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
    cmd.envs(step.env);
    cmd.stdin(Stdio::null());
    cmd.stdout(writer.try_clone().map_err(|e| iso("duplicating pipe", e))?);
    cmd.stderr(writer);
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe system calls (prctl, write, unshare, fork, close_range,
    // waitpid, _exit, mount, mknod, mkdir, symlink, chdir, pivot_root, umount2,
    // sethostname) on data prepared before the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || sandbox::enter_sandbox(&paths));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| iso("starting the isolated step", e))?;
    drop(cmd); // close our copies of the pipe's write end
    drop(procs);

    let deadline = start + step.timeout;
    let (status, timed_out, tail) = std::thread::scope(|s| {
        let reader_thread = s.spawn(move || output::stream_lines(reader, step.number, log));
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if Instant::now() >= deadline {
                timed_out = true;
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
        (status, timed_out, tail)
    });
    let report = group.as_ref().map(|g| g.report());
    if let Some(g) = group {
        if let Err(e) = g.close() {
            log.line(&format!("[step {}] warning: {e}", step.number));
        }
    }
    drop(bind_files);
    drop(bind_dirs);
    let status = status.map_err(|e| iso("waiting for the step", e))?;
    let last_lines: Vec<String> = tail.into_iter().collect();
    let oom_kills = report.as_ref().map_or(0, |r| r.oom_kills);
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
