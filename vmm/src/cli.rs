//! The `byteport-vmm` command line (also what `byteport vm ...` runs): run a VM
//! in the foreground, list VMs, pause/resume/stop them through their control
//! sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use crate::control::{self, ControlError};
use crate::devices::virtio::block::DiskMode;
use crate::seccomp::{self, ThreadKind};
use crate::{
    BootSource, ConsoleInput, ConsoleOutput, DiskConfig, Vm, VmConfig, VmError, VmExit, VsockConfig,
};

/// VM subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot a Linux VM and wait until it stops.
    Run {
        /// Kernel image (bzImage or vmlinux).
        #[arg(long)]
        kernel: PathBuf,
        /// Initramfs.
        #[arg(long)]
        initrd: Option<PathBuf>,
        /// virtio-blk disk image (repeatable; `PATH:ro` for read-only,
        /// `PATH:snapshot` to keep the guest's writes in a private overlay).
        #[arg(long)]
        disk: Vec<String>,
        /// Number of vCPUs.
        #[arg(long, default_value_t = 1)]
        cpus: u8,
        /// Guest memory in MiB.
        #[arg(long, default_value_t = 256)]
        mem: u64,
        /// Kernel command line.
        #[arg(long, default_value = "console=ttyS0 reboot=k panic=-1")]
        cmdline: String,
        /// Host Unix socket of a virtio-vsock device: host programs connect and
        /// write `CONNECT <port>\n`; guest connections to host port P go to `PATH_P`.
        #[arg(long)]
        vsock: Option<PathBuf>,
        /// Guest context id of the vsock device.
        #[arg(long, default_value_t = 3)]
        cid: u64,
        /// A host vsock port only the guest's root may connect to (from a guest
        /// source port below 1024); repeatable.
        #[arg(long = "vsock-root-port")]
        vsock_root_ports: Vec<u32>,
        /// Serial console log file (default: stdout).
        #[arg(long)]
        console: Option<PathBuf>,
        /// Serial console input: `stdin`, or a Unix socket path to listen on (one
        /// client at a time; it also gets the console output).
        #[arg(long)]
        console_input: Option<String>,
        /// VM name (control socket `<runtime_dir>/<name>.sock`).
        #[arg(long, default_value = "vm")]
        name: String,
    },
    /// List VMs with a control socket under the runtime directory.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a VM.
    Pause {
        /// VM name.
        name: String,
    },
    /// Resume a paused VM.
    Resume {
        /// VM name.
        name: String,
    },
    /// Stop a VM: press its ACPI power button, wait for it to power off, kill
    /// it if it has not after the grace period.
    Stop {
        /// VM name.
        name: String,
        /// Kill at once instead.
        #[arg(long)]
        force: bool,
        /// Seconds the guest gets to power off.
        #[arg(long, default_value_t = 30)]
        grace: u64,
    },
}

/// Errors from `byteport-vmm`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Starting or running the VM failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Control socket error.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Host I/O error.
    #[error("{what}: {source}")]
    Io {
        /// Operation.
        what: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The guest ended abnormally.
    #[error("VM ended: {0:?}")]
    Guest(VmExit),
    /// Confining the main thread failed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
}

fn parse_disk(s: &str) -> DiskConfig {
    let (path, mode) = if let Some(p) = s.strip_suffix(":ro") {
        (p, DiskMode::ReadOnly)
    } else if let Some(p) = s.strip_suffix(":snapshot") {
        (p, DiskMode::Snapshot)
    } else {
        (s, DiskMode::ReadWrite)
    };
    DiskConfig {
        path: path.into(),
        mode,
    }
}

/// Runs one `byteport-vmm` subcommand.
pub fn run(cmd: VmCommand, runtime_dir: &Path) -> Result<(), CliError> {
    let io = |what: String| move |source| CliError::Io { what, source };
    match cmd {
        VmCommand::Run {
            kernel,
            initrd,
            disk,
            cpus,
            mem,
            cmdline,
            vsock,
            cid,
            vsock_root_ports,
            console,
            console_input,
            name,
        } => {
            let cfg = VmConfig {
                boot: BootSource::Linux {
                    kernel,
                    initrd,
                    cmdline,
                },
                cpus,
                mem_mib: mem,
                console: console.map_or(ConsoleOutput::Stdout, ConsoleOutput::File),
                console_input: match console_input.as_deref() {
                    None => ConsoleInput::None,
                    Some("stdin") => ConsoleInput::Stdin,
                    Some(p) => ConsoleInput::Socket(p.into()),
                },
                disks: disk.iter().map(|d| parse_disk(d)).collect(),
                rng: true,
                vsock: vsock.map(|uds_path| VsockConfig {
                    guest_cid: cid,
                    uds_path,
                    root_ports: vsock_root_ports,
                }),
            };
            std::fs::create_dir_all(runtime_dir)
                .map_err(io(format!("creating {}", runtime_dir.display())))?;
            let sock = control::socket_path(runtime_dir, &name);
            let listener =
                control::bind(&sock).map_err(io(format!("binding {}", sock.display())))?;
            // SAFETY: no preconditions; read before the control thread is confined.
            let owner = unsafe { libc::geteuid() };
            let vm = match Vm::start(cfg) {
                Ok(vm) => Arc::new(vm),
                Err(e) => {
                    let _ = std::fs::remove_file(&sock);
                    return Err(e.into());
                }
            };
            let server_vm = vm.clone();
            let (served_tx, served) = std::sync::mpsc::channel::<()>();
            std::thread::Builder::new()
                .name("vmm-control".into())
                .spawn(move || {
                    match seccomp::apply_for(ThreadKind::Control) {
                        Ok(()) => control::serve(listener, server_vm, name, owner),
                        Err(e) => tracing::error!(error = %e, "control socket not served"),
                    }
                    let _ = served_tx.send(());
                })
                .map_err(io("spawning the control thread".into()))?;
            // The process's main thread is confined too (when `run` is called
            // from another thread, as in tests, that thread is left alone).
            // SAFETY: plain syscalls without arguments.
            if unsafe { libc::gettid() == libc::getpid() } {
                if let Err(e) = seccomp::apply_for(ThreadKind::Main) {
                    vm.kill();
                    let _ = std::fs::remove_file(&sock);
                    return Err(e.into());
                }
            }
            let exit = vm.wait();
            // Let the control thread answer a pending `stop` before the process ends.
            let _ = served.recv_timeout(Duration::from_secs(2));
            let _ = std::fs::remove_file(&sock);
            match exit {
                VmExit::PowerOff | VmExit::Reboot | VmExit::Killed => Ok(()),
                other => Err(CliError::Guest(other)),
            }
        }
        VmCommand::List { json } => {
            let mut vms = Vec::new();
            if let Ok(rd) = std::fs::read_dir(runtime_dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "sock") {
                        match control::request(&p, "status") {
                            Ok(v) => vms.push(v),
                            Err(_) => {
                                // Stale socket from a VMM that died.
                                let _ = std::fs::remove_file(&p);
                            }
                        }
                    }
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(vms));
            } else {
                for v in vms {
                    println!(
                        "{}\t{}",
                        v["name"].as_str().unwrap_or("?"),
                        v["state"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(())
        }
        VmCommand::Pause { name } => simple(runtime_dir, &name, "pause"),
        VmCommand::Resume { name } => simple(runtime_dir, &name, "resume"),
        VmCommand::Stop { name, force, grace } => {
            let sock = control::socket_path(runtime_dir, &name);
            let v = if force {
                control::request(&sock, "kill")?
            } else {
                let grace = Duration::from_secs(grace);
                control::request_with_timeout(
                    &sock,
                    &format!("stop {}", grace.as_millis()),
                    grace + Duration::from_secs(30),
                )?
            };
            println!("{v}");
            Ok(())
        }
    }
}

fn simple(runtime_dir: &Path, name: &str, req: &str) -> Result<(), CliError> {
    let v = control::request(&control::socket_path(runtime_dir, name), req)?;
    println!("{v}");
    Ok(())
}
