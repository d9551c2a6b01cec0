//! Booting an app: turn its run spec into a running VM — initramfs with the
//! guest init, modules and this VM's config ([`init_config`]), then the
//! driver, `qemu` or `kvm` — that the guest init reports READY. The
//! `byteport` binary sequences deploys with this and [`crate::health`]:
//! boot, health, switch the router, drain, stop the old VM.

mod config;
mod start;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guest_init::config::RedactedEnv;

use crate::drivers::guest::DriverError;
use crate::drivers::AppVm;
use crate::egress::EgressEndpoint;
use crate::initramfs::InitramfsError;
use crate::jail::Jail;

pub use config::{init_config, proxy_url};
pub use start::{boot, wanted_modules};

/// Errors booting an app.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Assembling the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// The driver (qemu or kvm) failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A volume could not be claimed (in use, cannot shrink, damaged, ...).
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// The spec asks for something the runtime cannot do (a console
    /// without a one-off VM, ...).
    #[error("{0}")]
    Unsupported(String),
    /// Preparing the VM's directory failed.
    #[error("preparing {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Everything needed to run one deploy of an app. Its `Debug` output never
/// shows `env` values (they hold secrets).
#[derive(Clone)]
pub struct AppSpec {
    /// The app.
    pub app: String,
    /// The deploy number (names the VM).
    pub deploy: i64,
    /// Guest kernel image.
    pub kernel: PathBuf,
    /// Its modules directory (holding `modules.dep`); `None` for a kernel
    /// with virtio built in.
    pub modules_dir: Option<PathBuf>,
    /// The artifact's ext4 rootfs.
    pub rootfs: PathBuf,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Processes: (name, command line).
    pub processes: Vec<(String, String)>,
    /// The web process's port.
    pub port: Option<u16>,
    /// Environment (manifest env + config vars + secrets).
    pub env: BTreeMap<String, String>,
    /// Unprivileged user.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Working directory.
    pub workdir: String,
    /// The app's outbound proxy (the egress crate's listener for this app);
    /// `None`: the app reaches nothing outside its VM (the manifest turned
    /// outbound traffic off). Its address is given to the app as
    /// `HTTP_PROXY`/`HTTPS_PROXY` (see [`proxy_url`]).
    pub egress: Option<EgressEndpoint>,
    /// The app's managed database: the cluster's socket (normally
    /// `<home>/socket/.s.PGSQL.5432` of the `database` crate's cluster),
    /// reached in the guest at [`crate::database_addr`] through the VM's
    /// database door; `None`: no door, the guest reaches no database. The
    /// caller puts the matching `DATABASE_URL` in `env`.
    pub database: Option<EgressEndpoint>,
    /// Persistent volumes: each is claimed for this VM (refused while
    /// another VM has it), created or grown, attached as an extra
    /// virtio-blk disk and mounted by the guest init before the processes
    /// start, owned by `uid:gid` (see [`crate::volume`]).
    pub volumes: Vec<crate::volume::Volume>,
    /// A one-off VM (a release command, `byteport run`): the processes run
    /// once, none is restarted, nothing is health-checked, and the VM
    /// powers off when they have exited; [`crate::one_off::wait_exit`]
    /// gives the first process's exit status.
    pub one_off: bool,
    /// A terminal for a one-off VM's one process (`byteport run` with a
    /// TTY): its stdin, stdout and stderr are a pseudo-terminal in the
    /// guest, whose bytes the caller reads and writes raw through
    /// [`AppVm::take_console`].
    /// Refused without [`AppSpec::one_off`], with more than one process,
    /// and (for now) under the `kvm` driver.
    pub console: Option<Tty>,
}

/// A terminal's settings, as an SSH client asks for them (`pty-req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tty {
    /// `TERM`, e.g. `xterm-256color`.
    pub term: String,
    /// Columns (0: unknown).
    pub cols: u16,
    /// Rows (0: unknown).
    pub rows: u16,
}

impl std::fmt::Debug for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpec")
            .field("app", &self.app)
            .field("deploy", &self.deploy)
            .field("kernel", &self.kernel)
            .field("modules_dir", &self.modules_dir)
            .field("rootfs", &self.rootfs)
            .field("cpus", &self.cpus)
            .field("memory_mib", &self.memory_mib)
            .field("processes", &self.processes)
            .field("port", &self.port)
            .field("env", &RedactedEnv(&self.env))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("workdir", &self.workdir)
            .field("egress", &self.egress)
            .field("database", &self.database)
            .field("volumes", &self.volumes)
            .field("one_off", &self.one_off)
            .field("console", &self.console)
            .finish()
    }
}

/// How VMs are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// QEMU's microvm machine; the app is reached through user-mode
    /// networking with a loopback port forward.
    Qemu {
        /// `qemu-system-x86_64`.
        qemu: PathBuf,
        /// `tcg` or `kvm`.
        accel: String,
    },
    /// BytePort's own VMM (`byteport-vmm` as a child process); the app is
    /// reached over virtio-vsock.
    Kvm {
        /// The `byteport-vmm` binary.
        vmm: PathBuf,
    },
}

/// Host-side settings for booting.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Where VM directories (`vms/`) and the initramfs cache live. Call
    /// [`crate::reap_leftovers`] on it when the daemon starts.
    pub run_dir: PathBuf,
    /// The `byteport-init` binary (also QEMU's egress relay on the host).
    pub init_binary: PathBuf,
    /// Which driver runs the VMs.
    pub driver: Driver,
    /// How long the guest may take to report READY.
    pub ready_timeout: Duration,
    /// The jail VM processes run in ([`Jail::for_this_host`]); `None` runs
    /// them as the daemon's own user, unconfined but for seccomp.
    pub jail: Option<Jail>,
}

/// A booted app VM. Dropping it kills the VM if it still runs and removes
/// its directory.
pub struct RunningApp {
    /// The app.
    pub app: String,
    /// Its deploy.
    pub deploy: i64,
    /// The VM.
    pub vm: Box<dyn AppVm>,
    /// The VM's directory (`console.log`), while the VM's handle lives.
    pub dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.into(),
        source,
    }
}
