//! The `kvm` driver: BytePort's own VMM (`byteport-vmm`, from the `vmm`
//! crate) booting the same artifact as the `qemu` driver. The VMM runs as a
//! child process, one per VM, so a VM that crashes its VMM never takes
//! `byteport up` with it.
//!
//! Confinement: the jail ([`crate::jail`]: own uid, mount namespace with a
//! root of its own, cgroup, and a network namespace of its own — the VMM
//! needs no network at all), and the VMM's seccomp filter on every thread.
//! Its `/dev/kvm` is a node made for it in its jail, owned by its uid.
//!
//! Host ↔ guest traffic goes over virtio-vsock, through Unix sockets in the
//! VM's socket directory (`<dir>/sock`, `/run/vm` in the jail):
//! - records: the guest init connects to host port [`VSOCK_RECORDS_PORT`]
//!   from a privileged port; the VMM admits only such connections there
//!   (`--vsock-root-port`), so an app cannot forge records. At most
//!   [`MAX_RECORD_CONNECTIONS`] at a time; the serial console carries
//!   kernel messages only.
//! - the app's port is exposed on a loopback TCP port: each connection is
//!   proxied to the VMM socket with `CONNECT <port>`, which the guest init
//!   proxies to the app on 127.0.0.1;
//! - the app's egress proxy, if it has one: the guest init listens on
//!   `127.0.0.1:3128` in the guest and connects to host port 3128, the VM's
//!   door ([`crate::egress`]);
//! - the app's managed database, if it has one: the guest init listens on
//!   `127.0.0.1:5432` and connects to host port 5432, the VM's database
//!   door ([`crate::database`]);
//! - the app's volumes are extra read-write `--disk`s after the rootfs,
//!   each one's lock shared with the VMM ([`crate::volume`]);
//! - a stop presses the ACPI power button (`stop` on the VMM's control
//!   socket), then kills after the grace period.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guest_init::config::{VsockEgress, VsockLink, VsockProxy, VSOCK_RECORDS_PORT};

use super::guest::DriverError;
use super::vm_process::{attach_volumes, check_input, io_error, Start, VmProcess};
use super::AppLog;
use crate::database::DATABASE_PORT;
use crate::egress::{Door, EgressEndpoint, PROXY_PORT};
use crate::guest_link::GuestLink;
use crate::jail::{Jail, JailPlan, Limits};
use crate::volume::Claim;

mod control;

/// The kernel command line (the VMM adds its `virtio_mmio.device=` entries).
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=k rdinit=/init";
/// Name of the VM inside its VMM process (control socket `<sock>/vm.sock`).
const VM_NAME: &str = "vm";
/// Longest Unix socket path (`sun_path` minus the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The VMM's memory beyond guest RAM, with margin (cgroup limit).
pub const OVERHEAD_MIB: u64 = 64;
/// Tasks the VMM may have (its threads).
pub const MAX_TASKS: u32 = 64;
/// Records connections served at once (the guest init needs one).
pub const MAX_RECORD_CONNECTIONS: usize = 2;

/// Errors from the kvm driver.
pub type KvmError = DriverError;

/// What to boot.
#[derive(Debug, Clone)]
pub struct KvmSpec {
    /// The VM's name (app + deploy).
    pub name: String,
    /// The `byteport-vmm` binary (see [`find_vmm`]).
    pub vmm: PathBuf,
    /// Guest kernel (bzImage or vmlinux).
    pub kernel: PathBuf,
    /// The initramfs (base + per-VM config, from [`crate::boot::init_config`]
    /// for this driver).
    pub initrd: PathBuf,
    /// The ext4 rootfs, attached in snapshot mode: the artifact is never modified.
    pub rootfs: Option<PathBuf>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The app's port in the guest, exposed on a loopback host port.
    pub guest_port: Option<u16>,
    /// The VM's directory (short: Unix socket paths); removed when the VM's
    /// handle is dropped.
    pub dir: PathBuf,
    /// The app's egress proxy, if it may go out at all.
    pub egress: Option<EgressEndpoint>,
    /// The app's managed database (the cluster's socket), if it has one.
    pub database: Option<EgressEndpoint>,
    /// The jail, if the daemon can make one (root).
    pub jail: Option<Jail>,
    /// The process whose listening and exits the health check follows.
    pub checked_process: Option<String>,
    /// The app's volumes, claimed for this VM: each an extra read-write
    /// `--disk`; the VMM holds a share of each one's lock.
    pub volumes: Vec<Arc<Claim>>,
    /// A terminal for a one-off VM's one process ([`console`]).
    pub console: bool,
}

/// The init config's vsock link for a VM under this driver: the app's port
/// proxied from the vsock port of the same number, the egress proxy on
/// the guest's `127.0.0.1:3128` and the database on `127.0.0.1:5432` if
/// the app has them.
pub fn init_link(guest_port: Option<u16>, egress: bool, database: bool) -> VsockLink {
    VsockLink {
        proxy: guest_port.map(|p| VsockProxy {
            vsock_port: u32::from(p),
            tcp_port: p,
        }),
        egress: egress.then(|| VsockEgress {
            listen: std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, PROXY_PORT),
            host_port: u32::from(PROXY_PORT),
        }),
        database: database.then(|| VsockEgress {
            listen: std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, DATABASE_PORT),
            host_port: u32::from(DATABASE_PORT),
        }),
    }
}

/// Finds `byteport-vmm`: `$BYTEPORT_VMM`, else next to the running executable.
pub fn find_vmm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BYTEPORT_VMM") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let sibling = exe.parent()?.join("byteport-vmm");
    sibling.exists().then_some(sibling)
}

/// `byteport vm ARGS...`: runs `byteport-vmm --runtime-dir DIR ARGS...` with
/// this process's stdio and returns its exit status. The daemon's binary does
/// not link the VMM; the VM subcommands (`run`, `list`, `pause`, `resume`,
/// `stop`) and their `--help` belong to `byteport-vmm`.
pub fn run_vmm_cli(
    vmm: &Path,
    runtime_dir: &Path,
    args: &[std::ffi::OsString],
) -> std::io::Result<std::process::ExitStatus> {
    Command::new(vmm)
        .arg("--runtime-dir")
        .arg(runtime_dir)
        .args(args)
        .status()
}

/// A running VM under our VMM.
pub struct KvmVm {
    // Fields drop in this order: the doors before the VM directory goes.
    _door: Option<Door>,
    _database_door: Option<Door>,
    vm: VmProcess,
    _volumes: Vec<Arc<Claim>>,
    sock_dir: PathBuf,
    closing: Arc<AtomicBool>,
    records_socket: PathBuf,
    /// Loopback address proxied to the app's port, if any.
    pub host_addr: Option<SocketAddr>,
    console: Option<console::Console>,
}

impl KvmVm {
    /// Starts the VMM; returns once the process runs (see [`KvmVm::wait_ready`]).
    pub fn start(spec: &KvmSpec, app_log: AppLog) -> Result<KvmVm, KvmError> {
        let vm = spec.name.as_str();
        let jailed = spec.jail.is_some();
        check_input(vm, "kernel", &spec.kernel, jailed)?;
        check_input(vm, "initramfs", &spec.initrd, false)?;
        if let Some(r) = &spec.rootfs {
            check_input(vm, "rootfs", r, jailed)?;
        }
        let sock_dir = spec.dir.join("sock");
        let records_socket = sock_dir.join(format!("v_{VSOCK_RECORDS_PORT}"));
        if records_socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(DriverError::PathTooLong {
                vm: vm.to_string(),
                dir: spec.dir.clone(),
                max: MAX_SOCKET_PATH
                    - (records_socket.as_os_str().len() - spec.dir.as_os_str().len()),
            });
        }
        crate::fsutil::create_private_dir(&spec.dir)
            .map_err(io_error(vm, "creating the VM directory"))?;
        let mut plan = match &spec.jail {
            Some(j) => {
                Some(JailPlan::new(j, &spec.dir).map_err(io_error(vm, "preparing the jail"))?)
            }
            None => {
                crate::fsutil::create_private_dir(&sock_dir)
                    .map_err(io_error(vm, "creating the socket directory"))?;
                None
            }
        };
        let owner = plan.as_ref().map(JailPlan::id);
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&spec.initrd, Some(uid), Some(uid))
                .map_err(io_error(vm, "handing the initramfs to the VM's user"))?;
        }
        // Paths as the VMM sees them: inside the jail, or on the host.
        let (program, kernel, initrd, rootfs, run_dir) = match plan.as_mut() {
            Some(p) => {
                let e = |e| io_error(vm, "preparing the jail")(e);
                p.device(Path::new("/dev/kvm")).map_err(e)?;
                p.new_network();
                (
                    p.file(&spec.vmm, "byteport-vmm").map_err(e)?,
                    p.file(&spec.kernel, "kernel").map_err(e)?,
                    p.file(&spec.initrd, "initrd").map_err(e)?,
                    match &spec.rootfs {
                        Some(r) => Some(p.file(r, "rootfs").map_err(e)?),
                        None => None,
                    },
                    PathBuf::from("/run/vm"),
                )
            }
            None => (
                spec.vmm.clone(),
                spec.kernel.clone(),
                spec.initrd.clone(),
                spec.rootfs.clone(),
                sock_dir.clone(),
            ),
        };

        let volumes = attach_volumes(vm, &spec.volumes, plan.as_mut())?;
        let (link, events) = GuestLink::new(app_log, spec.checked_process.clone());
        let closing = Arc::new(AtomicBool::new(false));
        let _ = std::fs::remove_file(&records_socket);
        let records = UnixListener::bind(&records_socket)
            .map_err(io_error(vm, "binding the vsock records socket"))?;
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&records_socket, Some(uid), Some(uid))
                .map_err(io_error(vm, "handing the records socket to the VM's user"))?;
        }
        serve_records(records, link.clone(), closing.clone());
        let console = match spec.console {
            true => Some(
                console::Console::open(&sock_dir, owner)
                    .map_err(io_error(vm, "opening the console's sockets"))?,
            ),
            false => None,
        };
        let door = match &spec.egress {
            Some(endpoint) => Some(
                Door::open(
                    &sock_dir.join(format!("v_{PROXY_PORT}")),
                    endpoint.clone(),
                    owner,
                )
                .map_err(io_error(vm, "opening the egress door"))?,
            ),
            None => None,
        };
        let database_door = match &spec.database {
            Some(endpoint) => Some(
                Door::open(&database_door_path(&sock_dir), endpoint.clone(), owner)
                    .map_err(io_error(vm, "opening the database door"))?,
            ),
            None => None,
        };
        let uds = sock_dir.join("v");
        let mut host_addr = None;
        if let Some(port) = spec.guest_port {
            let l = TcpListener::bind("127.0.0.1:0")
                .map_err(io_error(vm, "binding the app's host port"))?;
            host_addr = Some(
                l.local_addr()
                    .map_err(io_error(vm, "reading the app's host port"))?,
            );
            let (uds, closing) = (uds.clone(), closing.clone());
            std::thread::spawn(move || {
                for tcp in l.incoming().flatten() {
                    if closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let uds = uds.clone();
                    std::thread::spawn(move || forward(tcp, &uds, port));
                }
            });
        }

        let mut cmd = Command::new(&program);
        cmd.env_clear()
            .arg("--runtime-dir")
            .arg(&run_dir)
            .args(["run", "--name", VM_NAME, "--kernel"])
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .args(["--cpus", &spec.cpus.to_string()])
            .args(["--mem", &spec.memory_mib.to_string()])
            .arg("--vsock")
            .arg(run_dir.join("v"))
            .args(["--vsock-root-port", &VSOCK_RECORDS_PORT.to_string()])
            .args(["--cmdline", CMDLINE]);
        if console.is_some() {
            for port in console::Console::ports() {
                cmd.args(["--vsock-root-port", &port.to_string()]);
            }
        }
        if let Some(r) = &rootfs {
            let mut d = r.as_os_str().to_owned();
            d.push(":snapshot");
            cmd.arg("--disk").arg(d);
        }
        // Volumes after the rootfs, read-write (no suffix).
        for v in &volumes {
            cmd.arg("--disk").arg(&v.path);
        }
        tracing::info!(
            vm,
            ?host_addr,
            jailed,
            egress = spec.egress.is_some(),
            database = spec.database.is_some(),
            "kvm: starting byteport-vmm"
        );
        let limits = Limits {
            memory_bytes: (spec.memory_mib + OVERHEAD_MIB) << 20,
            pids: MAX_TASKS,
            cpus: spec.cpus + 1,
        };
        let started = VmProcess::start(Start {
            name: vm,
            program: "byteport-vmm",
            cmd,
            fds: volumes.into_iter().map(|v| v.lock).collect(),
            dir: &spec.dir,
            jail: plan.zip(spec.jail.as_ref()).map(|(p, j)| (p, j, limits)),
            hint: " (cargo install --locked --path vmm --bin byteport-vmm)",
            program_path: spec.vmm.clone(),
            link: (link, events),
        });
        let process = match started {
            Ok(p) => p,
            Err(e) => {
                end_listeners(&closing, &records_socket, host_addr);
                let _ = std::fs::remove_dir_all(&spec.dir);
                return Err(e);
            }
        };
        Ok(KvmVm {
            vm: process,
            _volumes: spec.volumes.clone(),
            sock_dir,
            closing,
            records_socket,
            _door: door,
            _database_door: database_door,
            host_addr,
            console,
        })
    }

    /// Waits for the guest init's READY.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), KvmError> {
        self.vm.wait_ready(timeout)
    }

    /// Presses the guest's ACPI power button; the guest init stops the app and
    /// powers off. Kills the VMM if the guest is not off after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let sock = control::socket_path(&self.sock_dir, VM_NAME);
        let req = format!("stop {}", grace.as_millis());
        if let Err(e) = control::request(&sock, &req, grace + Duration::from_secs(5)) {
            tracing::warn!(vm = %self.vm.name(), error = %e, "kvm: graceful stop failed");
        }
        if !self.vm.wait_exit(Duration::from_secs(2)) {
            tracing::warn!(vm = %self.vm.name(), "kvm: byteport-vmm still running after stop");
        }
        self.vm.kill();
    }
}

/// The database door in the VM's socket directory: where the VMM connects
/// a guest's connection to vsock host port [`DATABASE_PORT`]
/// (`<vsock uds>_<port>`, Firecracker's convention).
pub fn database_door_path(sock_dir: &Path) -> PathBuf {
    sock_dir.join(format!("v_{DATABASE_PORT}"))
}

/// Serves guest connections to the records port (the VMM lets only guest
/// root make them), at most [`MAX_RECORD_CONNECTIONS`] at a time.
fn serve_records(l: UnixListener, link: GuestLink, closing: Arc<AtomicBool>) {
    let open = Arc::new(AtomicUsize::new(0));
    let _ = std::thread::Builder::new()
        .name("vm-records".into())
        .spawn(move || {
            for conn in l.incoming().flatten() {
                if closing.load(Ordering::SeqCst) {
                    return;
                }
                if open.fetch_add(1, Ordering::SeqCst) >= MAX_RECORD_CONNECTIONS {
                    open.fetch_sub(1, Ordering::SeqCst);
                    continue;
                }
                let (link, open) = (link.clone(), open.clone());
                std::thread::spawn(move || {
                    link.read_records(conn);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
}

/// One connection to the app: the Firecracker-style handshake on the VMM's
/// socket, then bytes both ways until each side is done.
fn forward(tcp: TcpStream, uds: &Path, port: u16) {
    let Ok(mut v) = UnixStream::connect(uds) else {
        return;
    };
    if writeln!(v, "CONNECT {port}").is_err() {
        return;
    }
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while b[0] != b'\n' {
        match v.read(&mut b) {
            Ok(1) if reply.len() < 32 => reply.push(b[0]),
            _ => return, // refused: the guest is not listening (yet)
        }
    }
    if !reply.starts_with(b"OK ") {
        return;
    }
    let (Ok(mut v2), Ok(mut t2)) = (v.try_clone(), tcp.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let (mut t, mut v) = (tcp, v);
        let _ = std::io::copy(&mut t, &mut v);
        let _ = v.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut v2, &mut t2);
    let _ = t2.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl super::AppVm for KvmVm {
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
        KvmVm::stop(self, grace)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.vm.pid())
    }
    fn take_console(&mut self) -> Option<UnixStream> {
        // The guest init connects before its READY; the accept thread may
        // still be handing the connection over.
        self.console.as_mut()?.take(Duration::from_secs(10))
    }
    fn resize_console(&mut self, cols: u16, rows: u16) -> bool {
        self.console.as_mut().is_some_and(|c| c.resize(cols, rows))
    }
}

impl Drop for KvmVm {
    fn drop(&mut self) {
        // The VMM first (VmProcess's drop, after this), then the listeners.
        self.vm.kill();
        end_listeners(&self.closing, &self.records_socket, self.host_addr);
    }
}

/// Ends the accept loops of the records socket and the forwarded port (they
/// wake on a connection and see `closing`), and removes the records socket.
fn end_listeners(closing: &AtomicBool, records_socket: &Path, host_addr: Option<SocketAddr>) {
    closing.store(true, Ordering::SeqCst);
    let _ = UnixStream::connect(records_socket);
    if let Some(a) = host_addr {
        let _ = TcpStream::connect(a);
    }
    let _ = std::fs::remove_file(records_socket);
}

pub mod console;
#[cfg(test)]
mod tests;
