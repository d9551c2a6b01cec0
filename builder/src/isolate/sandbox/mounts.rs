//! The step's filesystem, mounted by host root inside the step's own
//! mount namespace before it gives up its privileges.
//!
//! - **root**: the rootfs through an *id-mapped* mount (Linux 5.12+ for
//!   plain directories, 5.19+ for overlay layers): files owned by 0 on
//!   disk appear owned by the app's first host id, i.e. by root inside the
//!   step, and what the step writes as its root lands on disk owned by 0.
//!   Images keep the ownership they always had, while the step never holds
//!   a real root id.
//! - **/proc**: fresh, with the paths runc/crun mask (`kcore`, `keys`,
//!   `timer_list`, `sched_debug`, ...) hidden and `sys`, `sysrq-trigger`,
//!   `bus`, `fs`, `irq` read-only.
//! - **/dev**: a tmpfs with null, zero, full, random, urandom and tty only.
//! - **/sys**: read-only sysfs of the step's network namespace, with
//!   `/sys/firmware` and `/sys/devices/virtual/powercap` masked.

use super::{check, Prepared};
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

/// How the rootfs is presented to the step.
pub(in crate::isolate) enum RootMount {
    /// An overlay of an id-mapped lower layer and id-mapped upper layers,
    /// mounted over the (unmounted) host view at the root path.
    Overlay {
        lower: CString,
        lower_at: CString,
        layers: CString,
        layers_at: CString,
        options: CString,
    },
    /// The root directory through an id-mapped bind of itself.
    Idmapped,
    /// The root directory as it is (already owned by the app's range).
    Owned,
}

/// Paths of everything mounted besides the root, prepared before the fork.
pub(in crate::isolate) struct Plan {
    pub(in crate::isolate) proc_: CString,
    pub(in crate::isolate) proc_masked_files: Vec<CString>,
    pub(in crate::isolate) proc_masked_dirs: Vec<CString>,
    pub(in crate::isolate) proc_readonly: Vec<CString>,
    pub(in crate::isolate) dev: CString,
    pub(in crate::isolate) dev_shm: CString,
    pub(in crate::isolate) dev_pts: CString,
    pub(in crate::isolate) nodes: Vec<(CString, libc::mode_t, libc::dev_t)>,
    /// (target, link path) in `/dev`.
    pub(in crate::isolate) dev_links: Vec<(CString, CString)>,
    pub(in crate::isolate) sys: CString,
    pub(in crate::isolate) sys_masked_dirs: Vec<CString>,
    /// Host files bound read-only over rootfs files (CA bundle), best effort.
    pub(in crate::isolate) files: Vec<(CString, CString)>,
    /// Host directories bound read-write over rootfs directories (build caches).
    pub(in crate::isolate) dirs: Vec<(CString, CString)>,
}

impl Plan {
    /// The plan for the rootfs at `root`, with the given binds.
    pub(in crate::isolate) fn new(
        root: &std::path::Path,
        files: Vec<(CString, CString)>,
        dirs: Vec<(CString, CString)>,
    ) -> Plan {
        use crate::isolate::cstr;
        let under = |dir: &str, names: &[&str]| -> Vec<CString> {
            names
                .iter()
                .map(|n| cstr(&root.join(dir).join(n)))
                .collect()
        };
        let dev = root.join("dev");
        let node = |n: &str, maj: u32, min: u32| {
            (
                cstr(&dev.join(n)),
                libc::S_IFCHR | 0o666,
                libc::makedev(maj, min),
            )
        };
        Plan {
            proc_: cstr(&root.join("proc")),
            proc_masked_files: under("proc", PROC_MASKED_FILES),
            proc_masked_dirs: under("proc", PROC_MASKED_DIRS),
            proc_readonly: under("proc", PROC_READONLY),
            dev: cstr(&dev),
            dev_shm: cstr(&dev.join("shm")),
            dev_pts: cstr(&dev.join("pts")),
            nodes: vec![
                node("null", 1, 3),
                node("zero", 1, 5),
                node("full", 1, 7),
                node("random", 1, 8),
                node("urandom", 1, 9),
                node("tty", 5, 0),
            ],
            dev_links: [
                ("/proc/self/fd", "fd"),
                ("/proc/self/fd/0", "stdin"),
                ("/proc/self/fd/1", "stdout"),
                ("/proc/self/fd/2", "stderr"),
            ]
            .iter()
            .map(|(t, l)| (cstr(std::path::Path::new(t)), cstr(&dev.join(l))))
            .collect(),
            sys: cstr(&root.join("sys")),
            sys_masked_dirs: under("sys", SYS_MASKED_DIRS),
            files,
            dirs,
        }
    }
}

/// Paths under `/proc` that runc and crun hide (files, then directories).
pub(in crate::isolate) const PROC_MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "interrupts",
];
pub(in crate::isolate) const PROC_MASKED_DIRS: &[&str] = &["acpi", "asound", "scsi"];
/// Paths under `/proc` that runc and crun make read-only.
pub(in crate::isolate) const PROC_READONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// Directories under `/sys` that runc and crun hide.
pub(in crate::isolate) const SYS_MASKED_DIRS: &[&str] = &["firmware", "devices/virtual/powercap"];

const NONE: *const libc::c_char = std::ptr::null();
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount(
    src: *const libc::c_char,
    target: &CStr,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_char,
) -> std::io::Result<()> {
    // SAFETY: mount(2) with NUL-terminated strings or nulls.
    check(unsafe { libc::mount(src, target.as_ptr(), fstype, flags, data.cast()) })
}

/// Mount a clone of `src` at `target`, id-mapped through `userns_fd`,
/// with `attrs` (read-only, nosuid, nodev) set.
fn idmapped(src: &CStr, target: &CStr, userns_fd: RawFd, attrs: u64) -> std::io::Result<()> {
    // SAFETY: open_tree/mount_setattr/move_mount with valid strings, a
    // properly laid out mount_attr on the stack, and a descriptor we close.
    unsafe {
        let tree = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        ) as libc::c_int;
        check(tree)?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP | attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns_fd as u64,
        };
        let mut rc = libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as libc::c_int;
        if rc == 0 {
            rc = libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ) as libc::c_int;
        }
        let err = std::io::Error::last_os_error();
        libc::close(tree);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Make mounts private, then mount the root as [`RootMount`] says.
pub(super) fn root(p: &Prepared) -> std::io::Result<()> {
    mount(NONE, c"/", NONE, libc::MS_REC | libc::MS_PRIVATE, NONE)?;
    match &p.root_mount {
        RootMount::Overlay {
            lower,
            lower_at,
            layers,
            layers_at,
            options,
        } => {
            idmapped(lower, lower_at, p.userns_fd, MOUNT_ATTR_RDONLY)?;
            idmapped(layers, layers_at, p.userns_fd, 0)?;
            // Overlay creates upper files with its mounter's fsuid; with
            // the range's first id that is owner 0 on disk, through the
            // id-mapped layers. NO_SETUID_FIXUP keeps root's capabilities
            // across the fsuid change; both are undone right after.
            // SAFETY: prctl/setfsuid/setfsgid with integers.
            unsafe {
                check(libc::prctl(
                    libc::PR_SET_SECUREBITS,
                    SECBIT_NO_SETUID_FIXUP,
                    0,
                    0,
                    0,
                ))?;
                libc::setfsgid(p.range_first);
                libc::setfsuid(p.range_first);
            }
            let mounted = mount(
                c"overlay".as_ptr(),
                &p.root,
                c"overlay".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr(),
            );
            // SAFETY: as above.
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
                check(libc::prctl(libc::PR_SET_SECUREBITS, 0, 0, 0, 0))?;
            }
            mounted
        }
        RootMount::Idmapped => idmapped(
            &p.root,
            &p.root,
            p.userns_fd,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ),
        RootMount::Owned => {
            mount(
                p.root.as_ptr(),
                &p.root,
                NONE,
                libc::MS_BIND | libc::MS_REC,
                NONE,
            )?;
            mount(
                NONE,
                &p.root,
                NONE,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                NONE,
            )
        }
    }
}

fn missing(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// Bind `target` over itself read-only (absent paths are skipped).
fn read_only(target: &CStr) -> std::io::Result<()> {
    match mount(
        target.as_ptr(),
        target,
        NONE,
        libc::MS_BIND | libc::MS_REC,
        NONE,
    ) {
        Err(e) if missing(&e) => return Ok(()),
        r => r?,
    }
    mount(
        NONE,
        target,
        NONE,
        libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC,
        NONE,
    )
}

/// Hide a directory under an empty read-only tmpfs (absent ones skipped).
fn mask_dir(target: &CStr) -> std::io::Result<()> {
    match mount(
        c"tmpfs".as_ptr(),
        target,
        c"tmpfs".as_ptr(),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        c"size=0".as_ptr(),
    ) {
        Err(e) if missing(&e) => Ok(()),
        r => r,
    }
}

pub(super) fn proc_(m: &Plan) -> std::io::Result<()> {
    mount(
        c"proc".as_ptr(),
        &m.proc_,
        c"proc".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        NONE,
    )?;
    for f in &m.proc_masked_files {
        // Hidden behind the host's /dev/null (still reachable before the pivot).
        match mount(c"/dev/null".as_ptr(), f, NONE, libc::MS_BIND, NONE) {
            Err(e) if missing(&e) => {}
            r => r?,
        }
    }
    for d in &m.proc_masked_dirs {
        mask_dir(d)?;
    }
    for r in &m.proc_readonly {
        read_only(r)?;
    }
    Ok(())
}

pub(super) fn dev(m: &Plan) -> std::io::Result<()> {
    mount(
        c"tmpfs".as_ptr(),
        &m.dev,
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        c"mode=755,size=65536k".as_ptr(),
    )?;
    // SAFETY: mknod/chmod/mkdir/symlink with prepared strings.
    unsafe {
        for (path, mode, dev) in &m.nodes {
            check(libc::mknod(path.as_ptr(), *mode, *dev))?;
            check(libc::chmod(path.as_ptr(), 0o666))?;
        }
        check(libc::mkdir(m.dev_shm.as_ptr(), 0o1777))?;
        check(libc::mkdir(m.dev_pts.as_ptr(), 0o755))?;
        for (target, link) in &m.dev_links {
            check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
        }
    }
    mount(
        c"shm".as_ptr(),
        &m.dev_shm,
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV,
        c"mode=1777".as_ptr(),
    )
}

pub(super) fn sys(m: &Plan) -> std::io::Result<()> {
    mount(
        c"sysfs".as_ptr(),
        &m.sys,
        c"sysfs".as_ptr(),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        NONE,
    )?;
    for d in &m.sys_masked_dirs {
        mask_dir(d)?;
    }
    Ok(())
}

pub(super) fn binds(m: &Plan) -> std::io::Result<()> {
    for (host, target) in &m.files {
        // Best effort: TLS trust for package installs; a failure only
        // affects certificate checks of the step.
        if mount(host.as_ptr(), target, NONE, libc::MS_BIND, NONE).is_ok() {
            let _ = mount(
                NONE,
                target,
                NONE,
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                NONE,
            );
        }
    }
    for (host, target) in &m.dirs {
        // Required: without them package caches would land in the image.
        mount(host.as_ptr(), target, NONE, libc::MS_BIND, NONE)?;
        mount(
            NONE,
            target,
            NONE,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
            NONE,
        )?;
    }
    Ok(())
}

/// `pivot_root` into `root`, detach the old root, move to `workdir`.
pub(super) fn pivot(root: &CStr, workdir: &CStr) -> std::io::Result<()> {
    // SAFETY: chdir/pivot_root/umount2 with valid strings.
    unsafe {
        check(libc::chdir(root.as_ptr()))?;
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(workdir.as_ptr()))
    }
}
