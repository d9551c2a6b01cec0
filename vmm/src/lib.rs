//! `vmm`: BytePort's own virtual machine monitor on KVM — one virtual machine
//! per [`Vm`], built from a [`VmConfig`], and the `byteport-vmm` binary ([`cli`])
//! that runs one VM per process. The runtime's `kvm` driver spawns that binary;
//! nothing else links this crate, so the daemon carries no KVM device code.
//!
//! Flow of data, module by module:
//!
//! 1. `builder` (private) assembles the machine in boot order: guest RAM
//!    ([`memory`]), in-kernel irqchip and PIT, devices ([`devices`]) with their
//!    irqfds and ioeventfds, ACPI tables ([`acpi`]), the kernel and zero page
//!    ([`kernel`]; a page-aligned bzImage is mapped copy-on-write rather than
//!    copied, [`bzimage`]), configured vCPUs ([`vcpu`], [`cpuid`]).
//! 2. `run` starts the threads of a [`Vm`]: one per vCPU, routing port/MMIO exits
//!    to the [`devices::Bus`] (register accesses only), and one event loop thread
//!    ([`event_loop`]) that does all device work — virtio queues (woken by KVM
//!    ioeventfds on `QueueNotify`), the vsock host sockets, console input.
//!    Interrupts go back through irqfds.
//! 3. Devices: 8250 COM1 with console output and input ([`devices::serial`]), the
//!    ACPI power button ([`devices::ged`]), virtio-mmio ([`devices::virtio::mmio`])
//!    carrying blk (read-write, read-only or snapshot), rng and vsock
//!    ([`devices::virtio::vsock`], host side on Unix sockets).
//! 4. Control: [`Vm`] pause/resume/stop (power button, grace period, kill)/wait;
//!    [`control`] serves the per-VM control socket; [`seccomp`] confines every
//!    thread once setup is over; [`startup`] accounts start-up CPU time.
//!
//! Guest shutdown and reboot (ACPI sleep register, i8042 reset, triple fault)
//! stop the VM and are reported as [`VmExit`]. The FADT declares no VGA and no
//! CMOS RTC (the guest's wall clock comes from kvm-clock). Limits: x86_64 only;
//! no PCI, no virtio-net (apps are reached over vsock), no snapshots of the VM
//! itself, no live migration.

#![deny(missing_docs)]

pub mod acpi;
mod builder;
pub mod bzimage;
pub mod cli;
pub mod control;
pub mod cpuid;
pub mod devices;
pub mod event_loop;
pub mod kernel;
pub mod memory;
mod run;
pub mod seccomp;
pub mod startup;
pub mod vcpu;

pub use run::{Vm, VmExit, VmState};

use std::path::PathBuf;

/// What the guest boots.
#[derive(Debug, Clone)]
pub enum BootSource {
    /// A Linux kernel (bzImage or ELF vmlinux) through the 64-bit boot protocol.
    Linux {
        /// Kernel image.
        kernel: PathBuf,
        /// Optional initramfs.
        initrd: Option<PathBuf>,
        /// Kernel command line.
        cmdline: String,
    },
    /// Raw 64-bit machine code loaded at `load_addr` and entered there in long mode
    /// with the identity page tables (first GiB). Used for tiny test guests.
    RawCode {
        /// Code bytes.
        code: Vec<u8>,
        /// Guest physical load and entry address (must be ≥ 1 MiB).
        load_addr: u64,
    },
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, Default)]
pub enum ConsoleOutput {
    /// Discard.
    #[default]
    Null,
    /// Append to a file (created if missing).
    File(PathBuf),
    /// The VMM process's stdout.
    Stdout,
}

/// Where the guest's serial console input comes from.
#[derive(Debug, Clone, Default)]
pub enum ConsoleInput {
    /// No input.
    #[default]
    None,
    /// The VMM process's stdin (bytes are passed through as they come).
    Stdin,
    /// A Unix socket the VMM listens on; one client at a time gets the console
    /// (its bytes are input, console output is copied to it).
    Socket(PathBuf),
}

/// virtio-vsock with its host side on Unix sockets (Firecracker's scheme).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    /// The guest's context id (3 or more).
    pub guest_cid: u64,
    /// Host socket: host programs connect here and write `CONNECT <port>\n`;
    /// guest connections to host port P go to `<uds_path>_P`.
    pub uds_path: PathBuf,
    /// Host ports only the guest's root may connect to (from a guest source
    /// port below 1024, which needs `CAP_NET_BIND_SERVICE` to bind): the
    /// guest init's log and event channel, which an app must not forge.
    pub root_ports: Vec<u32>,
}

/// Everything needed to start a VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// What to boot.
    pub boot: BootSource,
    /// Number of vCPUs (1..=32).
    pub cpus: u8,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Serial console destination.
    pub console: ConsoleOutput,
    /// Serial console input.
    pub console_input: ConsoleInput,
    /// virtio-blk disks, in order (the guest sees vda, vdb, ...).
    pub disks: Vec<DiskConfig>,
    /// Whether to add a virtio-rng device.
    pub rng: bool,
    /// Optional virtio-vsock device.
    pub vsock: Option<VsockConfig>,
}

/// One virtio-blk disk.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Backing file.
    pub path: PathBuf,
    /// Read-write, read-only or snapshot (writes kept in a private overlay).
    pub mode: devices::virtio::block::DiskMode,
}

impl VmConfig {
    /// A Linux guest with defaults: 1 vCPU, 256 MiB, console discarded.
    pub fn linux(kernel: PathBuf, initrd: Option<PathBuf>, cmdline: impl Into<String>) -> Self {
        Self {
            boot: BootSource::Linux {
                kernel,
                initrd,
                cmdline: cmdline.into(),
            },
            cpus: 1,
            mem_mib: 256,
            console: ConsoleOutput::Null,
            console_input: ConsoleInput::None,
            disks: Vec::new(),
            rng: true,
            vsock: None,
        }
    }
}

/// Errors while building or controlling a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Invalid configuration.
    #[error("invalid VM config: {0}")]
    Config(String),
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        /// Operation.
        what: &'static str,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
    /// Guest memory error.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Disk image could not be opened.
    #[error(transparent)]
    Disk(#[from] devices::virtio::block::BlockError),
    /// The vsock host socket could not be set up.
    #[error(transparent)]
    Vsock(#[from] devices::virtio::vsock::VsockError),
    /// ACPI table error.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// seccomp filter error.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// Kernel loading error.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    /// vCPU setup error.
    #[error(transparent)]
    Vcpu(#[from] vcpu::VcpuError),
    /// Host I/O error (console file, eventfd, threads).
    #[error("{what}: {source}")]
    Io {
        /// Operation.
        what: String,
        /// Underlying error.
        source: std::io::Error,
    },
}
