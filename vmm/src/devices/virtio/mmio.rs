//! The virtio-mmio (version 2) transport: register file, queue setup, notifications,
//! interrupts through an irqfd.
//!
//! Register accesses arrive on vCPU threads. Queue notifications do not: each
//! queue has an eventfd that KVM signals when the guest writes its index to
//! `QueueNotify` (an ioeventfd), and the event loop thread runs the device
//! ([`EventHandler::handle`]). A `QueueNotify` write that still reaches us (no
//! ioeventfd, e.g. in unit tests) signals the same eventfd.

use std::os::fd::AsRawFd;
use std::sync::Mutex;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::{QueueCtx, VirtioDevice, DEVICE_TOKEN_BASE};
use crate::event_loop::{EventHandler, Poller};

/// Offset of the `QueueNotify` register (where the ioeventfds are registered).
pub const QUEUE_NOTIFY: u64 = 0x50;

/// Size of one device's MMIO window.
pub const MMIO_LEN: u64 = 0x1000;
const MAGIC: u32 = 0x7472_6976;
const VENDOR: u32 = 0x4250_5442; // "BTPB"
/// Device status bit: driver gave up or device needs reset.
pub const STATUS_NEEDS_RESET: u32 = 0x40;
const STATUS_DRIVER_OK: u32 = 0x4;
const INT_USED: u32 = 1;
const INT_CONFIG: u32 = 2;

/// One virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    mem: GuestMemoryMmap,
    irq: EventFd,
    queue_sel: u32,
    dev_feat_sel: u32,
    drv_feat_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("type", &self.device.device_type())
            .field("status", &self.status)
            .finish()
    }
}

impl MmioTransport {
    /// Wraps `device`; `irq` is the irqfd raised for used buffers / config changes.
    /// Each queue's notification eventfd is registered on `poller` with the
    /// queue index as token.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: EventFd,
        poller: &Poller,
    ) -> std::io::Result<Self> {
        let queues: Vec<Queue> = device
            .queue_max_sizes()
            .iter()
            .filter_map(|&s| Queue::new(s).ok())
            .collect();
        let mut queue_evts = Vec::with_capacity(queues.len());
        for i in 0..queues.len() {
            let evt = EventFd::new(libc::EFD_NONBLOCK)?;
            poller.add(evt.as_raw_fd(), i as u32, EventSet::IN)?;
            queue_evts.push(evt);
        }
        Ok(Self {
            device,
            queues,
            queue_evts,
            mem,
            irq,
            queue_sel: 0,
            dev_feat_sel: 0,
            drv_feat_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
        })
    }

    /// The notification eventfd of each queue, in queue order (for KVM ioeventfds).
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// Device status register (for tests and diagnostics).
    pub fn status(&self) -> u32 {
        self.status
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn raise(&mut self, bits: u32) {
        self.interrupt_status |= bits;
        if let Err(e) = self.irq.write(1) {
            tracing::warn!(error = %e, "virtio irqfd write failed");
        }
    }

    /// Guest read at `offset` inside the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let v = match offset {
            0x00 => MAGIC,
            0x04 => 2,
            0x08 => self.device.device_type(),
            0x0c => VENDOR,
            0x10 => match self.dev_feat_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            0x34 => self.queue().map_or(0, |q| u32::from(q.max_size())),
            0x44 => self.queue().map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt_status,
            0x70 => self.status,
            0xfc => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// Guest write at `offset` inside the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "ignoring non-32-bit virtio-mmio write"
            );
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            0x14 => self.dev_feat_sel = v,
            0x20 => match self.drv_feat_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                }
                _ => {}
            },
            0x24 => self.drv_feat_sel = v,
            0x30 => self.queue_sel = v,
            0x38 => {
                if let Some(q) = self.queue() {
                    q.set_size(v as u16);
                }
            }
            0x44 => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            QUEUE_NOTIFY => {
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.write(1);
                }
            }
            0x64 => self.interrupt_status &= !v,
            0x70 => {
                if v == 0 {
                    self.reset();
                } else {
                    self.status = v;
                }
            }
            0x80 => self.set_addr(|q, l| q.set_desc_table_address(l, None), v),
            0x84 => self.set_addr(|q, h| q.set_desc_table_address(None, h), v),
            0x90 => self.set_addr(|q, l| q.set_avail_ring_address(l, None), v),
            0x94 => self.set_addr(|q, h| q.set_avail_ring_address(None, h), v),
            0xa0 => self.set_addr(|q, l| q.set_used_ring_address(l, None), v),
            0xa4 => self.set_addr(|q, h| q.set_used_ring_address(None, h), v),
            _ => tracing::debug!(offset, "ignoring virtio-mmio write"),
        }
    }

    fn set_addr(&mut self, f: impl FnOnce(&mut Queue, Option<u32>), v: u32) {
        if let Some(q) = self.queue() {
            f(q, Some(v));
        }
    }

    fn reset(&mut self) {
        self.status = 0;
        self.interrupt_status = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.device.reset();
    }

    fn live(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_NEEDS_RESET == 0
    }

    /// Queue `idx` was notified by the guest: let the device process it.
    pub fn notify(&mut self, idx: usize) {
        if !self.live() || idx >= self.queues.len() {
            return;
        }
        let mut ctx = QueueCtx::new(&mut self.queues, &self.mem, true);
        let r = self.device.process_queue(idx, &mut ctx);
        self.after(r);
    }

    /// A host fd of the device is ready. Devices see it even before DRIVER_OK
    /// (so they can refuse host connections), but get no usable queue then.
    pub fn host_event(&mut self, token: u32, events: EventSet) {
        let live = self.live();
        let mut ctx = QueueCtx::new(&mut self.queues, &self.mem, live);
        let r = self.device.host_event(token, events, &mut ctx);
        self.after(r);
    }

    fn after(&mut self, r: Result<bool, super::DeviceError>) {
        match r {
            Ok(true) => self.raise(INT_USED),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "virtio device error; needs reset");
                self.status |= STATUS_NEEDS_RESET;
                self.config_generation = self.config_generation.wrapping_add(1);
                self.raise(INT_CONFIG);
            }
        }
    }
}

impl EventHandler for Mutex<MmioTransport> {
    fn handle(&self, token: u32, events: EventSet) {
        let mut t = self.lock().unwrap_or_else(|p| p.into_inner());
        if token < DEVICE_TOKEN_BASE {
            let idx = token as usize;
            // Drain the eventfd first: a notification arriving while we process is
            // then seen on the next wakeup instead of being lost.
            if let Some(evt) = t.queue_evts.get(idx) {
                let _ = evt.read();
            }
            t.notify(idx);
        } else {
            t.host_event(token, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::super::testutil::*;
    use super::*;

    fn rd(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn setup(size: u16) -> (MmioTransport, GuestMemoryMmap, EventFd) {
        let mem = mem();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let poller = crate::event_loop::EventLoop::new().unwrap().poller();
        let mut t = MmioTransport::new(
            Box::new(Rng),
            mem.clone(),
            irq.try_clone().unwrap(),
            &poller,
        )
        .unwrap();
        assert_eq!(rd(&mut t, 0), MAGIC);
        assert_eq!(rd(&mut t, 8), 4);
        t.write(0x70, &7u32.to_le_bytes());
        t.write(0x30, &0u32.to_le_bytes());
        assert_eq!(rd(&mut t, 0x34), 256);
        t.write(0x38, &u32::from(size).to_le_bytes());
        for (off, v) in [(0x80, DESC), (0x90, AVAIL), (0xa0, USED)] {
            t.write(off, &(v as u32).to_le_bytes());
            t.write(off + 4, &0u32.to_le_bytes());
        }
        t.write(0x44, &1u32.to_le_bytes());
        t.write(0x70, &0xfu32.to_le_bytes());
        (t, mem, irq)
    }

    #[test]
    fn notify_processes_queue_and_raises_irq() {
        let (mut t, m, irq) = setup(16);
        desc(&m, 0, 0x8000, 8, WRITE, 0);
        publish(&m, &[0]);
        // A QueueNotify write only signals the queue's eventfd; the event loop
        // does the work.
        t.write(0x50, &0u32.to_le_bytes());
        assert_eq!(used(&m).0, 0);
        assert_eq!(t.queue_evts()[0].read().unwrap(), 1);
        let t = Mutex::new(t);
        t.handle(0, EventSet::IN);
        let mut t = t.into_inner().unwrap();
        assert_eq!(used(&m).0, 1);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(rd(&mut t, 0x60), INT_USED);
        t.write(0x64, &INT_USED.to_le_bytes());
        assert_eq!(rd(&mut t, 0x60), 0);
    }

    #[test]
    fn broken_queue_sets_needs_reset_and_reset_clears_it() {
        let (mut t, m, _irq) = setup(4);
        publish(&m, &[0; 9]); // avail idx 9 > size 4
        t.notify(0);
        assert_ne!(t.status() & STATUS_NEEDS_RESET, 0);
        t.write(0x70, &0u32.to_le_bytes());
        assert_eq!(t.status(), 0);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut t, _m, _irq) = setup(16);
        let mut b = [0u8; 2];
        t.read(0, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(0x50, &[1]);
        t.write(0x30, &99u32.to_le_bytes());
        assert_eq!(rd(&mut t, 0x34), 0);
        t.write(0x50, &99u32.to_le_bytes());
        t.notify(99);
        t.host_event(DEVICE_TOKEN_BASE + 5, EventSet::IN);
        t.read(0x100 + u64::MAX / 2, &mut b);
    }
}
