//! Building a running VM and controlling it: vCPU threads, pause/resume, stop, wait.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_bindings::kvm_pit_config;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::devices::serial::{Com1, COM1_IRQ};
use super::devices::virtio::{
    block::Block, mmio::MmioTransport, mmio::MMIO_LEN, rng::Rng, VirtioDevice,
};
use super::devices::{Bus, VIRTIO_FIRST_IRQ, VIRTIO_MMIO_BASE};
use super::vcpu::{self, Step, VcpuStop};
use super::{acpi, kernel, memory, BootSource, ConsoleOutput, VmConfig, VmError};

/// Externally visible run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// vCPUs are running.
    Running,
    /// vCPUs are parked.
    Paused,
    /// The VM has stopped (see [`VmExit`]).
    Stopped,
}

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// Guest powered off.
    PowerOff,
    /// Guest asked for a reboot (the VMM stops; the supervisor decides to restart).
    Reboot,
    /// Guest halted with interrupts off or triple-faulted.
    Shutdown,
    /// Stopped by the host ([`Vm::shutdown`]).
    Killed,
    /// A vCPU failed.
    Error(String),
}

#[derive(Debug)]
struct Control {
    state: VmState,
    stop_requested: bool,
    parked: usize,
    exited: usize,
    exit: Option<VmExit>,
}

#[derive(Debug)]
struct Shared {
    ctl: Mutex<Control>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running (or paused/stopped) VM.
#[derive(Debug)]
pub struct Vm {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    cpus: usize,
    _vm: VmFd,
    _mem: GuestMemoryMmap,
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

impl Vm {
    /// Builds the VM from `cfg` and starts its vCPU threads.
    pub fn start(cfg: VmConfig) -> Result<Vm, VmError> {
        if cfg.cpus == 0 || cfg.cpus > 32 {
            return Err(VmError::Config(format!(
                "cpus must be 1..=32, got {}",
                cfg.cpus
            )));
        }
        let kvm_err = |what| move |source| VmError::Kvm { what, source };
        let io_err = |what: &str| {
            let what = what.to_string();
            move |source| VmError::Io { what, source }
        };
        let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let mem = memory::create(cfg.mem_mib.saturating_mul(1 << 20))?;
        memory::register(&vm, &mem)?;
        vm.set_tss_address(0xfffb_d000)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        vm.create_pit2(kvm_pit_config::default())
            .map_err(kvm_err("KVM_CREATE_PIT2"))?;

        let out: Box<dyn Write + Send> = match &cfg.console {
            ConsoleOutput::Null => Box::new(std::io::sink()),
            ConsoleOutput::Stdout => Box::new(std::io::stdout()),
            ConsoleOutput::File(p) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(io_err(&format!("opening console {}", p.display())))?,
            ),
        };
        let com_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
        vm.register_irqfd(&com_irq, COM1_IRQ)
            .map_err(kvm_err("KVM_IRQFD com1"))?;
        let mut models: Vec<Box<dyn VirtioDevice>> = Vec::new();
        for d in &cfg.disks {
            models.push(Box::new(Block::open(&d.path, d.read_only)?));
        }
        if cfg.rng {
            models.push(Box::new(Rng));
        }
        let mut transports = Vec::new();
        let mut acpi_devs = Vec::new();
        let mut mmio_params = String::new();
        for (i, model) in models.into_iter().enumerate() {
            let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("eventfd"))?;
            let gsi = VIRTIO_FIRST_IRQ + i as u32;
            vm.register_irqfd(&irq, gsi)
                .map_err(kvm_err("KVM_IRQFD virtio"))?;
            let base = VIRTIO_MMIO_BASE + i as u64 * MMIO_LEN;
            mmio_params.push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{gsi}"));
            transports.push(MmioTransport::new(model, mem.clone(), irq));
            acpi_devs.push(acpi::MmioDevice {
                base,
                len: MMIO_LEN as u32,
                gsi,
            });
        }
        let bus = Arc::new(Bus::new(Com1::new(com_irq, out), transports));

        vcpu::write_boot_structures(&mem)?;
        let entry = match &cfg.boot {
            BootSource::Linux {
                kernel: k,
                initrd,
                cmdline,
            } => {
                let rsdp = acpi::write(&mem, cfg.cpus, &acpi_devs)?;
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

        // Signal used to kick vCPUs out of KVM_RUN; the handler does nothing.
        register_signal_handler(SIGRTMIN(), kick_handler).map_err(|e| VmError::Io {
            what: "registering kick signal".into(),
            source: e.into(),
        })?;

        let shared = Arc::new(Shared {
            ctl: Mutex::new(Control {
                state: VmState::Running,
                stop_requested: false,
                parked: 0,
                exited: 0,
                exit: None,
            }),
            cv: Condvar::new(),
        });
        let mut threads = Vec::new();
        let filter = super::seccomp::vcpu_filter()?;
        for id in 0..cfg.cpus {
            let mut fd = vm
                .create_vcpu(u64::from(id))
                .map_err(kvm_err("KVM_CREATE_VCPU"))?;
            vcpu::configure(&kvm, &fd, id, cfg.cpus, entry.rip, entry.rsi)?;
            let bus = bus.clone();
            let shared = shared.clone();
            let filter = filter.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    if let Err(e) = super::seccomp::apply(&filter) {
                        let mut c = shared.lock();
                        c.exit = Some(VmExit::Error(e.to_string()));
                        c.stop_requested = true;
                        c.exited += 1;
                        shared.cv.notify_all();
                        return;
                    }
                    vcpu_loop(&mut fd, &bus, &shared, id)
                })
                .map_err(io_err("spawning vCPU thread"))?;
            threads.push(t);
        }
        Ok(Vm {
            shared,
            threads,
            cpus: cfg.cpus as usize,
            _vm: vm,
            _mem: mem,
        })
    }

    /// Current state.
    pub fn state(&self) -> VmState {
        self.shared.lock().state
    }

    fn kick_all(&self) {
        for t in &self.threads {
            // SAFETY: the pthread id belongs to a thread we spawned and have not joined;
            // the signal has a no-op handler installed.
            unsafe { libc::pthread_kill(t.as_pthread_t(), SIGRTMIN()) };
        }
    }

    /// Parks all vCPUs; returns once every vCPU is out of `KVM_RUN`.
    pub fn pause(&self) {
        {
            let mut c = self.shared.lock();
            if c.state != VmState::Running {
                return;
            }
            c.state = VmState::Paused;
        }
        loop {
            self.kick_all();
            let c = self.shared.lock();
            if c.parked + c.exited >= self.cpus {
                return;
            }
            let _ = self.shared.cv.wait_timeout(c, Duration::from_millis(5));
        }
    }

    /// Resumes parked vCPUs.
    pub fn resume(&self) {
        let mut c = self.shared.lock();
        if c.state == VmState::Paused {
            c.state = VmState::Running;
            self.shared.cv.notify_all();
        }
    }

    /// Stops the VM now (vCPUs kicked out of `KVM_RUN`), then joins the threads.
    pub fn shutdown(mut self) -> VmExit {
        {
            let mut c = self.shared.lock();
            c.stop_requested = true;
            if c.exit.is_none() {
                c.exit = Some(VmExit::Killed);
            }
            self.shared.cv.notify_all();
        }
        loop {
            self.kick_all();
            let c = self.shared.lock();
            if c.exited >= self.cpus {
                break;
            }
            let _ = self.shared.cv.wait_timeout(c, Duration::from_millis(5));
        }
        self.join()
    }

    /// Waits up to `timeout` for the guest to stop by itself; `None` on timeout.
    /// Once one vCPU has stopped the machine, the others are kicked out of `KVM_RUN`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<VmExit> {
        let deadline = std::time::Instant::now() + timeout;
        let mut c = self.shared.lock();
        loop {
            if c.exited >= self.cpus {
                return Some(c.exit.clone().unwrap_or(VmExit::Killed));
            }
            if c.stop_requested {
                self.kick_all();
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let step = (deadline - now).min(Duration::from_millis(20));
            c = self
                .shared
                .cv
                .wait_timeout(c, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the guest to stop by itself.
    pub fn wait(mut self) -> VmExit {
        loop {
            if self.wait_timeout(Duration::from_secs(3600)).is_some() {
                return self.join();
            }
        }
    }

    fn join(&mut self) -> VmExit {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let mut c = self.shared.lock();
        c.state = VmState::Stopped;
        c.exit.clone().unwrap_or(VmExit::Killed)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shared.lock().stop_requested = true;
            self.shared.cv.notify_all();
            while self.threads.iter().any(|t| !t.is_finished()) {
                self.kick_all();
                std::thread::sleep(Duration::from_millis(5));
            }
            self.join();
        }
    }
}

/// CPU time this process has used so far.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn vcpu_loop(fd: &mut kvm_ioctls::VcpuFd, bus: &Arc<Bus>, shared: &Shared, id: u8) {
    if id == 0 && std::env::var_os("BYTEPORT_VMM_REPORT_STARTUP").is_some() {
        eprintln!(
            "byteport-vmm: first KVM_RUN after {:.2} ms of process CPU time",
            process_cpu_time().as_secs_f64() * 1000.0
        );
    }
    loop {
        {
            let mut c = shared.lock();
            if c.state == VmState::Paused && !c.stop_requested {
                c.parked += 1;
                shared.cv.notify_all();
                while c.state == VmState::Paused && !c.stop_requested {
                    c = shared.cv.wait(c).unwrap_or_else(|p| p.into_inner());
                }
                c.parked -= 1;
            }
            if c.stop_requested {
                break;
            }
        }
        match vcpu::step(fd, bus) {
            Step::Continue | Step::Interrupted => {}
            Step::Stop(why) => {
                let mut c = shared.lock();
                if c.exit.is_none() {
                    c.exit = Some(match why {
                        VcpuStop::Reboot => VmExit::Reboot,
                        VcpuStop::Shutdown => VmExit::Shutdown,
                        VcpuStop::PowerOff => VmExit::PowerOff,
                        VcpuStop::Error(e) => VmExit::Error(e),
                    });
                }
                c.stop_requested = true;
                break;
            }
        }
    }
    let mut c = shared.lock();
    c.exited += 1;
    shared.cv.notify_all();
}
