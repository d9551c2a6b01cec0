//! The `qemu` driver: QEMU's `microvm` machine booting the same artifact
//! as the `kvm` driver. App traffic reaches the guest through user-mode
//! networking with a loopback port forward (no vhost-vsock needed); the
//! serial console carries the guest init's log records and events, and
//! the stop request.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The guest address QEMU's user-mode network gives the first interface.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The user-mode network's gateway.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// Errors from the QEMU driver.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// QEMU could not be started.
    #[error("cannot start {qemu} for VM `{vm}` (apt-get install qemu-system-x86)")]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// The VM.
        vm: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is missing.
    #[error("VM `{vm}`: {what} {path} does not exist")]
    Missing {
        /// The VM.
        vm: String,
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The guest did not report READY in time.
    #[error("VM `{vm}` did not become ready within {seconds}s; last console lines:\n{tail}")]
    NotReady {
        /// The VM.
        vm: String,
        /// The timeout.
        seconds: u64,
        /// The console's last lines.
        tail: String,
    },
    /// The guest init failed or QEMU exited before READY.
    #[error("VM `{vm}` failed to boot: {reason}")]
    BootFailed {
        /// The VM.
        vm: String,
        /// The guest's FATAL line or QEMU's exit.
        reason: String,
    },
    /// I/O while preparing the VM.
    #[error("VM `{vm}`: {context}")]
    Io {
        /// The VM.
        vm: String,
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

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
    /// Where the whole console is written.
    pub console_log: PathBuf,
    /// `tcg` or `kvm`.
    pub accel: String,
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

/// A line the guest init produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestLine {
    /// An app process wrote a line: (process, stream, text).
    App {
        /// `web` or a worker's name.
        process: String,
        /// `out` or `err`.
        stream: String,
        /// The line.
        text: String,
    },
    /// An init event: READY, STARTED, EXITED, RESTART, FATAL, POWEROFF...
    Event(String),
    /// Anything else on the console (kernel messages).
    Console(String),
}

/// Parses one console line.
pub fn parse_line(line: &str) -> GuestLine {
    let line = line.trim_end_matches(['\r', '\n']);
    // Serial output may carry kernel noise before the record on the same line.
    if let Some(at) = line.find("[bp ") {
        let rest = &line[at + 4..];
        if let Some((head, text)) = rest.split_once("] ") {
            let parts: Vec<&str> = head.split(' ').collect();
            if parts.len() == 3 && parts[0].chars().all(|c| c.is_ascii_digit()) {
                return if parts[1] == "init" && parts[2] == "evt" {
                    GuestLine::Event(text.to_string())
                } else {
                    GuestLine::App {
                        process: parts[1].to_string(),
                        stream: parts[2].to_string(),
                        text: text.to_string(),
                    }
                };
            }
        }
    }
    GuestLine::Console(line.to_string())
}

pub use super::AppLog;

/// A running QEMU VM.
pub struct QemuVm {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<String>,
    tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
    /// Loopback address forwarded to the app's port, if any.
    pub host_addr: Option<SocketAddr>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl QemuVm {
    /// Starts QEMU; returns once the process runs (see [`QemuVm::wait_ready`]).
    pub fn start(spec: &QemuSpec, app_log: AppLog) -> Result<QemuVm, QemuError> {
        let missing = |what, path: &Path| QemuError::Missing {
            vm: spec.name.clone(),
            what,
            path: path.into(),
        };
        if !spec.kernel.exists() {
            return Err(missing("kernel", &spec.kernel));
        }
        if !spec.initrd.exists() {
            return Err(missing("initramfs", &spec.initrd));
        }
        let io = |context: &str| {
            let vm = spec.name.clone();
            let context = context.to_string();
            move |source| QemuError::Io {
                vm,
                context,
                source,
            }
        };
        let mut cmd = Command::new(&spec.qemu);
        cmd.args(["-M", "microvm,acpi=on", "-accel", &spec.accel])
            .args(["-cpu", if spec.accel == "kvm" { "host" } else { "max" }])
            .args([
                "-smp",
                &spec.cpus.to_string(),
                "-m",
                &spec.memory_mib.to_string(),
            ])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-monitor",
                "none",
            ])
            .args(["-serial", "stdio", "-no-reboot"])
            .arg("-kernel")
            .arg(&spec.kernel)
            .arg("-initrd")
            .arg(&spec.initrd)
            .arg("-append")
            .arg(cmdline(&spec.accel))
            .args(["-device", "virtio-rng-device"]);
        if let Some(rootfs) = &spec.rootfs {
            if !rootfs.exists() {
                return Err(missing("rootfs", rootfs));
            }
            cmd.arg("-drive")
                .arg(format!(
                    "id=root,file={},format=raw,if=none,snapshot=on",
                    rootfs.display()
                ))
                .args(["-device", "virtio-blk-device,drive=root"]);
        }
        let mut host_addr = None;
        let mut netdev = "user,id=net0".to_string();
        if let Some(port) = spec.guest_port {
            let host_port = free_port().map_err(io("picking a host port"))?;
            netdev.push_str(&format!(
                ",hostfwd=tcp:127.0.0.1:{host_port}-{GUEST_IP}:{port}"
            ));
            host_addr = Some(SocketAddr::from(([127, 0, 0, 1], host_port)));
        }
        cmd.args([
            "-netdev",
            &netdev,
            "-device",
            "virtio-net-device,netdev=net0",
        ]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::info!(vm = %spec.name, ?host_addr, "qemu: starting");
        let mut child = cmd.spawn().map_err(|source| QemuError::Spawn {
            qemu: spec.qemu.clone(),
            vm: spec.name.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = child.stdin.take();
        let mut console =
            std::fs::File::create(&spec.console_log).map_err(io("creating the console log"))?;
        let (tx, events) = mpsc::channel();
        let tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>> = Arc::default();
        let tail_w = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(console, "{line}");
                {
                    let mut t = tail_w.lock().unwrap_or_else(|p| p.into_inner());
                    t.push_back(line.clone());
                    if t.len() > 40 {
                        t.pop_front();
                    }
                }
                match parse_line(&line) {
                    GuestLine::App {
                        process,
                        stream,
                        text,
                    } => app_log(&process, &stream, &text),
                    GuestLine::Event(e) => {
                        let _ = tx.send(e);
                    }
                    GuestLine::Console(_) => {}
                }
            }
        });
        let tail_e = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tail_e
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_back(format!("qemu: {line}"));
            }
        });
        Ok(QemuVm {
            name: spec.name.clone(),
            child,
            stdin,
            events,
            tail,
            host_addr,
        })
    }

    /// The console's last lines (for error messages).
    pub fn console_tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Waits for the guest init's READY event.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(e) if e == "READY" => return Ok(()),
                Ok(e) if e.starts_with("FATAL") => {
                    return Err(QemuError::BootFailed {
                        vm: self.name.clone(),
                        reason: e,
                    })
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(QemuError::BootFailed {
                            vm: self.name.clone(),
                            reason: format!(
                                "qemu exited with {status}; console:\n{}",
                                self.console_tail()
                            ),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Err(QemuError::NotReady {
                            vm: self.name.clone(),
                            seconds: timeout.as_secs(),
                            tail: self.console_tail(),
                        });
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    return Err(QemuError::BootFailed {
                        vm: self.name.clone(),
                        reason: format!(
                            "qemu exited ({status:?}); console:\n{}",
                            self.console_tail()
                        ),
                    });
                }
            }
        }
    }

    /// Init events received since the last call (EXITED, RESTART, ...).
    pub fn drain_events(&self) -> Vec<String> {
        self.events.try_iter().collect()
    }

    /// Has QEMU exited?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Asks the guest to stop its app and power off; kills QEMU after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"\nBYTEPORT-STOP\n");
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(vm = %self.name, "qemu: guest did not power off in time; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl super::AppVm for QemuVm {
    fn name(&self) -> &str {
        &self.name
    }

    fn host_addr(&self) -> Option<SocketAddr> {
        self.host_addr
    }

    fn console_tail(&self) -> String {
        QemuVm::console_tail(self)
    }

    fn drain_events(&mut self) -> Vec<String> {
        QemuVm::drain_events(self)
    }

    fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("qemu exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("cannot query qemu: {e}")),
        }
    }

    fn stop(&mut self, grace: Duration) {
        QemuVm::stop(self, grace)
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
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
    fn console_lines_parse() {
        assert_eq!(
            parse_line("[bp 1700000000000 web out] hello world\r"),
            GuestLine::App {
                process: "web".into(),
                stream: "out".into(),
                text: "hello world".into()
            }
        );
        assert_eq!(
            parse_line("[bp 1 init evt] READY"),
            GuestLine::Event("READY".into())
        );
        assert_eq!(
            parse_line("[    0.123] virtio_blk virtio0: [vda] 2048 512-byte logical blocks"),
            GuestLine::Console(
                "[    0.123] virtio_blk virtio0: [vda] 2048 512-byte logical blocks".into()
            )
        );
        // Hostile app output cannot forge an init event: its records carry its own name.
        assert!(matches!(
            parse_line("[bp 1 web out] [bp 1 init evt] READY"),
            GuestLine::App { .. }
        ));
        assert!(matches!(parse_line("[bp x y z] q"), GuestLine::Console(_)));
        assert!(matches!(parse_line("[bp 1 web] q"), GuestLine::Console(_)));
    }
}
