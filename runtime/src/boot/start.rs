//! Booting one app VM: its volumes claimed (refused while another VM has
//! one; created or grown), the cached base initramfs (guest init + the
//! modules the driver needs), this VM's config appended to it, then the
//! driver — QEMU's microvm or BytePort's own VMM — until the guest init
//! says READY.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use guest_init::config::VolumeMount;

use sha2::{Digest, Sha256};

use super::config::WEB;
use super::{init_config, io_err, AppSpec, BootError, BootOptions, Driver, RunningApp};
use crate::drivers::kvm::{KvmSpec, KvmVm};
use crate::drivers::qemu::{QemuSpec, QemuVm};
use crate::drivers::{AppLog, AppVm};
use crate::initramfs::{self, POWER_BUTTON_MODULES, VIRTIO_MODULES};
use crate::volume::Claim;

/// Longest VM directory the drivers' Unix sockets allow (`sun_path`, with
/// room for `sock/v_1100`, `sock/egress` and the VMM's socket names).
const MAX_VM_DIR: usize = 80;

/// Kernel modules the guest loads: virtio (+ vsock) for both drivers; the
/// virtio-serial port of the records channel for `qemu`; the ACPI power
/// button for the kvm driver's graceful stop.
pub fn wanted_modules(driver: &Driver) -> Vec<&'static str> {
    let mut m: Vec<&str> = VIRTIO_MODULES.to_vec();
    match driver {
        Driver::Kvm { .. } => m.extend(POWER_BUTTON_MODULES),
        Driver::Qemu { .. } => m.push("virtio_console"),
    }
    m
}

/// The base initramfs for this kernel + init binary + module set, built
/// once and cached under `run_dir/initramfs`.
fn base_initramfs(spec: &AppSpec, opts: &BootOptions) -> Result<(PathBuf, Vec<String>), BootError> {
    let modules = match &spec.modules_dir {
        Some(dir) => resolved_modules(dir, wanted_modules(&opts.driver))?,
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
    // Several boots may build the same base at once: each its own temp file.
    let tmp = dir.join(format!(".{key}.{}.tmp", unique()));
    let in_guest = initramfs::write_base(&tmp, &opts.init_binary, &modules)?;
    std::fs::write(&list, in_guest.join("\n")).map_err(io_err(&list))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok((path, in_guest))
}

/// [`initramfs::resolve_modules`], once per modules directory and module
/// set in this process: without `modules.dep` it reads every module of the
/// kernel (~90 MB for Debian's cloud kernel), too much for every boot.
fn resolved_modules(
    dir: &Path,
    wanted: Vec<&'static str>,
) -> Result<Vec<PathBuf>, initramfs::InitramfsError> {
    type Key = (PathBuf, Vec<&'static str>);
    static CACHE: OnceLock<Mutex<HashMap<Key, Vec<PathBuf>>>> = OnceLock::new();
    let key = (dir.to_path_buf(), wanted);
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let modules = initramfs::resolve_modules(dir, &key.1)?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, modules.clone());
    Ok(modules)
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// A number no other VM of this process has.
fn unique() -> u64 {
    static INSTANCE: AtomicU64 = AtomicU64::new(1);
    INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// A name no other VM of this process has: `<app>-<deploy>.<n>` (a deploy
/// is booted again by restarts, crash recovery and rollbacks), and that
/// number alone.
fn vm_name(spec: &AppSpec) -> (String, u64) {
    let n = unique();
    (format!("{}-{}.{n}", spec.app, spec.deploy), n)
}

/// The VM's directory: `vms/<name>`, or `vms/<n>` when a long app name
/// and data directory would make the socket paths in it too long.
fn vm_dir(opts: &BootOptions, name: &str, n: u64) -> PathBuf {
    let dir = opts.run_dir.join("vms").join(name);
    if dir.as_os_str().len() > MAX_VM_DIR {
        opts.run_dir.join("vms").join(n.to_string())
    } else {
        dir
    }
}

/// Writes the cached base followed by this VM's config as one initrd
/// (mode 0600: the config holds the app's secrets).
fn write_initrd(base: &Path, config_archive: &Path, initrd: &Path) -> Result<(), BootError> {
    let mut out = crate::fsutil::create_private(initrd).map_err(io_err(initrd))?;
    for part in [base, config_archive] {
        let bytes = std::fs::read(part).map_err(io_err(part))?;
        out.write_all(&bytes).map_err(io_err(initrd))?;
    }
    Ok(())
}

/// Boots `spec` with the configured driver and waits for the guest's READY.
/// A failed boot leaves nothing behind (the VM's directory is removed).
pub fn boot(spec: &AppSpec, opts: &BootOptions, app_log: AppLog) -> Result<RunningApp, BootError> {
    check_console(spec)?;
    let (base, modules) = base_initramfs(spec, opts)?;
    // Before anything else of this VM: a volume another VM has stops here.
    let claims = crate::volume::claim_all(&spec.volumes, spec.uid, spec.gid)?;
    for c in &claims {
        let what = match c.growth {
            None => "created".to_string(),
            Some(crate::volume::Growth::Unchanged) => "attached".to_string(),
            Some(crate::volume::Growth::Grown { from, to }) => {
                format!("grown from {} MiB to {} MiB", from >> 20, to >> 20)
            }
        };
        (app_log)(
            "init",
            "out",
            &format!(
                "volume {} {what} ({} MiB, {})",
                c.volume.name,
                c.bytes >> 20,
                c.volume.image.display()
            ),
        );
    }
    let disks = guest_disks(spec, &claims)?;
    let claims: Vec<Arc<Claim>> = claims.into_iter().map(Arc::new).collect();
    let (name, n) = vm_name(spec);
    let vms = opts.run_dir.join("vms");
    crate::fsutil::create_private_dir(&vms).map_err(io_err(&vms))?;
    let dir = vm_dir(opts, &name, n);
    // A VM directory of an earlier `byteport up` with the same name.
    let _ = std::fs::remove_dir_all(&dir);
    crate::fsutil::create_private_dir(&dir).map_err(io_err(&dir))?;
    let started = prepare_and_start(
        spec,
        opts,
        (&name, &dir),
        &base,
        modules,
        (disks, claims),
        app_log,
    );
    if started.is_err() {
        // The driver's handle, if it got that far, removed it already.
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(RunningApp {
        app: spec.app.clone(),
        deploy: spec.deploy,
        vm: started?,
        dir,
    })
}

/// A console is for the one process of a one-off VM, with a `TERM` the
/// guest accepts.
pub(crate) fn check_console(spec: &AppSpec) -> Result<(), BootError> {
    let Some(tty) = &spec.console else {
        return Ok(());
    };
    let refuse = |why: String| Err(BootError::Unsupported(format!("{}: {why}", spec.app)));
    if !spec.one_off || spec.processes.len() != 1 {
        return refuse(
            "a console (TTY) is only for a one-off VM running one command (`byteport run`)".into(),
        );
    }
    if !guest_init::config::is_term_name(&tty.term) {
        return refuse(format!(
            "TERM {:?} is not a terminal name (letters, digits, `.+-_`, at most {} bytes)",
            tty.term,
            guest_init::config::MAX_TERM
        ));
    }
    Ok(())
}

/// What the guest init needs to find its disks: the rootfs's UUID (with
/// volumes there are several disks, and their names follow probe order)
/// and each volume's.
struct GuestDisks {
    root_uuid: Option<String>,
    volumes: Vec<VolumeMount>,
}

fn guest_disks(spec: &AppSpec, claims: &[Claim]) -> Result<GuestDisks, BootError> {
    if claims.is_empty() {
        return Ok(GuestDisks {
            root_uuid: None,
            volumes: Vec::new(),
        });
    }
    let root = guest_init::ext4::read(&spec.rootfs)
        .map_err(io_err(&spec.rootfs))?
        .ok_or_else(|| BootError::Io {
            path: spec.rootfs.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the rootfs holds no ext4 filesystem",
            ),
        })?;
    if let Some(c) = claims.iter().find(|c| c.uuid == root.uuid) {
        return Err(crate::volume::VolumeError::SameFilesystem {
            a: "(the app's root filesystem)".into(),
            b: c.volume.name.clone(),
            uuid: root.uuid,
        }
        .into());
    }
    Ok(GuestDisks {
        root_uuid: Some(root.uuid),
        volumes: claims
            .iter()
            .map(|c| VolumeMount {
                name: c.volume.name.clone(),
                uuid: c.uuid.clone(),
                path: c.volume.mount.clone(),
            })
            .collect(),
    })
}

fn prepare_and_start(
    spec: &AppSpec,
    opts: &BootOptions,
    (name, dir): (&str, &Path),
    base: &Path,
    modules: Vec<String>,
    (disks, claims): (GuestDisks, Vec<Arc<Claim>>),
    app_log: AppLog,
) -> Result<Box<dyn AppVm>, BootError> {
    let mut config = init_config(spec, &opts.driver, modules);
    config.volumes = disks.volumes;
    if let Some(root) = config.root.as_mut() {
        root.uuid = disks.root_uuid;
    }
    let config = serde_json::to_vec_pretty(&config).expect("init config serializes");
    let config_archive = dir.join("config.cpio.gz");
    initramfs::write_config(&config_archive, &config)?;
    let initrd = dir.join("initrd.cpio.gz");
    let started = write_initrd(base, &config_archive, &initrd)
        .and_then(|()| start(spec, opts, name, dir, &initrd, claims, app_log));
    // The config holds the app's secrets; the VM has read it by now (and a
    // failed boot does not need it either).
    let _ = std::fs::remove_file(&config_archive);
    let _ = std::fs::remove_file(&initrd);
    started
}

fn start(
    spec: &AppSpec,
    opts: &BootOptions,
    name: &str,
    dir: &Path,
    initrd: &Path,
    volumes: Vec<Arc<Claim>>,
    app_log: AppLog,
) -> Result<Box<dyn AppVm>, BootError> {
    // A one-off VM's result is its first process's exit.
    let checked = if spec.one_off {
        spec.processes.first().map(|(n, _)| n.clone())
    } else {
        spec.processes
            .iter()
            .any(|(n, _)| n == WEB)
            .then(|| WEB.to_string())
    };
    match &opts.driver {
        Driver::Qemu { qemu, accel } => {
            let qspec = QemuSpec {
                name: name.to_string(),
                qemu: qemu.clone(),
                kernel: spec.kernel.clone(),
                initrd: initrd.to_path_buf(),
                rootfs: Some(spec.rootfs.clone()),
                cpus: spec.cpus,
                memory_mib: spec.memory_mib,
                guest_port: spec.port,
                dir: dir.to_path_buf(),
                accel: accel.clone(),
                egress: spec.egress.clone(),
                database: spec.database.clone(),
                relay: opts.init_binary.clone(),
                jail: opts.jail.clone(),
                checked_process: checked,
                volumes,
                console: spec.console.is_some(),
            };
            let mut vm = QemuVm::start(&qspec, app_log)?;
            vm.wait_ready(opts.ready_timeout)?;
            Ok(Box::new(vm))
        }
        Driver::Kvm { vmm } => {
            let kspec = KvmSpec {
                name: name.to_string(),
                vmm: vmm.clone(),
                kernel: spec.kernel.clone(),
                initrd: initrd.to_path_buf(),
                rootfs: Some(spec.rootfs.clone()),
                cpus: spec.cpus,
                memory_mib: spec.memory_mib,
                guest_port: spec.port,
                dir: dir.to_path_buf(),
                egress: spec.egress.clone(),
                database: spec.database.clone(),
                jail: opts.jail.clone(),
                checked_process: checked,
                volumes,
                console: spec.console.is_some(),
            };
            let mut vm = KvmVm::start(&kspec, app_log)?;
            vm.wait_ready(opts.ready_timeout)?;
            Ok(Box::new(vm))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(driver: Driver, run_dir: &str) -> BootOptions {
        BootOptions {
            run_dir: run_dir.into(),
            init_binary: "/init".into(),
            driver,
            ready_timeout: std::time::Duration::from_secs(1),
            jail: None,
        }
    }

    #[test]
    fn each_driver_loads_what_it_needs() {
        let qemu = Driver::Qemu {
            qemu: "/q".into(),
            accel: "tcg".into(),
        };
        let kvm = Driver::Kvm { vmm: "/v".into() };
        assert!(!wanted_modules(&qemu).contains(&"button"));
        assert!(wanted_modules(&qemu).contains(&"virtio_console"));
        assert!(wanted_modules(&kvm).contains(&"button"));
        assert!(wanted_modules(&kvm).contains(&"vmw_vsock_virtio_transport"));
    }

    #[test]
    fn vm_dirs_stay_short_enough_for_unix_sockets() {
        let kvm = Driver::Kvm { vmm: "/v".into() };
        let long_app = "a".repeat(63);
        let o = opts(kvm, "/home/someone/.local/share/byteport/run");
        let d = vm_dir(&o, &format!("{long_app}-12.7"), 7);
        assert!(d.as_os_str().len() <= MAX_VM_DIR, "{}", d.display());
        assert!(d.ends_with("vms/7"));
        // Short names keep their readable directory.
        assert!(vm_dir(&o, "hello-3.1", 1).ends_with("vms/hello-3.1"));
    }
}
