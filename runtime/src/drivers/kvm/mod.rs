//! The `kvm` driver: BytePort's own VMM (the `vmm` crate's `byteport-vmm`) booting the same artifact
//! as the `qemu` driver. The VMM runs as a child process (`byteport-vmm run`, in
//! the spirit of Firecracker's jailer), so a VM that crashes its VMM never takes
//! `byteport up` with it; each VMM thread is confined by seccomp.
//!
//! Host ↔ guest traffic goes over virtio-vsock, through the VMM's Unix socket:
//! - the guest init connects to host port [`VSOCK_LOG_PORT`] and ships its log
//!   records (`[bp ...]` lines) there; the serial console stays the fallback and
//!   still carries kernel messages;
//! - the app's port is exposed on a loopback TCP port: each connection is
//!   proxied to the VMM socket with `CONNECT <port>`, which the guest init
//!   proxies to the app on 127.0.0.1;
//! - a stop presses the ACPI power button (`stop` on the VMM's control socket),
//!   then kills after the grace period.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guest_init::config::{VsockLink, VsockProxy, VSOCK_LOG_PORT};

use super::guest::{self, ConsoleTail, DriverError};
use super::qemu::{parse_line, GuestLine};
use super::AppLog;

mod control;

/// The kernel command line (the VMM adds its `virtio_mmio.device=` entries).
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=k rdinit=/init";
/// Name of the VM inside its VMM process (control socket `<dir>/vm.sock`).
const VM_NAME: &str = "vm";
/// Longest Unix socket path (`sun_path` minus the NUL), with room for `_<port>`.
const MAX_SOCKET_PATH: usize = 107 - 11;

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
    /// The initramfs (base + per-VM config; the init config's `vsock` set from
    /// [`init_link`], `network` unset, and [`POWER_BUTTON_MODULES`] loaded).
    ///
    /// [`POWER_BUTTON_MODULES`]: crate::initramfs::POWER_BUTTON_MODULES
    pub initrd: PathBuf,
    /// The ext4 rootfs, attached in snapshot mode: the artifact is never modified.
    pub rootfs: Option<PathBuf>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The app's port in the guest, exposed on a loopback host port.
    pub guest_port: Option<u16>,
    /// The VM's directory: sockets and `console.log` (short: Unix socket paths).
    pub dir: PathBuf,
}

/// The init config's host link for a VM under this driver: logs over vsock and
/// the app's port proxied from the vsock port of the same number.
pub fn init_link(guest_port: Option<u16>) -> VsockLink {
    VsockLink {
        log_port: VSOCK_LOG_PORT,
        proxy: guest_port.map(|p| VsockProxy {
            vsock_port: u32::from(p),
            tcp_port: p,
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

/// Routes one guest line: app output to the log callback, events to the channel.
fn route(line: &str, app_log: &AppLog, events: &Sender<String>) {
    match parse_line(line) {
        GuestLine::App {
            process,
            stream,
            text,
        } => app_log(&process, &stream, &text),
        GuestLine::Event(e) => {
            let _ = events.send(e);
        }
        GuestLine::Console(_) => {}
    }
}

/// A running VM under our VMM.
pub struct KvmVm {
    name: String,
    child: Child,
    dir: PathBuf,
    events: Receiver<String>,
    tail: ConsoleTail,
    closing: Arc<AtomicBool>,
    vsock_records: Arc<AtomicU64>,
    log_socket: PathBuf,
    /// Loopback address proxied to the app's port, if any.
    pub host_addr: Option<SocketAddr>,
}

impl KvmVm {
    /// Starts the VMM; returns once the process runs (see [`KvmVm::wait_ready`]).
    pub fn start(spec: &KvmSpec, app_log: AppLog) -> Result<KvmVm, KvmError> {
        let vm = spec.name.clone();
        let missing = |what, path: &Path| DriverError::Missing {
            vm: vm.clone(),
            what,
            path: path.into(),
        };
        for (what, p) in [("kernel", &spec.kernel), ("initramfs", &spec.initrd)] {
            if !p.exists() {
                return Err(missing(what, p));
            }
        }
        if let Some(r) = spec.rootfs.as_ref().filter(|r| !r.exists()) {
            return Err(missing("rootfs", r));
        }
        let io = |context: &str| {
            let (vm, context) = (vm.clone(), context.to_string());
            move |source| DriverError::Io {
                vm,
                context,
                source,
            }
        };
        std::fs::create_dir_all(&spec.dir).map_err(io("creating the VM directory"))?;
        let uds = spec.dir.join("v");
        if uds.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(DriverError::PathTooLong {
                vm,
                dir: spec.dir.clone(),
                max: MAX_SOCKET_PATH - 2,
            });
        }
        let (tx, events) = mpsc::channel();
        let tail = ConsoleTail::default();
        let closing = Arc::new(AtomicBool::new(false));
        let vsock_records = Arc::new(AtomicU64::new(0));

        // The log link: guest connections to host port VSOCK_LOG_PORT land here.
        let log_socket = PathBuf::from(format!("{}_{VSOCK_LOG_PORT}", uds.display()));
        let _ = std::fs::remove_file(&log_socket);
        let logs = UnixListener::bind(&log_socket).map_err(io("binding the vsock log socket"))?;
        {
            let (app_log, tx, closing, n) = (
                app_log.clone(),
                tx.clone(),
                closing.clone(),
                vsock_records.clone(),
            );
            std::thread::spawn(move || {
                for conn in logs.incoming().flatten() {
                    if closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let (app_log, tx, n) = (app_log.clone(), tx.clone(), n.clone());
                    std::thread::spawn(move || {
                        for line in BufReader::new(conn).lines().map_while(Result::ok) {
                            n.fetch_add(1, Ordering::Relaxed);
                            route(&line, &app_log, &tx);
                        }
                    });
                }
            });
        }

        let mut host_addr = None;
        if let Some(port) = spec.guest_port {
            let l = TcpListener::bind("127.0.0.1:0").map_err(io("binding the app's host port"))?;
            host_addr = Some(l.local_addr().map_err(io("reading the app's host port"))?);
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

        let mut cmd = Command::new(&spec.vmm);
        cmd.arg("--runtime-dir")
            .arg(&spec.dir)
            .args(["run", "--name", VM_NAME, "--kernel"])
            .arg(&spec.kernel)
            .arg("--initrd")
            .arg(&spec.initrd)
            .args(["--cpus", &spec.cpus.to_string()])
            .args(["--mem", &spec.memory_mib.to_string()])
            .arg("--vsock")
            .arg(&uds)
            .args(["--cmdline", CMDLINE]);
        if let Some(r) = &spec.rootfs {
            let mut d = r.as_os_str().to_owned();
            d.push(":snapshot");
            cmd.arg("--disk").arg(d);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::info!(vm = %spec.name, ?host_addr, "kvm: starting byteport-vmm");
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(source) => {
                end_listeners(&closing, &log_socket, host_addr);
                return Err(DriverError::Spawn {
                    program: spec.vmm.clone(),
                    vm: vm.clone(),
                    hint: " (cargo install --locked --path runtime --bin byteport-vmm)",
                    source,
                });
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut console = std::fs::File::create(spec.dir.join("console.log"))
            .map_err(io("creating the console log"))?;
        let (tail_c, tx_c) = (tail.clone(), tx);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(console, "{line}");
                tail_c.push(line.clone());
                route(&line, &app_log, &tx_c);
            }
        });
        let tail_e = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tail_e.push(format!("byteport-vmm: {line}"));
            }
        });
        Ok(KvmVm {
            name: spec.name.clone(),
            child,
            dir: spec.dir.clone(),
            events,
            tail,
            closing,
            vsock_records,
            log_socket,
            host_addr,
        })
    }

    /// The console's last lines (for error messages).
    pub fn console_tail(&self) -> String {
        self.tail.text()
    }

    /// Log records that came over the vsock link (not the serial console).
    pub fn vsock_records(&self) -> u64 {
        self.vsock_records.load(Ordering::Relaxed)
    }

    /// Waits for the guest init's READY event.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), KvmError> {
        let child = &mut self.child;
        guest::wait_ready(
            &self.name,
            &self.events,
            timeout,
            || vmm_exit(child),
            &self.tail,
        )
    }

    /// Init events received since the last call (EXITED, RESTART, ...).
    pub fn drain_events(&self) -> Vec<String> {
        self.events.try_iter().collect()
    }

    /// `None` while the VMM runs; how it ended once it has.
    pub fn exit_status(&mut self) -> Option<String> {
        vmm_exit(&mut self.child)
    }

    /// Presses the guest's ACPI power button; the guest init stops the app and
    /// powers off. Kills the VMM if the guest is not off after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let sock = control::socket_path(&self.dir, VM_NAME);
        let req = format!("stop {}", grace.as_millis());
        if let Err(e) = control::request(&sock, &req, grace + Duration::from_secs(5)) {
            tracing::warn!(vm = %self.name, error = %e, "kvm: graceful stop failed");
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(vm = %self.name, "kvm: byteport-vmm still running after stop; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `None` while the VMM process runs; how it ended once it has.
fn vmm_exit(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(format!("byteport-vmm exited ({status})")),
        Ok(None) => None,
        Err(e) => Some(format!("cannot query byteport-vmm: {e}")),
    }
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
        &self.name
    }
    fn host_addr(&self) -> Option<SocketAddr> {
        self.host_addr
    }
    fn console_tail(&self) -> String {
        KvmVm::console_tail(self)
    }
    fn drain_events(&mut self) -> Vec<String> {
        KvmVm::drain_events(self)
    }
    fn exit_status(&mut self) -> Option<String> {
        KvmVm::exit_status(self)
    }
    fn stop(&mut self, grace: Duration) {
        KvmVm::stop(self, grace)
    }
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for KvmVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        end_listeners(&self.closing, &self.log_socket, self.host_addr);
    }
}

/// Ends the accept loops of the log socket and the forwarded port (they wake
/// on a connection and see `closing`), and removes the log socket.
fn end_listeners(closing: &AtomicBool, log_socket: &Path, host_addr: Option<SocketAddr>) {
    closing.store(true, Ordering::SeqCst);
    let _ = UnixStream::connect(log_socket);
    if let Some(a) = host_addr {
        let _ = TcpStream::connect(a);
    }
    let _ = std::fs::remove_file(log_socket);
}

#[cfg(test)]
mod tests;
