//! Assembling a VM from a [`VmConfig`], in boot order: KVM and guest memory →
//! irqchip and PIT → devices (COM1, GED, virtio-mmio) with their irqfds and
//! ioeventfds on one [`EventLoop`] → boot structures, ACPI tables, kernel →
//! configured vCPUs. Nothing runs yet; [`super::Vm::start`] starts the threads.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_pit_config;
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::devices::ged::{Ged, GED_ADDR, GED_GSI, GED_LEN};
use super::devices::serial::{Com1, SerialInput, COM1_IRQ};
use super::devices::virtio::mmio::{MmioTransport, MMIO_LEN, QUEUE_NOTIFY};
use super::devices::virtio::{block::Block, rng::Rng, vsock::Vsock, VirtioDevice};
use super::devices::{Bus, MAX_VIRTIO_DEVICES, VIRTIO_FIRST_IRQ, VIRTIO_MMIO_BASE};
use super::event_loop::EventLoop;
use super::{acpi, kernel, memory, vcpu, BootSource, ConsoleOutput, VmConfig, VmError};

/// A VM with everything set up but no thread started.
pub(super) struct Built {
    pub vm: VmFd,
    pub mem: GuestMemoryMmap,
    pub bus: Arc<Bus>,
    pub ged: Arc<Ged>,
    pub events: EventLoop,
    pub vcpus: Vec<VcpuFd>,
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// An eventfd registered as irqfd for `gsi`.
fn irqfd(vm: &VmFd, gsi: u32, what: &'static str) -> Result<EventFd, VmError> {
    let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
    vm.register_irqfd(&fd, gsi).map_err(kvm_err(what))?;
    Ok(fd)
}

fn validate(cfg: &VmConfig) -> Result<(), VmError> {
    if cfg.cpus == 0 || cfg.cpus > 32 {
        return Err(VmError::Config(format!(
            "cpus must be 1..=32, got {}",
            cfg.cpus
        )));
    }
    let devices = cfg.disks.len() + usize::from(cfg.rng) + usize::from(cfg.vsock.is_some());
    if devices > MAX_VIRTIO_DEVICES {
        return Err(VmError::Config(format!(
            "{devices} virtio devices requested, at most {MAX_VIRTIO_DEVICES} fit"
        )));
    }
    if let Some(v) = &cfg.vsock {
        if v.guest_cid < 3 || v.guest_cid > u64::from(u32::MAX) {
            return Err(VmError::Config(format!(
                "vsock guest CID must be 3..=4294967295, got {}",
                v.guest_cid
            )));
        }
    }
    Ok(())
}

/// Builds the VM described by `cfg`.
pub(super) fn build(cfg: &VmConfig) -> Result<Built, VmError> {
    super::startup::mark("exec+args");
    validate(cfg)?;
    let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    let mem = memory::create(cfg.mem_mib.saturating_mul(1 << 20))?;
    memory::register(&vm, &mem)?;
    super::startup::guest_ram(&mem);
    vm.set_tss_address(0xfffb_d000)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    vm.create_pit2(kvm_pit_config::default())
        .map_err(kvm_err("KVM_CREATE_PIT2"))?;

    super::startup::mark("kvm+memory");
    let mut events = EventLoop::new().map_err(io_err("creating the event loop"))?;

    // COM1: output to the configured sink, input (if any) from the event loop.
    let out: Box<dyn Write + Send> = match &cfg.console {
        ConsoleOutput::Null => Box::new(std::io::sink()),
        ConsoleOutput::Stdout => Box::new(std::io::stdout()),
        ConsoleOutput::File(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(io_err(format!("opening console {}", p.display())))?,
        ),
    };
    let serial_poller = events.poller();
    let (com1, input) = Com1::new(
        irqfd(&vm, COM1_IRQ, "KVM_IRQFD com1")?,
        out,
        &cfg.console_input,
    )
    .map_err(io_err("setting up the serial console"))?;
    let com1 = Arc::new(Mutex::new(com1));
    if let Some(input) = input {
        let input = SerialInput::new(input, com1.clone(), serial_poller.clone())
            .map_err(io_err("watching serial console input"))?;
        events.set_handler(&serial_poller, Arc::new(input));
    }

    let ged = Arc::new(Ged::new(irqfd(&vm, GED_GSI, "KVM_IRQFD ged")?));

    // virtio-mmio devices: window i at VIRTIO_MMIO_BASE + i * 4 KiB, GSI 5 + i.
    let mut transports = Vec::new();
    let mut acpi_devs = Vec::new();
    let mut mmio_params = String::new();
    let mut add = |model: Box<dyn VirtioDevice>,
                   poller: super::event_loop::Poller,
                   events: &mut EventLoop|
     -> Result<(), VmError> {
        let i = transports.len();
        let gsi = VIRTIO_FIRST_IRQ + i as u32;
        let base = VIRTIO_MMIO_BASE + i as u64 * MMIO_LEN;
        let t = MmioTransport::new(
            model,
            mem.clone(),
            irqfd(&vm, gsi, "KVM_IRQFD virtio")?,
            &poller,
        )
        .map_err(io_err("registering virtio queue notifications"))?;
        for (q, evt) in t.queue_evts().iter().enumerate() {
            vm.register_ioevent(evt, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), q as u32)
                .map_err(kvm_err("KVM_IOEVENTFD"))?;
        }
        let t = Arc::new(Mutex::new(t));
        events.set_handler(&poller, t.clone());
        transports.push(t);
        mmio_params.push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{gsi}"));
        acpi_devs.push(acpi::MmioDevice {
            base,
            len: MMIO_LEN as u32,
            gsi,
        });
        Ok(())
    };
    for d in &cfg.disks {
        let p = events.poller();
        add(Box::new(Block::open(&d.path, d.mode)?), p, &mut events)?;
    }
    if cfg.rng {
        let p = events.poller();
        add(Box::new(Rng), p, &mut events)?;
    }
    if let Some(v) = &cfg.vsock {
        let p = events.poller();
        let dev = Vsock::new(v.guest_cid, &v.uds_path, &v.root_ports, p.clone())?;
        add(Box::new(dev), p, &mut events)?;
    }
    let bus = Arc::new(Bus::new(com1, ged.clone(), transports));
    super::startup::mark("devices");

    vcpu::write_boot_structures(&mem)?;
    let entry = match &cfg.boot {
        BootSource::Linux {
            kernel: k,
            initrd,
            cmdline,
        } => {
            let rsdp = acpi::write(
                &mem,
                cfg.cpus,
                &acpi_devs,
                &acpi::Ged {
                    base: GED_ADDR,
                    len: GED_LEN as u32,
                    gsi: GED_GSI,
                },
            )?;
            kernel::load_linux(
                &mem,
                k,
                initrd.as_deref(),
                &format!("{cmdline}{mmio_params}"),
                rsdp,
            )?
        }
        BootSource::RawCode { code, load_addr } => {
            if *load_addr < kernel::HIMEM_START {
                return Err(VmError::Config("raw code must load at >= 1 MiB".into()));
            }
            mem.write_slice(code, GuestAddress(*load_addr))
                .map_err(|e| {
                    VmError::Config(format!("raw code does not fit in guest memory: {e}"))
                })?;
            kernel::BootEntry {
                rip: *load_addr,
                rsi: 0,
            }
        }
    };

    super::startup::mark("kernel+acpi");
    let supported = vcpu::supported_cpuid(&kvm)?;
    let mut vcpus = Vec::with_capacity(usize::from(cfg.cpus));
    for id in 0..cfg.cpus {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu::configure(&supported, &fd, id, cfg.cpus, entry.rip, entry.rsi)?;
        vcpus.push(fd);
    }
    super::startup::mark("vcpus");
    Ok(Built {
        vm,
        mem,
        bus,
        ged,
        events,
        vcpus,
    })
}
