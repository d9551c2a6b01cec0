//! `byteport vm ...`: run a VM in the foreground, list VMs, pause/resume/stop them
//! through their control sockets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Subcommand;

use crate::vmm::control::{self, ControlError};
use crate::vmm::{BootSource, ConsoleOutput, DiskConfig, Vm, VmConfig, VmError, VmExit};

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
        /// virtio-blk disk image (repeatable; `PATH:ro` for read-only).
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
        /// Host Unix socket for the guest's vsock (reserved; see crate docs).
        #[arg(long)]
        vsock: Option<PathBuf>,
        /// Serial console log file (default: stdout).
        #[arg(long)]
        console: Option<PathBuf>,
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
    /// Stop a VM.
    Stop {
        /// VM name.
        name: String,
    },
}

/// Errors from `byteport vm`.
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
    /// Unsupported option.
    #[error("{0}")]
    Unsupported(String),
}

fn parse_disk(s: &str) -> DiskConfig {
    match s.strip_suffix(":ro") {
        Some(p) => DiskConfig {
            path: p.into(),
            read_only: true,
        },
        None => DiskConfig {
            path: s.into(),
            read_only: false,
        },
    }
}

/// Runs one `byteport vm` subcommand.
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
            console,
            name,
        } => {
            if vsock.is_some() {
                return Err(CliError::Unsupported(
                    "--vsock: virtio-vsock is not implemented yet".into(),
                ));
            }
            let cfg = VmConfig {
                boot: BootSource::Linux {
                    kernel,
                    initrd,
                    cmdline,
                },
                cpus,
                mem_mib: mem,
                console: console.map_or(ConsoleOutput::Stdout, ConsoleOutput::File),
                disks: disk.iter().map(|d| parse_disk(d)).collect(),
                rng: true,
            };
            std::fs::create_dir_all(runtime_dir)
                .map_err(io(format!("creating {}", runtime_dir.display())))?;
            let sock = control::socket_path(runtime_dir, &name);
            let _ = std::fs::remove_file(&sock);
            let listener = std::os::unix::net::UnixListener::bind(&sock)
                .map_err(io(format!("binding {}", sock.display())))?;
            let vm = Arc::new(Mutex::new(Some(Vm::start(cfg)?)));
            let server_vm = vm.clone();
            std::thread::spawn(move || control::serve(listener, server_vm, name));
            let exit = loop {
                let slot = vm.lock().unwrap_or_else(|p| p.into_inner());
                match slot.as_ref() {
                    None => break VmExit::Killed,
                    Some(v) => {
                        if let Some(e) = v.wait_timeout(std::time::Duration::from_millis(100)) {
                            break e;
                        }
                    }
                }
            };
            if let Some(v) = vm.lock().unwrap_or_else(|p| p.into_inner()).take() {
                v.shutdown();
            }
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
        VmCommand::Stop { name } => simple(runtime_dir, &name, "stop"),
    }
}

fn simple(runtime_dir: &Path, name: &str, req: &str) -> Result<(), CliError> {
    let v = control::request(&control::socket_path(runtime_dir, name), req)?;
    println!("{v}");
    Ok(())
}
