//! The seccomp filters of a step (built before the fork, installed last,
//! just before `exec`, after `PR_SET_NO_NEW_PRIVS`).
//!
//! A deny list, like the syscalls Docker's default profile withholds from
//! containers without `CAP_SYS_ADMIN`: build tools need the long tail of
//! ordinary syscalls, and the dangerous ones are few and well known. The
//! step is already root only in its own user namespace with a reduced
//! capability set, so most of these would fail anyway; the filter removes
//! the kernel code behind them from reach (many kernel exploits start with
//! a fresh user namespace, `bpf`, `io_uring` or `userfaultfd`).
//!
//! | denied (EPERM) | why |
//! | --- | --- |
//! | `mount` `umount2` `pivot_root` `move_mount` `open_tree` `fsopen` `fsconfig` `fsmount` `fspick` `mount_setattr` | no mounting, not even in a nested namespace |
//! | `unshare`/`clone` with `CLONE_NEWUSER`, `setns` | no nested user namespaces, no joining others |
//! | `init_module` `finit_module` `delete_module` `kexec_load` `kexec_file_load` | the kernel itself |
//! | `bpf` `perf_event_open` `userfaultfd` `io_uring_*` | large kernel attack surface |
//! | `keyctl` `add_key` `request_key` | the kernel keyring is not namespaced |
//! | `open_by_handle_at` `name_to_handle_at` | file handles bypass the mount tree |
//! | `socket(AF_VSOCK)` | vsock is not network-namespaced: it reaches the hypervisor |
//! | `ioctl(TIOCSTI / TIOCLINUX)` | typing into a terminal |
//! | `mknod`/`mknodat` of block or character devices | device nodes |
//! | `swapon` `swapoff` `reboot` `syslog` `acct` `quotactl` `iopl` `ioperm` `uselib` `vhangup` `settimeofday` `clock_settime` | host-wide state |
//!
//! `clone3` fails with `ENOSYS` (its flags cannot be inspected), so libc
//! falls back to `clone`, whose flags can. On x86-64 every denied number
//! is also denied with the x32 bit set; other architectures' calling
//! conventions (i386 `int 0x80`) kill the process.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule,
};
use std::collections::BTreeMap;

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("building the seccomp filter: {e}"))
}

fn arch() -> std::io::Result<seccompiler::TargetArch> {
    std::env::consts::ARCH.try_into().map_err(io)
}

/// A rule matching when argument `arg` compares to `value` by `op`.
fn arg_is(arg: u8, len: Len, op: Op, value: u64) -> std::io::Result<SeccompRule> {
    let cond = SeccompCondition::new(arg, len, op, value).map_err(io)?;
    SeccompRule::new(vec![cond]).map_err(io)
}

/// The deny list: syscall → conditions (empty = always).
fn denied() -> std::io::Result<Rules> {
    let always: &[i64] = &[
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_syslog,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_vhangup,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_uselib,
    ];
    let mut rules: Rules = always.iter().map(|n| (*n, Vec::new())).collect();
    let newuser = libc::CLONE_NEWUSER as u64;
    let has_newuser = Op::MaskedEq(newuser);
    rules.insert(
        libc::SYS_unshare,
        vec![arg_is(0, Len::Qword, has_newuser.clone(), newuser)?],
    );
    rules.insert(
        libc::SYS_clone,
        vec![arg_is(0, Len::Qword, has_newuser, newuser)?],
    );
    rules.insert(
        libc::SYS_socket,
        vec![arg_is(0, Len::Dword, Op::Eq, libc::AF_VSOCK as u64)?],
    );
    // The kernel reads the request as 32 bits, so only those are compared.
    // (TIOCSTI is a c_ulong with glibc, a c_int elsewhere.)
    #[allow(clippy::unnecessary_cast)]
    let (tiocsti, tioclinux) = (libc::TIOCSTI as u64, libc::TIOCLINUX as u64);
    rules.insert(
        libc::SYS_ioctl,
        vec![
            arg_is(1, Len::Dword, Op::Eq, tiocsti)?,
            arg_is(1, Len::Dword, Op::Eq, tioclinux)?,
        ],
    );
    let file_type = Op::MaskedEq(libc::S_IFMT as u64);
    let devices = |arg| -> std::io::Result<Vec<SeccompRule>> {
        Ok(vec![
            arg_is(arg, Len::Dword, file_type.clone(), libc::S_IFCHR as u64)?,
            arg_is(arg, Len::Dword, file_type.clone(), libc::S_IFBLK as u64)?,
        ])
    };
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_mknod, devices(1)?);
    rules.insert(libc::SYS_mknodat, devices(2)?);
    #[cfg(target_arch = "x86_64")]
    {
        // x32 calls carry bit 30 in the number; deny the same ones there
        // (and x32's own kexec_load, number 528).
        const X32: i64 = 0x4000_0000;
        let twins: Vec<(i64, Vec<SeccompRule>)> = rules
            .iter()
            .map(|(n, r)| (n | X32, r.clone()))
            .chain(std::iter::once((528 | X32, Vec::new())))
            .collect();
        rules.extend(twins);
    }
    Ok(rules)
}

/// The step's filters, in installation order.
pub(crate) fn step_filters() -> std::io::Result<Vec<BpfProgram>> {
    let arch = arch()?;
    let errno = |e: i32| SeccompAction::Errno(e as u32);
    let deny = SeccompFilter::new(denied()?, SeccompAction::Allow, errno(libc::EPERM), arch)
        .map_err(io)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        errno(libc::ENOSYS),
        arch,
    )
    .map_err(io)?;
    Ok(vec![
        deny.try_into().map_err(io)?,
        clone3.try_into().map_err(io)?,
    ])
}

/// Install `filters` (after `PR_SET_NO_NEW_PRIVS`). Async-signal-safe: it
/// only makes system calls on the prebuilt programs.
pub(crate) fn install(filters: &[BpfProgram]) -> std::io::Result<()> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(|e| match e {
            seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
            _ => std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_and_cover_the_named_calls() {
        let f = step_filters().unwrap();
        assert_eq!(f.len(), 2);
        assert!(f[0].len() > 50, "{}", f[0].len());
        let rules = denied().unwrap();
        for n in [
            libc::SYS_mount,
            libc::SYS_finit_module,
            libc::SYS_bpf,
            libc::SYS_keyctl,
        ] {
            assert!(rules.get(&n).is_some_and(|r| r.is_empty()), "{n}");
            #[cfg(target_arch = "x86_64")]
            assert!(rules.contains_key(&(n | 0x4000_0000)), "x32 twin of {n}");
        }
        assert_eq!(rules[&libc::SYS_ioctl].len(), 2);
    }

    #[test]
    fn a_filtered_child_cannot_mount_or_unshare_a_user_namespace_but_can_fork() {
        let filters = step_filters().unwrap();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("unshare -U true 2>&1; echo unshare=$?; mount -t tmpfs none /mnt 2>&1; echo mount=$?; (true) && echo fork=ok");
        // SAFETY: prctl + seccomp in the forked child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || install(&filters));
        }
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        assert!(
            out.contains("unshare=1") && out.contains("Operation not permitted"),
            "{out}"
        );
        assert!(out.contains("mount=") && !out.contains("mount=0"), "{out}");
        assert!(out.contains("fork=ok"), "{out}");
    }
}
