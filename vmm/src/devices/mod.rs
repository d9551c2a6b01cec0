//! Emulated devices and the bus that routes vCPU I/O exits to them.

pub mod ged;
pub mod serial;
pub mod virtio;

use std::sync::{Arc, Mutex};

use ged::{Ged, GED_ADDR, GED_LEN};
use serial::{Com1, COM1_BASE, COM1_LEN};
use virtio::mmio::{MmioTransport, MMIO_LEN};

/// Guest physical address of the first virtio-mmio window.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// GSI of the first virtio-mmio device (the next ones follow).
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// Most virtio devices one VM may have (their GSIs end below the GED's).
pub const MAX_VIRTIO_DEVICES: usize = (ged::GED_GSI - VIRTIO_FIRST_IRQ) as usize;

/// i8042 command port; writing 0xFE there resets the machine.
pub const I8042_CMD_PORT: u16 = 0x64;
/// i8042 "pulse reset line" command.
pub const I8042_RESET: u8 = 0xfe;

/// What a vCPU must do after a device handled an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusAction {
    /// Keep running.
    Continue,
    /// The guest asked for a reset.
    Reboot,
    /// The guest asked to power off.
    PowerOff,
}

/// All devices reachable from the guest, shared by vCPU threads (register
/// accesses) and the event loop (queue and host-side work).
#[derive(Debug)]
pub struct Bus {
    com1: Arc<Mutex<Com1>>,
    ged: Arc<Ged>,
    virtio: Vec<Arc<Mutex<MmioTransport>>>,
}

impl Bus {
    /// Builds the bus around COM1, the GED and the virtio-mmio devices (in window order).
    pub fn new(
        com1: Arc<Mutex<Com1>>,
        ged: Arc<Ged>,
        virtio: Vec<Arc<Mutex<MmioTransport>>>,
    ) -> Self {
        Self { com1, ged, virtio }
    }

    fn virtio_at(&self, addr: u64) -> Option<(&Mutex<MmioTransport>, u64)> {
        let off = addr.checked_sub(VIRTIO_MMIO_BASE)?;
        let dev = self.virtio.get(usize::try_from(off / MMIO_LEN).ok()?)?;
        Some((dev, off % MMIO_LEN))
    }

    /// Guest port read; unknown ports read as all ones.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if (COM1_BASE..COM1_BASE + COM1_LEN).contains(&port) {
            if let Some(b) = data.first_mut() {
                *b = lock(&self.com1).read((port - COM1_BASE) as u8);
            }
        } else if port == I8042_CMD_PORT {
            // Status: output buffer empty, input buffer empty.
            data.fill(0);
        }
    }

    /// Guest port write; unknown ports are ignored.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> BusAction {
        if (COM1_BASE..COM1_BASE + COM1_LEN).contains(&port) {
            if let Some(&b) = data.first() {
                lock(&self.com1).write((port - COM1_BASE) as u8, b);
            }
        } else if port == I8042_CMD_PORT && data.first() == Some(&I8042_RESET) {
            return BusAction::Reboot;
        } else if port == crate::acpi::SLEEP_CONTROL_PORT
            && data.first().is_some_and(|b| b & crate::acpi::SLP_EN != 0)
        {
            return BusAction::PowerOff;
        }
        BusAction::Continue
    }

    /// Guest MMIO read outside RAM; unclaimed addresses read as zero.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if let Some((dev, off)) = self.virtio_at(addr) {
            return lock(dev).read(off, data);
        }
        if (GED_ADDR..GED_ADDR + GED_LEN).contains(&addr) {
            return self.ged.read(addr - GED_ADDR, data);
        }
        tracing::trace!(addr, len = data.len(), "unclaimed mmio read");
        data.fill(0);
    }

    /// Guest MMIO write outside RAM; unclaimed addresses are ignored.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> BusAction {
        if let Some((dev, off)) = self.virtio_at(addr) {
            lock(dev).write(off, data);
            return BusAction::Continue;
        }
        tracing::trace!(addr, len = data.len(), "unclaimed mmio write");
        BusAction::Continue
    }
}

/// Locks a device mutex, recovering from a poisoned lock (a panicking vCPU thread
/// must not take the whole bus down).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
