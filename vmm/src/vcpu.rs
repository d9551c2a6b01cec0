//! vCPU setup for the 64-bit Linux boot protocol (page tables, GDT, registers, CPUID,
//! MSRs, FPU, LAPIC) and the run loop that routes exits to the [`Bus`].

use std::sync::Arc;

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::devices::{Bus, BusAction};

const GDT_START: u64 = 0x500;
const PML4_START: u64 = 0x9000;
const PDPTE_START: u64 = 0xa000;
const PDE_START: u64 = 0xb000;
/// Initial stack pointer for the boot vCPU.
pub const BOOT_STACK: u64 = 0x8ff0;

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Errors while configuring or running a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM ioctl failed.
    #[error("vCPU {id}: {what}: {source}")]
    Kvm {
        /// vCPU index.
        id: u8,
        /// Operation.
        what: &'static str,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
    /// Writing boot structures into guest memory failed.
    #[error("writing {0} into guest memory failed")]
    Memory(&'static str),
}

/// Why a vCPU stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// Guest requested reset (i8042 or triple fault).
    Reboot,
    /// Guest triple-faulted / requested shutdown.
    Shutdown,
    /// Guest powered off (ACPI sleep state).
    PowerOff,
    /// Internal or unexpected exit.
    Error(String),
}

/// Writes the GDT and identity page tables (first 4 GiB, 2 MiB pages) shared by all vCPUs.
pub fn write_boot_structures(mem: &GuestMemoryMmap) -> Result<(), VcpuError> {
    let gdt: [u64; 4] = [
        0,
        gdt_entry(0xa09b, 0, 0xfffff), // code, 64-bit
        gdt_entry(0xc093, 0, 0xfffff), // data
        gdt_entry(0x808b, 0, 0xfffff), // TSS
    ];
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_START + 8 * i as u64))
            .map_err(|_| VcpuError::Memory("GDT"))?;
    }
    mem.write_obj(PDPTE_START | 0x03, GuestAddress(PML4_START))
        .map_err(|_| VcpuError::Memory("PML4"))?;
    for i in 0..4u64 {
        mem.write_obj(
            (PDE_START + i * 0x1000) | 0x03,
            GuestAddress(PDPTE_START + i * 8),
        )
        .map_err(|_| VcpuError::Memory("PDPTE"))?;
    }
    for i in 0..2048u64 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))
            .map_err(|_| VcpuError::Memory("PDE"))?;
    }
    Ok(())
}

fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
}

fn segment(entry: u64, index: u16) -> kvm_segment {
    let flags = |shift: u32, mask: u64| ((entry >> shift) & mask) as u8;
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: index * 8,
        type_: flags(40, 0xf),
        present: flags(47, 1),
        dpl: flags(45, 3),
        db: flags(54, 1),
        s: flags(44, 1),
        l: flags(53, 1),
        g: flags(55, 1),
        avl: flags(52, 1),
        padding: 0,
        unusable: 0,
    }
}

/// The CPUID KVM supports, fetched once per VM (each call makes the host kernel
/// run CPUID for every leaf, which traps when the host is itself a guest).
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, VcpuError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| VcpuError::Kvm {
            id: 0,
            what: "get supported cpuid",
            source,
        })
}

/// Configures vCPU `id` of `count` to start in 64-bit mode at `rip` with `rsi`;
/// `supported` comes from [`supported_cpuid`].
pub fn configure(
    supported: &CpuId,
    vcpu: &VcpuFd,
    id: u8,
    count: u8,
    rip: u64,
    rsi: u64,
) -> Result<(), VcpuError> {
    let err = |what| move |source| VcpuError::Kvm { id, what, source };
    let mut cpuid = supported.clone();
    super::cpuid::filter(&mut cpuid, id, count);
    vcpu.set_cpuid2(&cpuid).map_err(err("set cpuid"))?;

    let msrs = Msrs::from_entries(&[
        kvm_msr_entry {
            index: 0x174,
            ..Default::default()
        }, // SYSENTER_CS
        kvm_msr_entry {
            index: 0x175,
            ..Default::default()
        }, // SYSENTER_ESP
        kvm_msr_entry {
            index: 0x176,
            ..Default::default()
        }, // SYSENTER_EIP
        kvm_msr_entry {
            index: 0x10,
            ..Default::default()
        }, // TSC
        kvm_msr_entry {
            index: 0x1a0,
            data: 1,
            ..Default::default()
        }, // MISC_ENABLE fast strings
    ])
    .map_err(|_| VcpuError::Memory("msr list"))?;
    vcpu.set_msrs(&msrs).map_err(err("set msrs"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(err("set fpu"))?;

    let mut sregs = vcpu.get_sregs().map_err(err("get sregs"))?;
    let code = segment(gdt_entry(0xa09b, 0, 0xfffff), 1);
    let data = segment(gdt_entry(0xc093, 0, 0xfffff), 2);
    let tss = segment(gdt_entry(0x808b, 0, 0xfffff), 3);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 = X86_CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(err("set sregs"))?;

    let regs = kvm_regs {
        rflags: 0x2,
        rip,
        rsi,
        rsp: BOOT_STACK,
        rbp: BOOT_STACK,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(err("set regs"))?;

    let mut lapic = vcpu.get_lapic().map_err(err("get lapic"))?;
    set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(err("set lapic"))?;
    Ok(())
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char], off: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, v) in b.iter_mut().enumerate() {
        *v = regs[off + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, x) in v.to_le_bytes().iter().enumerate() {
        regs[off + i] = *x as std::os::raw::c_char;
    }
}

/// Outcome of one `KVM_RUN`.
#[derive(Debug)]
pub enum Step {
    /// Keep running.
    Continue,
    /// KVM_RUN was interrupted by a signal (pause/stop request).
    Interrupted,
    /// The vCPU stopped.
    Stop(VcpuStop),
}

/// Runs the vCPU once and dispatches the exit to `bus`.
pub fn step(vcpu: &mut VcpuFd, bus: &Arc<Bus>) -> Step {
    match vcpu.run() {
        Ok(VcpuExit::IoIn(port, data)) => {
            bus.pio_read(port, data);
            Step::Continue
        }
        Ok(VcpuExit::IoOut(port, data)) => action(bus.pio_write(port, data)),
        Ok(VcpuExit::MmioRead(addr, data)) => {
            bus.mmio_read(addr, data);
            Step::Continue
        }
        Ok(VcpuExit::MmioWrite(addr, data)) => action(bus.mmio_write(addr, data)),
        Ok(VcpuExit::Hlt) => Step::Stop(VcpuStop::Shutdown),
        Ok(VcpuExit::Shutdown) => Step::Stop(VcpuStop::Shutdown),
        Ok(VcpuExit::SystemEvent(t, _)) => Step::Stop(match t {
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => VcpuStop::Reboot,
            _ => VcpuStop::PowerOff,
        }),
        Ok(other) => Step::Stop(VcpuStop::Error(format!("unexpected exit {other:?}"))),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Interrupted,
        Err(e) => Step::Stop(VcpuStop::Error(format!("KVM_RUN: {e}"))),
    }
}

fn action(a: BusAction) -> Step {
    match a {
        BusAction::Continue => Step::Continue,
        BusAction::Reboot => Step::Stop(VcpuStop::Reboot),
        BusAction::PowerOff => Step::Stop(VcpuStop::PowerOff),
    }
}
