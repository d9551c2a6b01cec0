//! The supervisor's building blocks: turn an app's run spec into a booted
//! VM (initramfs with the guest init, modules and config; the driver), and
//! health-check it. The `byteport` binary sequences deploys with these —
//! boot, health, switch the router, drain, stop the old VM.

mod health;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use guest_init::config::{InitConfig, Network, Process, RootFs, UserIds};
use sha2::{Digest, Sha256};

use crate::drivers::initramfs::{self, InitramfsError, VIRTIO_MODULES};
use crate::drivers::qemu::{QemuError, QemuSpec, QemuVm, GATEWAY_IP, GUEST_IP};
use crate::drivers::{AppLog, AppVm};

pub use health::{check_once, wait_healthy, HealthError, HealthProbe};

/// Errors booting an app.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Assembling the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// The driver failed.
    #[error(transparent)]
    Qemu(#[from] QemuError),
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

/// Host-side settings for booting.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Where VM directories and the initramfs cache live.
    pub run_dir: PathBuf,
    /// The `byteport-init` binary.
    pub init_binary: PathBuf,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
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

/// The guest-init configuration for `spec` (modules as paths in the initramfs).
pub fn init_config(spec: &AppSpec, modules: Vec<String>) -> InitConfig {
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
        network: Some(Network {
            interface: "eth0".into(),
            address: GUEST_IP,
            prefix: 24,
            gateway: Some(GATEWAY_IP),
        }),
        vsock: None,
    }
}

/// The base initramfs for this kernel + init binary, built once and cached.
fn base_initramfs(spec: &AppSpec, opts: &BootOptions) -> Result<(PathBuf, Vec<String>), BootError> {
    let modules = match &spec.modules_dir {
        Some(dir) => initramfs::resolve_modules(dir, &VIRTIO_MODULES)?,
        None => vec![],
    };
    let mut h = Sha256::new();
    h.update(std::fs::read(&opts.init_binary).map_err(io_err(&opts.init_binary))?);
    for m in &modules {
        h.update(m.to_string_lossy().as_bytes());
        h.update(
            std::fs::metadata(m)
                .map(|md| md.len())
                .unwrap_or(0)
                .to_le_bytes(),
        );
    }
    let key = hex_prefix(&h.finalize());
    let dir = opts.run_dir.join("initramfs");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = dir.join(format!("{key}.cpio.gz"));
    let list = dir.join(format!("{key}.modules"));
    if path.exists() && list.exists() {
        let names = std::fs::read_to_string(&list).map_err(io_err(&list))?;
        return Ok((path, names.lines().map(String::from).collect()));
    }
    let tmp = dir.join(format!(".{key}.tmp"));
    let in_guest = initramfs::write_base(&tmp, &opts.init_binary, &modules)?;
    std::fs::write(&list, in_guest.join("\n")).map_err(io_err(&list))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok((path, in_guest))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// A name no other VM of this process has: `<app>-<deploy>.<n>` (a deploy
/// is booted again by restarts, crash recovery and rollbacks).
fn vm_name(spec: &AppSpec) -> String {
    static INSTANCE: AtomicU64 = AtomicU64::new(1);
    let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}.{n}", spec.app, spec.deploy)
}

/// Boots `spec` with the QEMU driver and waits for the guest's READY.
pub fn boot(spec: &AppSpec, opts: &BootOptions, app_log: AppLog) -> Result<RunningApp, BootError> {
    let (base, modules) = base_initramfs(spec, opts)?;
    let name = vm_name(spec);
    let dir = opts.run_dir.join("vms").join(&name);
    // A VM directory of an earlier `byteport up` with the same name.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let config =
        serde_json::to_vec_pretty(&init_config(spec, modules)).expect("init config serializes");
    let config_archive = dir.join("config.cpio.gz");
    initramfs::write_config(&config_archive, &config)?;
    // One initrd file: the cached base followed by this VM's config.
    let initrd = dir.join("initrd.cpio.gz");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&initrd)
            .map_err(io_err(&initrd))?;
        for part in [&base, &config_archive] {
            let bytes = std::fs::read(part).map_err(io_err(part))?;
            out.write_all(&bytes).map_err(io_err(&initrd))?;
        }
    }
    let qspec = QemuSpec {
        name: name.clone(),
        qemu: opts.qemu.clone(),
        kernel: spec.kernel.clone(),
        initrd: initrd.clone(),
        rootfs: Some(spec.rootfs.clone()),
        cpus: spec.cpus,
        memory_mib: spec.memory_mib,
        guest_port: spec.port,
        console_log: dir.join("console.log"),
        accel: opts.accel.clone(),
    };
    let started = QemuVm::start(&qspec, app_log).and_then(|mut vm| {
        vm.wait_ready(opts.ready_timeout)?;
        Ok(vm)
    });
    // The config holds the app's secrets; the VMM has read it by now (and a
    // failed boot does not need it either).
    let _ = std::fs::remove_file(&config_archive);
    let _ = std::fs::remove_file(&initrd);
    Ok(RunningApp {
        app: spec.app.clone(),
        deploy: spec.deploy,
        vm: Box::new(started?),
        dir,
    })
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
        let c = init_config(&spec, vec!["/lib/modules/00-virtio.ko".into()]);
        assert_eq!(c.env["PORT"], "8080");
        assert_eq!(c.env["GREETING"], "hi");
        assert_eq!(c.network.as_ref().unwrap().address, GUEST_IP);
        // What the runtime writes, the guest init accepts.
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(InitConfig::parse(&json).unwrap(), c);
    }
}
