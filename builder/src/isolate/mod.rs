//! Running one `run` step inside the rootfs being assembled, isolated.
//!
//! The step's shell is PID 1 of its own pid namespace, in its own mount, uts
//! and ipc namespaces, `pivot_root`ed into the rootfs with a fresh `/proc` and
//! a minimal tmpfs `/dev`; the host's filesystem is detached and invisible.
//! Network is shared (package installs need it). A wall-clock timeout kills
//! the namespace's init, which makes the kernel kill every process in it.
//! All mounts live in the step's mount namespace and vanish with it.
//!
//! Process layout: builder thread → *intermediate* (joins the cgroup,
//! `unshare`s, forks, waits, exits with the step's status) → *step* (PID 1,
//! mounts, pivots, execs `/bin/sh -c`). Both die by `PR_SET_PDEATHSIG` if
//! their parent does. The step sets its death signal before it execs, and
//! `spawn` returns only after that exec, so by the time a timeout can kill
//! the intermediate the step is already bound to it.

mod bind;

use crate::cgroup::{self, Hierarchy, Limits, StepGroup};
use crate::error::{BuildError, Result};
use crate::log::LogSink;
use bind::BindFile;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of output kept for error messages.
const TAIL_LINES: usize = 50;
/// Longest line passed to the sink; longer lines are split.
const MAX_LINE: usize = 4096;
/// `PATH` of a step unless the manifest sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where Debian's ca-certificates keeps the bundle; the host's is bound here.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Variables pointing common tools (OpenSSL, node, pip, requests, curl, git)
/// at the bound CA bundle; the manifest's env overrides them.
const CA_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

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
    /// Environment (manifest env plus build-time secrets).
    pub env: &'a BTreeMap<String, String>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Resource limits (applied on cgroup v2 hosts).
    pub limits: Limits,
    /// A host CA bundle to trust during the step (bound over the rootfs's
    /// bundle when it has `/etc/ssl/certs`), e.g. for a TLS-inspecting proxy.
    pub host_ca: Option<&'a Path>,
    /// Log that limits cannot be enforced on this host (once per build).
    pub warn_unlimited: bool,
}

/// How the step ended, when it ran to completion successfully.
#[derive(Debug)]
pub struct StepOutcome {
    /// Wall time.
    pub elapsed: Duration,
    /// Whether cgroup limits were applied.
    pub limited: bool,
}

struct Paths {
    root: CString,
    proc_: CString,
    dev: CString,
    dev_shm: CString,
    dev_pts: CString,
    dev_fd: CString,
    nodes: Vec<(CString, libc::mode_t, libc::dev_t)>,
    binds: Vec<(CString, CString)>,
    workdir: CString,
}

fn cstr(p: &Path) -> CString {
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
    if let Some(ca) = step.host_ca {
        bind_files.push(BindFile::prepare(&root, ca, CA_BUNDLE));
    }
    let ca_bound = bind_files.get(1).is_some_and(|b| b.target.is_some());
    let dev = root.join("dev");
    let node = |n: &str, maj: u32, min: u32| {
        (
            cstr(&dev.join(n)),
            libc::S_IFCHR | 0o666,
            libc::makedev(maj, min),
        )
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
        binds: bind_files
            .iter()
            .filter_map(|b| b.target.as_ref().map(|t| (b.host.clone(), cstr(t))))
            .collect(),
        workdir: CString::new(step.workdir.as_bytes()).map_err(|_| {
            iso(
                "workdir contains NUL",
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?,
    };

    let group = match cgroup::detect(Path::new("/sys/fs/cgroup")) {
        Hierarchy::V2(mount) => {
            let name = format!("{}-{}-{}", std::process::id(), step.number, unique());
            match StepGroup::create(&mount, &name, step.limits) {
                Ok(g) => Some(g),
                Err(e) => {
                    log.line(&format!("[step {}] warning: cgroup v2 limits not applied ({e}); running without memory/pids/cpu limits", step.number));
                    None
                }
            }
        }
        Hierarchy::Unsupported(why) => {
            if step.warn_unlimited {
                log.line(&format!(
                "[step {}] warning: {why}; memory/pids/cpu limits are not enforced for build steps (only the {:?} timeout is)",
                step.number, step.timeout
            ));
            }
            None
        }
    };
    let procs = match &group {
        Some(g) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(g.procs_file())
                .map_err(|e| iso("opening cgroup.procs", e))?,
        ),
        None => None,
    };
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());

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
        cmd.pre_exec(move || enter_sandbox(&paths, procs_fd));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| iso("starting the isolated step", e))?;
    drop(cmd); // close our copies of the pipe's write end
    drop(procs);

    let deadline = start + step.timeout;
    let (status, timed_out, tail) = std::thread::scope(|s| {
        let reader_thread = s.spawn(move || stream_lines(reader, step.number, log));
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
    drop(group);
    drop(bind_files);
    let status = status.map_err(|e| iso("waiting for the step", e))?;
    let last_lines: Vec<String> = tail.into_iter().collect();
    if timed_out {
        return Err(BuildError::StepTimeout {
            number: step.number,
            command: step.command.to_string(),
            timeout: step.timeout,
            last_lines,
        });
    }
    if !status.success() {
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
    Ok(StepOutcome {
        elapsed: start.elapsed(),
        limited: procs_fd.is_some(),
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Read the merged output, send each line to the sink, keep the last lines.
fn stream_lines(mut r: std::io::PipeReader, number: usize, log: &dyn LogSink) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let emit = |bytes: &[u8], tail: &mut VecDeque<String>| {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        log.line(&format!("[step {number}] {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&line[..line.len() - 1], &mut tail);
        }
        while pending.len() > MAX_LINE {
            let part: Vec<u8> = pending.drain(..MAX_LINE).collect();
            emit(&part, &mut tail);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut tail);
    }
    tail
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs in the forked child (see the module docs for the process layout).
fn enter_sandbox(p: &Paths, procs_fd: Option<i32>) -> std::io::Result<()> {
    // SAFETY: plain system calls on valid, NUL-terminated strings and
    // integers prepared before the fork; see `run_step`'s SAFETY note.
    unsafe {
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        if let Some(fd) = procs_fd {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        check(libc::unshare(
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
        ))?;
        let pid = libc::fork();
        if pid == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            // Intermediate: let only the step hold the exec-status pipe and
            // the output pipe, then mirror its exit status.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut status: libc::c_int = 0;
            loop {
                let r = libc::waitpid(pid, &mut status, 0);
                if r == pid {
                    break;
                }
                if r == -1 && *libc::__errno_location() != libc::EINTR {
                    libc::_exit(255);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        }
        // The step: PID 1 of the new pid namespace.
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        let none = std::ptr::null();
        check(libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            p.root.as_ptr(),
            p.root.as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"proc".as_ptr(),
            p.proc_.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"tmpfs".as_ptr(),
            p.dev.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID,
            c"mode=755,size=65536k".as_ptr().cast(),
        ))?;
        for (path, mode, dev) in &p.nodes {
            check(libc::mknod(path.as_ptr(), *mode, *dev))?;
            check(libc::chmod(path.as_ptr(), 0o666))?;
        }
        check(libc::mkdir(p.dev_shm.as_ptr(), 0o1777))?;
        check(libc::mkdir(p.dev_pts.as_ptr(), 0o755))?;
        check(libc::mount(
            c"shm".as_ptr(),
            p.dev_shm.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=1777".as_ptr().cast(),
        ))?;
        check(libc::symlink(c"/proc/self/fd".as_ptr(), p.dev_fd.as_ptr()))?;
        for (host, target) in &p.binds {
            // Best effort: DNS and TLS trust for package installs; a failure
            // only affects name lookups or certificate checks of the step.
            if libc::mount(
                host.as_ptr(),
                target.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ) == 0
            {
                libc::mount(
                    none,
                    target.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                    std::ptr::null(),
                );
            }
        }
        check(libc::chdir(p.root.as_ptr()))?;
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(p.workdir.as_ptr()))?;
        let host = b"byteport-build";
        check(libc::sethostname(host.as_ptr().cast(), host.len()))?;
    }
    Ok(())
}
