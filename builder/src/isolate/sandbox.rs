//! The code that runs in the forked child of a step, between `fork` and
//! `exec`: join the cgroup, enter new namespaces, fork the step as PID 1,
//! build its root (`/proc`, a minimal `/dev`, the bind mounts) and
//! `pivot_root` into it. Only async-signal-safe system calls on data
//! prepared before the fork; nothing here allocates.

use std::ffi::CString;

/// Everything the child needs, prepared (as C strings) before the fork.
pub(super) struct Paths {
    pub(super) root: CString,
    pub(super) proc_: CString,
    pub(super) dev: CString,
    pub(super) dev_shm: CString,
    pub(super) dev_pts: CString,
    pub(super) dev_fd: CString,
    pub(super) nodes: Vec<(CString, libc::mode_t, libc::dev_t)>,
    /// Host files bound read-only over rootfs files, best effort (DNS, CA bundle).
    pub(super) files: Vec<(CString, CString)>,
    /// Host directories bound read-write over rootfs directories (build caches).
    pub(super) dirs: Vec<(CString, CString)>,
    pub(super) workdir: CString,
    /// Open `cgroup.procs` files of the step's group (one per hierarchy).
    pub(super) procs_fds: Vec<i32>,
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs in the forked child (see the module docs for the process layout).
pub(super) fn enter_sandbox(p: &Paths) -> std::io::Result<()> {
    // SAFETY: plain system calls on valid, NUL-terminated strings and
    // integers prepared before the fork; see the SAFETY note where `run_step` installs this as `pre_exec`.
    unsafe {
        check(libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ))?;
        // Join before unsharing and forking, so every process of the step
        // (the intermediate included) is limited.
        for fd in &p.procs_fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
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
        for (host, target) in &p.files {
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
        for (host, target) in &p.dirs {
            // Required: without them package caches would land in the image.
            check(libc::mount(
                host.as_ptr(),
                target.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                none,
                target.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
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
