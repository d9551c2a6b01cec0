//! The step gives up host root: it joins the app's user namespace, becomes
//! uid/gid 0 *there* (the app's first host id outside), and keeps only
//! [`super::KEEP_CAPABILITIES`] — in its bounding, permitted and effective
//! sets, none inheritable or ambient.

use super::check;
use std::os::fd::RawFd;

/// `setns` into the user namespace, then uid/gid 0 in it, no supplementary
/// groups. The capabilities `setns` grants apply inside that namespace only.
pub(super) fn become_namespace_root(userns_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: system calls with integer arguments and a null group list.
    unsafe {
        check(libc::setns(userns_fd, libc::CLONE_NEWUSER))?;
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(0, 0, 0))?;
        check(libc::setresuid(0, 0, 0))
    }
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drop every capability but `keep` (a bit mask) from the bounding set,
/// set permitted = effective = `keep`, inheritable and ambient empty.
pub(super) fn keep_capabilities(keep: u64, last: u32) -> std::io::Result<()> {
    // SAFETY: prctl with integers; capset with a header and two data
    // words laid out as the kernel's v3 ABI expects.
    unsafe {
        for cap in 0..=last {
            if keep & (1u64 << cap) == 0 {
                check(libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    cap as libc::c_ulong,
                    0,
                    0,
                    0,
                ))?;
            }
        }
        let word = |i: u32| CapData {
            effective: (keep >> (32 * i)) as u32,
            permitted: (keep >> (32 * i)) as u32,
            inheritable: 0,
        };
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [word(0), word(1)];
        check(
            libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr())
                as libc::c_int,
        )?;
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ))
    }
}
