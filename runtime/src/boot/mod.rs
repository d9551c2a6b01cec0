//! Booting an app: turn its run spec into a running VM (initramfs with the
//! guest init, modules and config; the driver — `qemu` or `kvm`) that the
//! guest init reports READY. The `byteport` binary sequences deploys with
//! this and [`crate::health`] — boot, health, switch the router, drain, stop
//! the old VM.

mod start;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guest_init::config::{InitConfig, Network, Process, RootFs, UserIds};

use crate::drivers::guest::DriverError;
use crate::drivers::qemu::{GATEWAY_IP, GUEST_IP};
use crate::drivers::AppVm;
use crate::initramfs::InitramfsError;

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

/// Everything needed to run one deploy of an app.
#[derive(Debug, Clone)]
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
    /// Where VM directories and the initramfs cache live.
    pub run_dir: PathBuf,
    /// The `byteport-init` binary.
    pub init_binary: PathBuf,
    /// Which driver runs the VMs.
    pub driver: Driver,
    /// How long the guest may take to report READY.
    pub ready_timeout: Duration,
}

/// A booted app VM.
pub struct RunningApp {
    /// The app.
    pub app: String,
    /// Its deploy.
    pub deploy: i64,
    /// The VM.
    pub vm: Box<dyn AppVm>,
    /// The VM's directory (console log, initramfs).
    pub dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.into(),
        source,
    }
}

/// The guest-init configuration for `spec` under `driver` (modules as paths
/// in the initramfs): user-mode networking for `qemu`, vsock for `kvm`.
pub fn init_config(spec: &AppSpec, driver: &Driver, modules: Vec<String>) -> InitConfig {
    let (network, vsock) = match driver {
        Driver::Qemu { .. } => (
            Some(Network {
                interface: "eth0".into(),
                address: GUEST_IP,
                prefix: 24,
                gateway: Some(GATEWAY_IP),
            }),
            None,
        ),
        Driver::Kvm { .. } => (None, Some(crate::drivers::kvm::init_link(spec.port))),
    };
    let mut env = spec.env.clone();
    if let Some(port) = spec.port {
        env.entry("PORT".into()).or_insert_with(|| port.to_string());
    }
    InitConfig {
        hostname: spec.app.clone(),
        modules,
        root: Some(RootFs {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            readonly: false,
        }),
        user: UserIds {
            uid: spec.uid,
            gid: spec.gid,
        },
        env,
        workdir: spec.workdir.clone(),
        processes: spec
            .processes
            .iter()
            .map(|(name, command)| Process {
                name: name.clone(),
                command: command.clone(),
            })
            .collect(),
        network,
        vsock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_config_carries_the_app_and_port() {
        let spec = AppSpec {
            app: "hello".into(),
            deploy: 3,
            kernel: "/k".into(),
            modules_dir: None,
            rootfs: "/r".into(),
            cpus: 1,
            memory_mib: 256,
            processes: vec![("web".into(), "python3 app.py".into())],
            port: Some(8080),
            env: BTreeMap::from([("GREETING".into(), "hi".into())]),
            uid: 1000,
            gid: 1000,
            workdir: "/app".into(),
        };
        let qemu = Driver::Qemu {
            qemu: "/q".into(),
            accel: "tcg".into(),
        };
        let c = init_config(&spec, &qemu, vec!["/lib/modules/00-virtio.ko".into()]);
        assert_eq!(c.env["PORT"], "8080");
        assert_eq!(c.env["GREETING"], "hi");
        assert_eq!(c.network.as_ref().unwrap().address, GUEST_IP);
        assert!(c.vsock.is_none());
        // What the runtime writes, the guest init accepts.
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), c);

        // Under the kvm driver: no network, the app's port over vsock.
        let k = init_config(&spec, &Driver::Kvm { vmm: "/v".into() }, vec![]);
        assert!(k.network.is_none());
        let link = k.vsock.as_ref().expect("a vsock link");
        assert_eq!(link.proxy.as_ref().map(|p| p.tcp_port), Some(8080));
        let json = serde_json::to_vec(&k).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), k);
    }
}
