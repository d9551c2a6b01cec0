//! The jail every VM process runs in, after Firecracker's jailer: between
//! fork and exec the child (still root)
//!
//! 1. joins its own cgroup ([`cgroup`]: memory, tasks, CPU limits);
//! 2. unshares its mount, IPC and UTS namespaces — and its network
//!    namespace where the driver allows it (the own VMM needs no network;
//!    QEMU's user-mode network must bind its port forward in the host's);
//! 3. builds a root of its own on a tmpfs: `/usr` (and the `/lib`, `/bin`
//!    links) read-only, `/etc/ld.so.cache`, `/dev/{null,zero,random,urandom}`,
//!    the VM's inputs read-only under `/vm` (and its own volume images,
//!    read-write), its socket directory at
//!    `/run/vm` and a private `/tmp` (also `/var/tmp`) from the VM directory, device nodes it
//!    needs (`/dev/kvm`) made for it and owned by it — and pivots into it,
//!    detaching the host's root: `$BYTEPORT_HOME`, other apps' files and
//!    the daemon's state are not in its world;
//! 4. drops to its own unprivileged uid and gid (no supplementary groups,
//!    no capabilities left), sets `no_new_privs`, and disables core dumps
//!    (they would hold guest memory).
//!
//! QEMU then adds its own seccomp filter (`-sandbox on`); `byteport-vmm`
//! confines each of its threads. The jail needs root; a daemon without it
//! runs VMs unjailed, and [`Jail::for_this_host`] says why.

pub mod cgroup;

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use cgroup::{Hierarchy, Limits};

/// Host-wide jail settings, shared by every VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// First of the 65 536 uids (and gids) VMs run as. Pick a range no host
    /// user and no subordinate-id range (`/etc/subuid`) uses.
    pub id_base: u32,
    /// Where VM cgroups are made.
    pub cgroups: Hierarchy,
}

/// The default [`Jail::id_base`]: VMs run as uids 1 900 000 000 – 1 900 065 535.
pub const DEFAULT_ID_BASE: u32 = 1_900_000_000;

impl Jail {
    /// The jail for this host: needs root (for namespaces, mounts and the
    /// change of uid); `Err` says why VMs would run unjailed.
    pub fn for_this_host() -> Result<Jail, String> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the VM jail (own uid, mount namespace, cgroup) needs root: VMs run as the daemon's own user".into());
        }
        Ok(Jail {
            id_base: DEFAULT_ID_BASE,
            cgroups: Hierarchy::detect(),
        })
    }

    /// The uid and gid of the VM whose directory is `vm_dir`: spread over the
    /// range by a hash of the path, so VMs of different daemons (and tests)
    /// on one host rarely share one.
    pub fn id_for(&self, vm_dir: &Path) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in vm_dir.as_os_str().as_bytes() {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        self.id_base + (h & 0xffff)
    }
}

/// One step of building the jail's root, in order.
#[derive(Debug)]
enum Step {
    Dir(CString),
    File(CString),
    Bind {
        src: CString,
        dst: CString,
        readonly: bool,
        device: bool,
    },
    Symlink {
        target: CString,
        path: CString,
    },
    Node {
        path: CString,
        rdev: libc::dev_t,
    },
}

/// The jail of one VM process, being described.
#[derive(Debug)]
pub struct JailPlan {
    root: PathBuf,
    id: u32,
    new_net: bool,
    steps: Vec<(Step, String)>,
    cgroups: Vec<PathBuf>,
}

fn cstr(p: impl AsRef<Path>) -> io::Result<CString> {
    CString::new(p.as_ref().as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a jail path"))
}

impl JailPlan {
    /// The base jail of the VM in `vm_dir`: its root at `vm_dir/root`, its
    /// `/tmp` from `vm_dir/tmp` and `/run/vm` from `vm_dir/sock` (both
    /// created here, owned by the VM's uid, mode 0700), the system's
    /// libraries read-only, the harmless device nodes.
    pub fn new(jail: &Jail, vm_dir: &Path) -> io::Result<JailPlan> {
        let id = jail.id_for(vm_dir);
        let mut p = JailPlan {
            root: vm_dir.join("root"),
            id,
            new_net: false,
            steps: Vec::new(),
            cgroups: Vec::new(),
        };
        crate::fsutil::create_private_dir(&p.root)?;
        for d in ["tmp", "sock"] {
            let host = vm_dir.join(d);
            crate::fsutil::create_private_dir(&host)?;
            std::os::unix::fs::chown(&host, Some(id), Some(id))?;
        }
        // Hosts without /usr (a minimal busybox system) skip it.
        if Path::new("/usr").is_dir() {
            p.dir("/usr")?;
            p.bind("/usr", "/usr", true, false)?;
        }
        for link in ["/lib", "/lib64", "/bin", "/sbin"] {
            match std::fs::read_link(link) {
                Ok(target) => p.push(
                    Step::Symlink {
                        target: cstr(&target)?,
                        path: cstr(p.inside(link))?,
                    },
                    format!("symlink {link}"),
                ),
                Err(_) if Path::new(link).is_dir() => {
                    p.dir(link)?;
                    p.bind(link, link, true, false)?;
                }
                Err(_) => {}
            }
        }
        p.dir("/etc")?;
        if Path::new("/etc/ld.so.cache").exists() {
            p.bind_file("/etc/ld.so.cache", "/etc/ld.so.cache", true)?;
        }
        p.dir("/dev")?;
        for dev in ["null", "zero", "random", "urandom"] {
            let host = format!("/dev/{dev}");
            p.push(Step::File(cstr(p.inside(&host))?), format!("create {host}"));
            p.bind(&host, &host, false, true)?;
        }
        // One private scratch directory, as /tmp and /var/tmp (QEMU 7.2
        // puts `snapshot=on` overlays in /var/tmp whatever TMPDIR says).
        p.dir("/tmp")?;
        p.bind(vm_dir.join("tmp"), "/tmp", false, false)?;
        p.dir("/var")?;
        p.dir("/var/tmp")?;
        p.bind(vm_dir.join("tmp"), "/var/tmp", false, false)?;
        p.dir("/run")?;
        p.dir("/run/vm")?;
        p.bind(vm_dir.join("sock"), "/run/vm", false, false)?;
        p.dir("/vm")?;
        Ok(p)
    }

    /// The uid (and gid) the process runs as.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn inside(&self, path: impl AsRef<Path>) -> PathBuf {
        self.root
            .join(path.as_ref().strip_prefix("/").unwrap_or(path.as_ref()))
    }

    fn push(&mut self, step: Step, label: String) {
        self.steps.push((step, label));
    }

    fn dir(&mut self, inside: &str) -> io::Result<()> {
        let step = Step::Dir(cstr(self.inside(inside))?);
        self.push(step, format!("mkdir {inside}"));
        Ok(())
    }

    fn bind(
        &mut self,
        host: impl AsRef<Path>,
        inside: &str,
        readonly: bool,
        device: bool,
    ) -> io::Result<()> {
        let step = Step::Bind {
            src: cstr(host.as_ref())?,
            dst: cstr(self.inside(inside))?,
            readonly,
            device,
        };
        self.push(
            step,
            format!("bind {} on {inside}", host.as_ref().display()),
        );
        Ok(())
    }

    fn bind_file(
        &mut self,
        host: impl AsRef<Path>,
        inside: &str,
        readonly: bool,
    ) -> io::Result<()> {
        let step = Step::File(cstr(self.inside(inside))?);
        self.push(step, format!("create {inside}"));
        self.bind(host, inside, readonly, false)
    }

    /// Makes host file `host` (a kernel, a disk image, a binary) visible
    /// read-only at `/vm/<name>`; returns that path.
    pub fn file(&mut self, host: &Path, name: &str) -> io::Result<PathBuf> {
        let inside = format!("/vm/{name}");
        self.bind_file(host, &inside, true)?;
        Ok(PathBuf::from(inside))
    }

    /// Makes host file `host` visible **read-write** at `/vm/<name>`;
    /// returns that path. For the VM's own volume images only: the jail's
    /// uid must own them (see [`crate::volume::Claim::hand_to`]).
    pub fn file_rw(&mut self, host: &Path, name: &str) -> io::Result<PathBuf> {
        let inside = format!("/vm/{name}");
        self.bind_file(host, &inside, false)?;
        Ok(PathBuf::from(inside))
    }

    /// Makes a device node like host's `host` (e.g. `/dev/kvm`) at the same
    /// path inside, owned by the VM's uid.
    pub fn device(&mut self, host: &Path) -> io::Result<()> {
        let rdev = std::fs::metadata(host)?.rdev();
        let step = Step::Node {
            path: cstr(self.inside(host))?,
            rdev,
        };
        self.push(step, format!("mknod {}", host.display()));
        Ok(())
    }

    /// Gives the process a network namespace of its own (loopback only,
    /// and down).
    pub fn new_network(&mut self) {
        self.new_net = true;
    }

    /// Puts the process in the cgroup directories `dirs` (see [`cgroup::create`]).
    pub fn cgroups(&mut self, dirs: Vec<PathBuf>) {
        self.cgroups = dirs;
    }

    /// Everything the child needs, as C strings made now: the child runs
    /// between fork and exec, where it must not allocate.
    pub fn prepare(self) -> io::Result<Prepared> {
        let label = |s: &str| CString::new(s).unwrap_or_default();
        Ok(Prepared {
            root: cstr(&self.root)?,
            id: self.id,
            new_net: self.new_net,
            cgroup_procs: self
                .cgroups
                .iter()
                .map(|d| cstr(d.join("cgroup.procs")))
                .collect::<io::Result<_>>()?,
            steps: self
                .steps
                .into_iter()
                .map(|(s, l)| (s, label(&l)))
                .collect(),
        })
    }
}

/// A jail ready to be entered in a forked child.
#[derive(Debug)]
pub struct Prepared {
    root: CString,
    id: u32,
    new_net: bool,
    cgroup_procs: Vec<CString>,
    steps: Vec<(Step, CString)>,
}

/// Writes `what` to `diag` and returns the current OS error.
///
/// # Safety
/// Only async-signal-safe calls; for the child between fork and exec.
unsafe fn failed(diag: RawFd, what: &[u8]) -> io::Error {
    let e = io::Error::last_os_error();
    // SAFETY: `what` is valid for its length; a failed write loses only the label.
    unsafe { libc::write(diag, what.as_ptr().cast(), what.len()) };
    e
}

/// Returns the error (after naming `$label` on `$diag`) if `$call` < 0.
/// Used inside `Prepared::enter`'s unsafe block only.
macro_rules! check {
    ($diag:expr, $label:expr, $call:expr) => {
        if $call < 0 {
            return Err(failed($diag, $label));
        }
    };
}

impl Prepared {
    /// Enters the jail: the calling process is the forked child, still
    /// root, about to exec. A failing step writes its name to `diag`.
    ///
    /// # Safety
    /// Call only between fork and exec (it changes the calling process's
    /// namespaces, root and credentials); it makes async-signal-safe
    /// syscalls only and does not allocate.
    pub unsafe fn enter(&mut self, diag: RawFd) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY (whole block): every pointer passed is a NUL-terminated
        // string or buffer owned by `self` or a static, valid for the call.
        unsafe {
            for procs in &self.cgroup_procs {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                check!(diag, b"join cgroup", fd);
                let rc = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                libc::close(fd);
                check!(diag, b"join cgroup", rc);
            }
            let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if self.new_net {
                flags |= libc::CLONE_NEWNET;
            }
            check!(diag, b"unshare namespaces", libc::unshare(flags));
            check!(
                diag,
                b"make mounts private",
                libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null()
                )
            );
            // Device nodes made for the VM live on this tmpfs: no MS_NODEV.
            check!(
                diag,
                b"mount the jail's tmpfs",
                libc::mount(
                    c"tmpfs".as_ptr(),
                    self.root.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID,
                    c"mode=0755,size=1m".as_ptr().cast()
                )
            );
            for (step, label) in &self.steps {
                let l = label.as_bytes();
                match step {
                    Step::Dir(p) => {
                        if libc::mkdir(p.as_ptr(), 0o755) < 0
                            && *libc::__errno_location() != libc::EEXIST
                        {
                            return Err(failed(diag, l));
                        }
                    }
                    Step::File(p) => {
                        let fd = libc::open(
                            p.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o600,
                        );
                        check!(diag, l, fd);
                        libc::close(fd);
                    }
                    Step::Bind {
                        src,
                        dst,
                        readonly,
                        device,
                    } => {
                        check!(
                            diag,
                            l,
                            libc::mount(
                                src.as_ptr(),
                                dst.as_ptr(),
                                null,
                                libc::MS_BIND | libc::MS_REC,
                                std::ptr::null()
                            )
                        );
                        let mut f = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
                        if *readonly {
                            f |= libc::MS_RDONLY;
                        }
                        if !*device {
                            f |= libc::MS_NODEV;
                        }
                        check!(
                            diag,
                            l,
                            libc::mount(null, dst.as_ptr(), null, f, std::ptr::null())
                        );
                    }
                    Step::Symlink { target, path } => {
                        check!(diag, l, libc::symlink(target.as_ptr(), path.as_ptr()));
                    }
                    Step::Node { path, rdev } => {
                        check!(
                            diag,
                            l,
                            libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, *rdev)
                        );
                        check!(diag, l, libc::chown(path.as_ptr(), self.id, self.id));
                    }
                }
            }
            check!(
                diag,
                b"enter the jail root",
                libc::chdir(self.root.as_ptr())
            );
            if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) == 0 {
                check!(
                    diag,
                    b"detach the host's root",
                    libc::umount2(c".".as_ptr(), libc::MNT_DETACH)
                );
            } else if *libc::__errno_location() == libc::EINVAL {
                // The host's root is an initramfs (the nested test host), which
                // cannot be pivoted away: move the jail's root over it and
                // chroot, as switch_root does. With no capabilities left
                // after the uid change, the chroot cannot be escaped.
                check!(
                    diag,
                    b"move the jail root over /",
                    libc::mount(
                        c".".as_ptr(),
                        c"/".as_ptr(),
                        null,
                        libc::MS_MOVE,
                        std::ptr::null()
                    )
                );
                check!(diag, b"chroot", libc::chroot(c".".as_ptr()));
            } else {
                return Err(failed(diag, b"pivot_root"));
            }
            check!(diag, b"chdir /", libc::chdir(c"/".as_ptr()));
            check!(diag, b"drop groups", libc::setgroups(0, std::ptr::null()));
            check!(
                diag,
                b"setresgid",
                libc::setresgid(self.id, self.id, self.id)
            );
            check!(
                diag,
                b"setresuid",
                libc::setresuid(self.id, self.id, self.id)
            );
            check!(
                diag,
                b"no_new_privs",
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            );
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            check!(
                diag,
                b"disable core dumps",
                libc::setrlimit(libc::RLIMIT_CORE, &none)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_in_range_and_differ_by_vm() {
        let j = Jail {
            id_base: DEFAULT_ID_BASE,
            cgroups: Hierarchy::Unavailable("test".into()),
        };
        let a = j.id_for(Path::new("/home/x/run/vms/hello-1.1"));
        let b = j.id_for(Path::new("/home/x/run/vms/hello-1.2"));
        assert_ne!(a, b);
        for id in [a, b] {
            assert!((DEFAULT_ID_BASE..DEFAULT_ID_BASE + 65536).contains(&id));
        }
    }
}
