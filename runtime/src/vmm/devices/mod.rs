//! Emulated devices and the bus that routes vCPU I/O exits to them.

pub mod serial;

use std::sync::Mutex;

use serial::{Com1, COM1_BASE, COM1_LEN};

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

/// All devices reachable from the guest, shared by vCPU threads.
#[derive(Debug)]
pub struct Bus {
    com1: Mutex<Com1>,
}

impl Bus {
    /// Builds the bus around COM1.
    pub fn new(com1: Com1) -> Self {
        Self {
            com1: Mutex::new(com1),
        }
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
        }
        BusAction::Continue
    }

    /// Guest MMIO read outside RAM; unclaimed addresses read as zero.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        tracing::trace!(addr, len = data.len(), "unclaimed mmio read");
        data.fill(0);
    }

    /// Guest MMIO write outside RAM; unclaimed addresses are ignored.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> BusAction {
        tracing::trace!(addr, len = data.len(), "unclaimed mmio write");
        BusAction::Continue
    }
}

/// Locks a device mutex, recovering from a poisoned lock (a panicking vCPU thread
/// must not take the whole bus down).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
