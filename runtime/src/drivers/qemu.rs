//! The `qemu` driver: QEMU's `microvm` machine booting the same artifact
//! as the `kvm` driver.
//!
//! - Network: user-mode networking with `restrict=on` — the guest cannot
//!   open a single connection of its own: not to the host's loopback
//!   (`10.0.2.2`), not to a private range, not to the internet. The host
//!   reaches the app through a loopback port forward (`hostfwd`). The one
//!   way out is the app's egress proxy, if it has one: the guest's
//!   `10.0.2.100:3128` is a `guestfwd` that runs `byteport-init --relay`
//!   per connection, into the VM's door ([`crate::egress`]). The app's
//!   managed database, if it has one, is a second `guestfwd` the same way:
//!   the guest's `10.0.2.101:5432` into the VM's database door
//!   ([`crate::database`]).
//! - Volumes: one extra virtio-blk disk per volume (`-drive ...,if=none`
//!   and `virtio-blk-device`), read-write, its lock shared with QEMU
//!   ([`crate::volume`]).
//! - Records: a virtio-serial port (`org.byteport.records`) on a socket
//!   pair, which only the guest's PID 1 holds; the host also sends `STOP`
//!   on it. The serial console carries kernel messages only.
//! - Console (a one-off VM with a TTY): a second virtio-serial port
//!   (`org.byteport.console`) on a socket pair, its host end given out by
//!   [`AppVm::take_console`](super::AppVm::take_console); raw terminal
//!   bytes both ways. Window changes go as `WINCH <cols> <rows>` on the
//!   records port, apart from what is typed.
//! - Confinement: the jail ([`crate::jail`], own uid, mount namespace,
//!   cgroup; QEMU keeps the host's network namespace, where its port
//!   forward must listen) and QEMU's own seccomp filter, `-sandbox on`, with
//!   everything denied but `spawn` and `elevateprivileges` when the app has
//!   an egress proxy: libslirp forks the relay and calls `setsid` in the
//!   child (measured on QEMU 7.2: with either denied the relay never runs,
//!   and with `spawn=deny` the guest's first connection kills QEMU with
//!   SIGSYS). Privileges cannot be regained anyway: the jail left no
//!   capabilities and set `no_new_privs`.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use guest_init::config::{CONSOLE_PORT_NAME, RECORDS_PORT_NAME};

use super::guest::DriverError;
use super::vm_process::{attach_volumes, check_input, io_error, Start, VmProcess, VolumeDisk};
use super::AppLog;
use crate::database::{DATABASE_PORT, QEMU_DATABASE_ADDR};
use crate::egress::{Door, EgressEndpoint, PROXY_PORT, QEMU_GUEST_ADDR};
use crate::guest_link::GuestLink;
use crate::jail::{Jail, JailPlan, Limits};
use crate::volume::Claim;

/// The guest address QEMU's user-mode network gives the first interface.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The user-mode network's gateway (it routes nothing: `restrict=on`).
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// QEMU's memory beyond guest RAM (TCG's code cache, device state),
/// measured with margin; part of its cgroup's memory limit.
pub const OVERHEAD_MIB: u64 = 384;
/// Tasks QEMU may have: its threads plus one relay per egress connection.
pub const MAX_TASKS: u32 = 256;

/// Errors from the QEMU driver.
pub type QemuError = DriverError;

/// What to boot.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    /// The VM's name (app + deploy).
    pub name: String,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// Guest kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs (base archive + per-VM config archive, concatenated).
    pub initrd: PathBuf,
    /// The ext4 rootfs; attached copy-on-write (`snapshot=on`), so the
    /// artifact is never modified.
    pub rootfs: Option<PathBuf>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The app's port in the guest, forwarded from a loopback host port.
    pub guest_port: Option<u16>,
    /// The VM's directory (console log, `vm.json`, the jail's root, sockets);
    /// removed when the VM's handle is dropped.
    pub dir: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// The app's egress proxy, if it may go out at all.
    pub egress: Option<EgressEndpoint>,
    /// The app's managed database (the cluster's socket), if it has one.
    pub database: Option<EgressEndpoint>,
    /// `byteport-init`, run on the host as the egress and database relay.
    pub relay: PathBuf,
    /// The jail, if the daemon can make one (root).
    pub jail: Option<Jail>,
    /// The process whose listening and exits the health check follows.
    pub checked_process: Option<String>,
    /// The app's volumes, claimed for this VM: each an extra virtio-blk
    /// disk, read-write (the only files the VM may write besides its
    /// sockets and scratch); QEMU holds a share of each one's lock.
    pub volumes: Vec<Arc<Claim>>,
    /// A console port (`org.byteport.console`) for a one-off process's
    /// terminal ([`AppVm::take_console`](super::AppVm::take_console)).
    pub console: bool,
}

/// The guest kernel command line. Under TCG the kernel's PIT calibration
/// of the TSC fails when the host is busy (`tsc: Unable to calibrate against
/// PIT`), after which the Debian kernel hangs; giving it the TSC frequency
/// and loops-per-jiffy up front makes boots reliable (measured: 3/3 boots
/// under a 3-busy-loop load, ~11 s, versus 0/3 without).
pub fn cmdline(accel: &str) -> String {
    let mut c = String::from("console=ttyS0 quiet panic=-1 rdinit=/init");
    if accel == "tcg" {
        if let Some(khz) =
            host_tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
        {
            // Debian's kernels use HZ=250.
            c.push_str(&format!(
                " tsc_early_khz={khz} lpj={} no_timer_check",
                khz * 1000 / 250
            ));
        }
    }
    c
}

/// The host CPU's clock in kHz from `/proc/cpuinfo` (TCG's TSC runs at it).
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 1.0).then(|| (mhz * 1000.0).round() as u64)
}

/// QEMU's `-sandbox` setting: every group of system calls QEMU can deny,
/// except what the relays (egress, database) need when there is one.
pub fn sandbox(relays: bool) -> &'static str {
    if relays {
        "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny"
    } else {
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    }
}

/// `s` as a QEMU option value (commas doubled).
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// A loopback port that was free a moment ago, for QEMU's `hostfwd` (QEMU
/// cannot tell us which port it picked itself).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The records channel's descriptor number in QEMU.
const RECORDS_FD: i32 = 3;
/// The console's descriptor number in QEMU.
const CONSOLE_FD: i32 = 4;

/// A running QEMU VM.
pub struct QemuVm {
    // Fields drop in this order: the doors before the VM directory goes,
    // the volume claims after the VM process is gone.
    _door: Option<Door>,
    _database_door: Option<Door>,
    vm: VmProcess,
    _volumes: Vec<Arc<Claim>>,
    records: UnixStream,
    console: Option<UnixStream>,
    has_console: bool,
    /// Loopback address forwarded to the app's port, if any.
    pub host_addr: Option<SocketAddr>,
}

impl QemuVm {
    /// Starts QEMU; returns once the process runs (see [`QemuVm::wait_ready`]).
    pub fn start(spec: &QemuSpec, app_log: AppLog) -> Result<QemuVm, QemuError> {
        let vm = spec.name.as_str();
        let jailed = spec.jail.is_some();
        check_input(vm, "kernel", &spec.kernel, jailed)?;
        check_input(vm, "initramfs", &spec.initrd, false)?;
        if let Some(r) = &spec.rootfs {
            check_input(vm, "rootfs", r, jailed)?;
        }
        crate::fsutil::create_private_dir(&spec.dir)
            .map_err(io_error(vm, "creating the VM directory"))?;
        let mut plan = match &spec.jail {
            Some(j) => {
                Some(JailPlan::new(j, &spec.dir).map_err(io_error(vm, "preparing the jail"))?)
            }
            None => None,
        };
        let owner = plan.as_ref().map(JailPlan::id);
        // Paths as QEMU sees them: inside the jail, or on the host.
        let mut see = |host: &Path, name: &str| -> Result<String, DriverError> {
            Ok(match plan.as_mut() {
                Some(p) => p
                    .file(host, name)
                    .map_err(io_error(vm, "preparing the jail"))?
                    .display()
                    .to_string(),
                None => host.display().to_string(),
            })
        };
        if let Some(uid) = owner {
            // The per-VM initramfs holds the app's secrets: 0600, the VM's own.
            std::os::unix::fs::chown(&spec.initrd, Some(uid), Some(uid))
                .map_err(io_error(vm, "handing the initramfs to the VM's user"))?;
        }
        let kernel = see(&spec.kernel, "kernel")?;
        let initrd = see(&spec.initrd, "initrd")?;
        let rootfs = match &spec.rootfs {
            Some(r) => Some(see(r, "rootfs")?),
            None => None,
        };
        let socket_dir = if jailed {
            spec.dir.join("sock")
        } else {
            let d = spec.dir.join("sock");
            crate::fsutil::create_private_dir(&d)
                .map_err(io_error(vm, "creating the socket directory"))?;
            d
        };
        // Each door: a Unix socket in the socket directory, and the relay
        // command QEMU runs per guest connection to reach it.
        let relay = if spec.egress.is_some() || spec.database.is_some() {
            Some(see(&spec.relay, "relay")?)
        } else {
            None
        };
        let open_door = |endpoint: &Option<EgressEndpoint>, name: &str| match (endpoint, &relay) {
            (Some(endpoint), Some(relay)) => {
                let door = Door::open(&socket_dir.join(name), endpoint.clone(), owner)
                    .map_err(io_error(vm, "opening a door (egress or database)"))?;
                let door_inside = if jailed {
                    format!("/run/vm/{name}")
                } else {
                    socket_dir.join(name).display().to_string()
                };
                Ok::<_, DriverError>((Some(door), Some(format!("{relay} --relay {door_inside}"))))
            }
            _ => Ok((None, None)),
        };
        let (door, egress_relay) = open_door(&spec.egress, "egress")?;
        let (database_door, database_relay) = open_door(&spec.database, "database")?;

        let volumes = attach_volumes(vm, &spec.volumes, plan.as_mut())?;
        // Under /usr QEMU keeps its path (and finds its firmware beside it);
        // elsewhere it is shown to the jail at /vm/qemu.
        let program = match plan.as_mut() {
            Some(p) if !spec.qemu.starts_with("/usr/") => p
                .file(&spec.qemu, "qemu")
                .map_err(io_error(vm, "preparing the jail"))?,
            _ => spec.qemu.clone(),
        };
        let mut cmd = Command::new(program);
        if let Some(p) = plan.as_mut() {
            if spec.accel == "kvm" {
                p.device(Path::new("/dev/kvm"))
                    .map_err(io_error(vm, "preparing the jail"))?;
            }
        }
        let tmp = if jailed {
            PathBuf::from("/tmp")
        } else {
            let t = spec.dir.join("tmp");
            crate::fsutil::create_private_dir(&t)
                .map_err(io_error(vm, "creating the VM's /tmp"))?;
            t
        };
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            // `snapshot=on` keeps the guest's disk writes in a file here.
            .env("TMPDIR", &tmp)
            .args(["-M", "microvm,acpi=on", "-accel", &spec.accel])
            .args(["-cpu", if spec.accel == "kvm" { "host" } else { "max" }])
            .args(["-smp", &spec.cpus.to_string()])
            .args(["-m", &spec.memory_mib.to_string()])
            .args(["-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-serial", "stdio", "-no-reboot"])
            .args(["-kernel", &kernel, "-initrd", &initrd])
            .args(["-append", &cmdline(&spec.accel)])
            .args(["-device", "virtio-rng-device"])
            .args([
                "-sandbox",
                sandbox(spec.egress.is_some() || spec.database.is_some()),
            ]);
        if let Some(r) = &rootfs {
            cmd.arg("-drive")
                .arg(format!(
                    "id=root,file={},format=raw,if=none,snapshot=on",
                    qemu_escape(r)
                ))
                .args(["-device", "virtio-blk-device,drive=root"]);
        }
        for VolumeDisk { name, path, .. } in &volumes {
            cmd.arg("-drive")
                .arg(format!(
                    "id=vol-{name},file={},format=raw,if=none",
                    qemu_escape(path)
                ))
                .arg("-device")
                .arg(format!("virtio-blk-device,drive=vol-{name}"));
        }
        let mut host_addr = None;
        let mut netdev = "user,id=net0,restrict=on".to_string();
        if let Some(port) = spec.guest_port {
            let host_port = free_port().map_err(io_error(vm, "picking a host port"))?;
            netdev.push_str(&format!(
                ",hostfwd=tcp:127.0.0.1:{host_port}-{GUEST_IP}:{port}"
            ));
            host_addr = Some(SocketAddr::from(([127, 0, 0, 1], host_port)));
        }
        if let Some(relay) = &egress_relay {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{QEMU_GUEST_ADDR}:{PROXY_PORT}-cmd:{}",
                qemu_escape(relay)
            ));
        }
        if let Some(relay) = &database_relay {
            netdev.push_str(&format!(
                ",guestfwd=tcp:{QEMU_DATABASE_ADDR}:{DATABASE_PORT}-cmd:{}",
                qemu_escape(relay)
            ));
        }
        cmd.args(["-netdev", &netdev])
            .args(["-device", "virtio-net-device,netdev=net0"]);
        let (records, theirs) =
            UnixStream::pair().map_err(io_error(vm, "creating the records channel"))?;
        cmd.args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!("socket,id=records,fd={RECORDS_FD}"))
            .arg("-device")
            .arg(format!(
                "virtserialport,chardev=records,name={RECORDS_PORT_NAME}"
            ));
        // The console, like the records, is a socket pair handed to QEMU as
        // a descriptor: no path any other process (or VM) could connect to,
        // inside the jail or out.
        let console = if spec.console {
            let (ours, theirs) =
                UnixStream::pair().map_err(io_error(vm, "creating the console channel"))?;
            cmd.arg("-chardev")
                .arg(format!("socket,id=console,fd={CONSOLE_FD}"))
                .arg("-device")
                .arg(format!(
                    "virtserialport,chardev=console,name={CONSOLE_PORT_NAME}"
                ));
            Some((ours, theirs))
        } else {
            None
        };

        tracing::info!(
            vm,
            ?host_addr,
            jailed,
            egress = spec.egress.is_some(),
            database = spec.database.is_some(),
            "qemu: starting"
        );
        let (link, events) = GuestLink::new(app_log, spec.checked_process.clone());
        let limits = Limits {
            memory_bytes: (spec.memory_mib + OVERHEAD_MIB) << 20,
            pids: MAX_TASKS,
            cpus: spec.cpus + 1,
        };
        let mut fds = vec![(OwnedFd::from(theirs), RECORDS_FD)];
        let console = console.map(|(ours, theirs)| {
            fds.push((OwnedFd::from(theirs), CONSOLE_FD));
            ours
        });
        fds.extend(volumes.into_iter().map(|v| v.lock));
        let process = VmProcess::start(Start {
            name: vm,
            program: "qemu",
            cmd,
            fds,
            dir: &spec.dir,
            jail: plan.zip(spec.jail.as_ref()).map(|(p, j)| (p, j, limits)),
            hint: " (apt-get install qemu-system-x86)",
            program_path: spec.qemu.clone(),
            link: (link.clone(), events),
        })?;
        let reader = records
            .try_clone()
            .map_err(io_error(vm, "reading the records channel"))?;
        std::thread::Builder::new()
            .name("vm-records".into())
            .spawn(move || link.read_records(reader))
            .map_err(io_error(vm, "reading the records channel"))?;
        Ok(QemuVm {
            vm: process,
            _volumes: spec.volumes.clone(),
            records,
            has_console: console.is_some(),
            console,
            _door: door,
            _database_door: database_door,
            host_addr,
        })
    }

    /// Waits for the guest init's READY.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), QemuError> {
        self.vm.wait_ready(timeout)
    }

    /// Asks the guest to stop its app and power off (`STOP` on the records
    /// port); kills QEMU after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let _ = self.records.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = self.records.write_all(b"STOP\n");
        if !self.vm.wait_exit(grace) {
            tracing::warn!(vm = %self.vm.name(), "qemu: guest did not power off in time");
        }
        self.vm.kill();
    }
}

impl super::AppVm for QemuVm {
    fn name(&self) -> &str {
        self.vm.name()
    }
    fn host_addr(&self) -> Option<SocketAddr> {
        self.host_addr
    }
    fn console_tail(&self) -> String {
        self.vm.console_tail()
    }
    fn guest(&self) -> crate::guest_link::GuestStatus {
        self.vm.guest()
    }
    fn drain_events(&mut self) -> Vec<String> {
        self.vm.drain_events()
    }
    fn exit_status(&mut self) -> Option<String> {
        self.vm.exit_status()
    }
    fn stop(&mut self, grace: Duration) {
        QemuVm::stop(self, grace)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.vm.pid())
    }
    fn take_console(&mut self) -> Option<UnixStream> {
        self.console.take()
    }
    fn resize_console(&mut self, cols: u16, rows: u16) -> bool {
        // A host request on the records port, like `STOP`: only PID 1
        // reads it, and no typed byte can become one.
        self.has_console
            && self
                .records
                .set_write_timeout(Some(Duration::from_secs(1)))
                .and_then(|()| {
                    self.records
                        .write_all(format!("WINCH {cols} {rows}\n").as_bytes())
                })
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_gets_explicit_timing() {
        assert_eq!(
            host_tsc_khz("processor : 0\ncpu MHz\t\t: 2299.998\n"),
            Some(2_299_998)
        );
        assert_eq!(host_tsc_khz("nothing"), None);
        assert!(!cmdline("kvm").contains("tsc_early_khz"));
        assert!(cmdline("kvm").starts_with("console=ttyS0"));
    }

    #[test]
    fn the_sandbox_denies_all_but_what_the_relay_needs() {
        assert!(sandbox(false).contains("spawn=deny"));
        assert!(sandbox(false).contains("elevateprivileges=deny"));
        assert!(sandbox(true).contains("spawn=allow"));
        assert!(sandbox(true).contains("obsolete=deny"));
        assert_eq!(qemu_escape("/a,b"), "/a,,b");
    }
}
