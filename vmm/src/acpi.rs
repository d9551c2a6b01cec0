//! ACPI tables for a hardware-reduced machine: RSDP → XSDT → FADT (→ DSDT) + MADT.
//! The DSDT describes each virtio-mmio device as `LNRO0005` (how the Debian kernel,
//! which lacks `virtio_mmio.device=` support, finds them), an `_S5_` state whose
//! sleep-control register write means power off, and the power button: a Generic
//! Event Device (`ACPI0013`, see [`crate::devices::ged`]) whose `_EVT` method
//! reads the event register and notifies the `PNP0C0C` button device.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zerocopy::IntoBytes;

/// Guest address of the RSDP (inside the legacy BIOS search area).
pub const RSDP_ADDR: u64 = 0xe_0000;
/// I/O port of the FADT sleep control register.
pub const SLEEP_CONTROL_PORT: u16 = 0x3c0;
/// SLP_EN bit of the sleep control register.
pub const SLP_EN: u8 = 1 << 5;
/// FADT `IAPC_BOOT_ARCH` bits (ACPI 6.5, table 5.11).
const IAPC_NO_VGA: u16 = 1 << 2;
const IAPC_NO_CMOS_RTC: u16 = 1 << 5;
const IOAPIC_ADDR: u32 = 0xfec0_0000;
const LAPIC_ADDR: u32 = 0xfee0_0000;
const OEM_ID: [u8; 6] = *b"BYTEPT";
const OEM_TABLE: [u8; 8] = *b"BYTEPORT";
const TABLES_END: u64 = 0xf_0000;

/// A virtio-mmio device to describe.
#[derive(Debug, Clone, Copy)]
pub struct MmioDevice {
    /// Window base address.
    pub base: u64,
    /// Window length.
    pub len: u32,
    /// GSI (IOAPIC pin).
    pub gsi: u32,
}

/// The Generic Event Device to describe.
#[derive(Debug, Clone, Copy)]
pub struct Ged {
    /// Event register page base address.
    pub base: u64,
    /// Page length.
    pub len: u32,
    /// GSI of its interrupt.
    pub gsi: u32,
}

/// Errors writing the tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables outgrew their area below 1 MiB.
    #[error("ACPI tables need {0} bytes, more than the reserved area")]
    TooBig(u64),
    /// Guest memory write failed.
    #[error("writing ACPI tables: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// `\_SB_.PWRB` (the power button) and `\_SB_.GED_`, whose `_EVT` (run by the
/// guest on the GED interrupt) does: `if (GDAT & 1) == 1 { Notify(PWRB, 0x80) }`
/// — 0x80 on a button device means "pressed".
fn power_button(g: &Ged, body: &mut Vec<u8>) {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C0C"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    aml::Device::new("_SB_.PWRB".into(), vec![&hid, &uid]).to_aml_bytes(body);

    let hid = aml::Name::new("_HID".into(), &"ACPI0013");
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let irq = aml::Interrupt::new(true, true, false, false, g.gsi);
    let crs = aml::ResourceTemplate::new(vec![&irq]);
    let crs_n = aml::Name::new("_CRS".into(), &crs);
    let (base, len) = (g.base, u64::from(g.len));
    let region = aml::OpRegion::new("GDST".into(), aml::OpRegionSpace::SystemMemory, &base, &len);
    let field = aml::Field::new(
        "GDST".into(),
        aml::FieldAccessType::DWord,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![aml::FieldEntry::Named(*b"GDAT", 32)],
    );
    let gdat = aml::Path::new("GDAT");
    let load = aml::Store::new(&aml::Local(0), &gdat);
    let masked = aml::And::new(&aml::Local(1), &aml::Local(0), &aml::ONE);
    let pressed = 0x80u8;
    let pwrb = aml::Path::new("\\_SB_.PWRB");
    let notify = aml::Notify::new(&pwrb, &pressed);
    let is_button = aml::Equal::new(&aml::Local(1), &aml::ONE);
    let cond = aml::If::new(&is_button, vec![&notify]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&load, &masked, &cond]);
    aml::Device::new(
        "_SB_.GED_".into(),
        vec![&hid, &uid, &crs_n, &region, &field, &evt],
    )
    .to_aml_bytes(body);
}

fn dsdt(devices: &[MmioDevice], ged: &Ged) -> Vec<u8> {
    let mut body = Vec::new();
    // COM1, so the 8250 driver gets IRQ 4 through the IOAPIC on a reduced-hardware machine.
    let io = aml::IO::new(0x3f8, 0x3f8, 1, 8);
    let irq4 = aml::Interrupt::new(true, true, false, false, 4);
    let crs = aml::ResourceTemplate::new(vec![&io, &irq4]);
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs_n = aml::Name::new("_CRS".into(), &crs);
    aml::Device::new("_SB_.COM1".into(), vec![&hid, &uid, &crs_n]).to_aml_bytes(&mut body);
    for (i, d) in devices.iter().enumerate() {
        let mem = aml::Memory32Fixed::new(true, d.base as u32, d.len);
        let irq = aml::Interrupt::new(true, true, false, false, d.gsi);
        let crs = aml::ResourceTemplate::new(vec![&mem, &irq]);
        let hid = aml::Name::new("_HID".into(), &"LNRO0005");
        let uid_v = i as u32;
        let uid = aml::Name::new("_UID".into(), &uid_v);
        let crs_n = aml::Name::new("_CRS".into(), &crs);
        let path = format!("_SB_.V{i:03X}");
        aml::Device::new(path.as_str().into(), vec![&hid, &uid, &crs_n]).to_aml_bytes(&mut body);
    }
    power_button(ged, &mut body);
    let five = 5u8;
    let zero = 0u8;
    let s5 = aml::Package::new(vec![&five, &zero]);
    aml::Name::new("_S5_".into(), &s5).to_aml_bytes(&mut body);
    let mut sdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE, 1);
    sdt.append_slice(&body);
    sdt.as_slice().to_vec()
}

/// Writes all tables into `mem`; returns the RSDP address (for the zero page).
pub fn write(
    mem: &GuestMemoryMmap,
    cpus: u8,
    devices: &[MmioDevice],
    ged: &Ged,
) -> Result<u64, AcpiError> {
    if devices.len() > 0xfff {
        return Err(AcpiError::TooBig(devices.len() as u64));
    }
    let mut next = RSDP_ADDR + 0x100;
    let mut place = |bytes: &[u8]| -> Result<u64, AcpiError> {
        let at = next;
        next = (next + bytes.len() as u64 + 15) & !15;
        if next > TABLES_END {
            return Err(AcpiError::TooBig(next - RSDP_ADDR));
        }
        mem.write_slice(bytes, GuestAddress(at))?;
        Ok(at)
    };
    let dsdt_addr = place(&dsdt(devices, ged))?;

    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE, 1)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi);
    fadt.sleep_control_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(SLEEP_CONTROL_PORT),
    );
    fadt.sleep_status_reg = fadt.sleep_control_reg;
    // No legacy devices, no i8042, no VGA, no CMOS RTC: the guest skips probing
    // them. Each probe is a series of port reads that exit to the VMM; Linux's
    // RTC probe alone spins on the "update in progress" bit for seconds when the
    // ports read as 0xff.
    fadt.iapc_boot_arch = (IAPC_NO_VGA | IAPC_NO_CMOS_RTC).into();
    let mut fadt_bytes = Vec::new();
    fadt.finalize().to_aml_bytes(&mut fadt_bytes);
    let fadt_addr = place(&fadt_bytes)?;

    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE,
        1,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for id in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, IOAPIC_ADDR, 0));
    let mut madt_bytes = Vec::new();
    madt.to_aml_bytes(&mut madt_bytes);
    let madt_addr = place(&madt_bytes)?;

    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE, 1);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let mut xsdt_bytes = Vec::new();
    xsdt.to_aml_bytes(&mut xsdt_bytes);
    let xsdt_addr = place(&xsdt_bytes)?;

    mem.write_slice(
        Rsdp::new(OEM_ID, xsdt_addr).as_bytes(),
        GuestAddress(RSDP_ADDR),
    )?;
    Ok(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    const GED: Ged = Ged {
        base: 0xcfff_f000,
        len: 0x1000,
        gsi: 23,
    };

    #[test]
    fn tables_are_linked_and_checksummed() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let devs = [MmioDevice {
            base: 0xd000_0000,
            len: 0x1000,
            gsi: 5,
        }];
        let rsdp = write(&mem, 2, &devs, &GED).unwrap();
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp)).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert!(checksum_ok(&r[..20]));
        let xsdt = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let mut hdr = [0u8; 36];
        mem.read_slice(&mut hdr, GuestAddress(xsdt)).unwrap();
        assert_eq!(&hdr[..4], b"XSDT");
        // XSDT entry 0 is the FADT: no VGA, no CMOS RTC (IAPC_BOOT_ARCH at 109).
        let mut entry = [0u8; 8];
        mem.read_slice(&mut entry, GuestAddress(xsdt + 36)).unwrap();
        let fadt = u64::from_le_bytes(entry);
        let mut f = [0u8; 111];
        mem.read_slice(&mut f, GuestAddress(fadt)).unwrap();
        assert_eq!(&f[..4], b"FACP");
        assert_eq!(
            u16::from_le_bytes([f[109], f[110]]),
            IAPC_NO_VGA | IAPC_NO_CMOS_RTC
        );
        let d = dsdt(&devs, &GED);
        assert!(checksum_ok(&d));
        assert!(d.windows(8).any(|w| w == b"LNRO0005"));
        assert!(d.windows(4).any(|w| w == b"_S5_"));
        assert!(d.windows(8).any(|w| w == b"ACPI0013"));
        for name in [b"_EVT", b"GDAT", b"PWRB"] {
            assert!(d.windows(4).any(|w| w == name), "{name:?} missing");
        }
    }

    #[test]
    fn too_many_devices_is_an_error_not_a_panic() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let devs: Vec<_> = (0..2000)
            .map(|i| MmioDevice {
                base: 0xd000_0000 + i * 0x1000,
                len: 0x1000,
                gsi: 5,
            })
            .collect();
        assert!(matches!(
            write(&mem, 1, &devs, &GED),
            Err(AcpiError::TooBig(_))
        ));
    }
}
