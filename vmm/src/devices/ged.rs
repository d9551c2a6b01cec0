//! The ACPI Generic Event Device (`ACPI0013`): how a hardware-reduced ACPI machine
//! (no PM1 event block, so no fixed power button) tells the guest about platform
//! events. The host sets an event bit and raises the GED's interrupt; the guest's
//! ACPI driver runs the GED's `_EVT` method (see [`crate::acpi`]), which reads
//! the event register here and, for the power-button bit, notifies the `PNP0C0C`
//! power button device. Linux then reports `KEY_POWER` on the "Power Button" input
//! device, which the guest's init turns into an orderly shutdown.

use std::sync::atomic::{AtomicU32, Ordering};

use vmm_sys_util::eventfd::EventFd;

/// Guest physical address of the GED's event register page (just below the
/// virtio-mmio windows, inside the MMIO hole).
pub const GED_ADDR: u64 = super::VIRTIO_MMIO_BASE - GED_LEN;
/// Size of the GED's MMIO window.
pub const GED_LEN: u64 = 0x1000;
/// GSI of the GED interrupt (the last IOAPIC pin).
pub const GED_GSI: u32 = 23;
/// Event bit: the power button was pressed.
pub const EVENT_POWER_BUTTON: u32 = 1;

/// The event register plus the interrupt that announces it.
#[derive(Debug)]
pub struct Ged {
    pending: AtomicU32,
    irq: EventFd,
}

impl Ged {
    /// `irq` is an irqfd registered for [`GED_GSI`].
    pub fn new(irq: EventFd) -> Self {
        Self {
            pending: AtomicU32::new(0),
            irq,
        }
    }

    /// Presses the power button: the guest sees [`EVENT_POWER_BUTTON`].
    pub fn press_power_button(&self) -> std::io::Result<()> {
        self.pending.fetch_or(EVENT_POWER_BUTTON, Ordering::SeqCst);
        self.irq.write(1)
    }

    /// Guest read of the event register: returns and clears the pending events
    /// (so each press is handled once). Other offsets and sizes read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 && data.len() == 4 {
            let v = self.pending.swap(0, Ordering::SeqCst);
            data.copy_from_slice(&v.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn press_raises_irq_and_event_reads_once() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ged = Ged::new(irq.try_clone().unwrap());
        ged.press_power_button().unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let mut b = [0u8; 4];
        ged.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), EVENT_POWER_BUTTON);
        ged.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0, "events are read-to-clear");
        let mut odd = [0xffu8; 2];
        ged.press_power_button().unwrap();
        ged.read(0, &mut odd);
        assert_eq!(odd, [0, 0]);
        ged.read(8, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
