//! The code that runs in the forked child of a step, between `fork` and
//! `exec`. Only async-signal-safe system calls on data prepared before the
//! fork; nothing here allocates.
//!
//! Everything privileged happens first, as root of the host's user
//! namespace, in namespaces that therefore belong to the host: join the
//! cgroup, leave the session, enter the step's network namespace, unshare
//! mount/pid/uts/ipc/cgroup namespaces, fork the step (PID 1), build its
//! root (id-mapped), `/proc` (masked like runc), `/dev`, read-only `/sys`,
//! bind mounts, `pivot_root`. Only then does the step join the app's user
//! namespace and become root *there* (host uid = the app's range), keep a
//! container-like capability set, set `PR_SET_NO_NEW_PRIVS` and install
//! the seccomp filters. Owning none of its namespaces, the step cannot
//! mount, unmount, configure the network or change the hostname.
//!
//! Each stage writes its number to a pipe first, so a failure names the
//! stage ([`Stage::describe`]).

mod creds;
mod mounts;

pub(super) use mounts::RootMount;

use seccompiler::BpfProgram;
use std::ffi::CString;
use std::os::fd::RawFd;

/// Everything the child needs, prepared (as C strings) before the fork.
pub(super) struct Prepared {
    /// Write end of the stage pipe.
    pub(super) stage_fd: RawFd,
    /// Open `cgroup.procs` files of the step's group (one per hierarchy).
    pub(super) procs_fds: Vec<RawFd>,
    /// The step's network namespace.
    pub(super) netns_fd: RawFd,
    /// The app's user namespace.
    pub(super) userns_fd: RawFd,
    /// First host id of the app's range (owner of files the overlay creates).
    pub(super) range_first: u32,
    pub(super) root: CString,
    pub(super) root_mount: RootMount,
    pub(super) mounts: mounts::Plan,
    pub(super) workdir: CString,
    /// Capabilities the step keeps (bit mask) and the highest one the kernel knows.
    pub(super) cap_keep: u64,
    pub(super) cap_last: u32,
    pub(super) filters: Vec<BpfProgram>,
}

pub(super) use mounts::Plan as MountPlan;

/// The stages of the child, in order; the last one written names a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Stage {
    Cgroup = 1,
    Session,
    Network,
    Namespaces,
    Fork,
    Root,
    Proc,
    Dev,
    Sys,
    Binds,
    Pivot,
    User,
    Capabilities,
    Seccomp,
}

impl Stage {
    const ALL: [Stage; 14] = [
        Stage::Cgroup,
        Stage::Session,
        Stage::Network,
        Stage::Namespaces,
        Stage::Fork,
        Stage::Root,
        Stage::Proc,
        Stage::Dev,
        Stage::Sys,
        Stage::Binds,
        Stage::Pivot,
        Stage::User,
        Stage::Capabilities,
        Stage::Seccomp,
    ];

    pub(super) fn from_byte(b: u8) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u8 == b)
    }

    /// What the stage does, for error messages.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Stage::Cgroup => "joining the step's cgroup",
            Stage::Session => "starting a new session",
            Stage::Network => "entering the step's network namespace",
            Stage::Namespaces => "creating mount, pid, uts, ipc and cgroup namespaces",
            Stage::Fork => "starting the step as PID 1",
            Stage::Root => "mounting the root filesystem id-mapped to the app's range (needs Linux 5.19+ with $BYTEPORT_HOME on ext4, xfs or btrfs)",
            Stage::Proc => "mounting and masking /proc",
            Stage::Dev => "creating /dev",
            Stage::Sys => "mounting /sys read-only",
            Stage::Binds => "binding the CA bundle and build caches",
            Stage::Pivot => "switching to the root filesystem",
            Stage::User => "entering the app's user namespace",
            Stage::Capabilities => "dropping capabilities",
            Stage::Seccomp => "installing the seccomp filter",
        }
    }
}

fn stage(p: &Prepared, s: Stage) {
    let b = s as u8;
    // SAFETY: write(2) of one byte from a local; failure is harmless.
    unsafe {
        libc::write(p.stage_fd, (&b as *const u8).cast(), 1);
    }
}

pub(super) fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn pdeathsig() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}

/// Runs in the forked child (see the module docs for the process layout).
pub(super) fn enter_sandbox(p: &Prepared) -> std::io::Result<()> {
    pdeathsig()?;
    stage(p, Stage::Cgroup);
    // Join before unsharing and forking, so every process of the step
    // (the intermediate included) is limited.
    for fd in &p.procs_fds {
        // SAFETY: write(2) of a constant to an open descriptor.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    stage(p, Stage::Session);
    // No controlling terminal: /dev/tty of the builder's terminal (and
    // TIOCSTI into it) is out of reach.
    // SAFETY: plain system calls with descriptors and flags.
    unsafe {
        check(libc::setsid())?;
        stage(p, Stage::Network);
        check(libc::setns(p.netns_fd, libc::CLONE_NEWNET))?;
        stage(p, Stage::Namespaces);
        check(libc::unshare(
            libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWCGROUP,
        ))?;
        stage(p, Stage::Fork);
        let pid = libc::fork();
        if pid == -1 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            intermediate(pid);
        }
    }
    // The step: PID 1 of the new pid namespace.
    pdeathsig()?;
    stage(p, Stage::Root);
    mounts::root(p)?;
    stage(p, Stage::Proc);
    mounts::proc_(&p.mounts)?;
    stage(p, Stage::Dev);
    mounts::dev(&p.mounts)?;
    stage(p, Stage::Sys);
    mounts::sys(&p.mounts)?;
    stage(p, Stage::Binds);
    mounts::binds(&p.mounts)?;
    stage(p, Stage::Pivot);
    mounts::pivot(&p.root, &p.workdir)?;
    let host = b"byteport-build";
    // SAFETY: sethostname with a valid buffer and length.
    check(unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) })?;
    stage(p, Stage::User);
    creds::become_namespace_root(p.userns_fd)?;
    // The death signal is cleared when credentials change.
    pdeathsig()?;
    stage(p, Stage::Capabilities);
    creds::keep_capabilities(p.cap_keep, p.cap_last)?;
    stage(p, Stage::Seccomp);
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    super::seccomp::install(&p.filters)
}

/// The intermediate process: let only the step hold the pipes, mirror its
/// exit status.
unsafe fn intermediate(pid: libc::pid_t) -> ! {
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
    libc::_exit(128 + libc::WTERMSIG(status))
}

/// Capabilities a step keeps inside its user namespace (Docker's default
/// set without `NET_RAW`, `MKNOD` and `AUDIT_WRITE`): enough for package
/// managers to chown, drop privileges to their own users and set file
/// capabilities; meaningless outside the namespace.
pub(super) const KEEP_CAPABILITIES: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    18, // CAP_SYS_CHROOT
    31, // CAP_SETFCAP
];

/// [`KEEP_CAPABILITIES`] as a bit mask.
pub(super) fn keep_mask() -> u64 {
    KEEP_CAPABILITIES.iter().fold(0, |m, c| m | (1u64 << c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_and_the_kept_capabilities_exclude_admin_ones() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_byte(s as u8), Some(s));
            assert!(!s.describe().is_empty());
        }
        assert_eq!(Stage::from_byte(0), None);
        let m = keep_mask();
        assert_eq!(m, 0x8004_05fb);
        for admin in [12, 13, 16, 17, 19, 21, 25, 27] {
            assert_eq!(m & (1 << admin), 0, "capability {admin} must be dropped");
        }
    }
}
