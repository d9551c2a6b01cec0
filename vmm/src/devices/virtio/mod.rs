//! Virtio devices behind the virtio-mmio transport.
//!
//! Every guest buffer is reached through vm-memory and virtio-queue's descriptor
//! walkers, which bound chain length (loops end after `queue size` hops) and check
//! every address. A malformed request is answered with an error status or put the
//! device in the `DEVICE_NEEDS_RESET` state; it never panics the VMM.

pub mod block;
pub mod mmio;
pub mod rng;
pub mod vsock;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;

/// `VIRTIO_F_VERSION_1`: modern (non-legacy) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Errors a device reports while processing a queue; they put the device into
/// the needs-reset state.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The queue itself is unusable (bad ring addresses, avail index beyond size).
    #[error("queue {queue}: {source:?}")]
    Queue {
        /// Queue index.
        queue: usize,
        /// Underlying error.
        source: virtio_queue::Error,
    },
    /// Host-side I/O failed in a way the guest cannot be told about per request.
    #[error("{0}")]
    Host(String),
}

/// Tokens below this value belong to the transport (one per queue notification);
/// a device registers its own host fds with tokens at or above it.
pub const DEVICE_TOKEN_BASE: u32 = 0x100;

/// The queues of a device as a device sees them while handling an event.
#[derive(Debug)]
pub struct QueueCtx<'a> {
    queues: &'a mut [Queue],
    /// Guest memory every buffer address is checked against.
    pub mem: &'a GuestMemoryMmap,
    live: bool,
}

impl<'a> QueueCtx<'a> {
    /// `live` is false while the driver has not set DRIVER_OK or the device needs a reset.
    pub fn new(queues: &'a mut [Queue], mem: &'a GuestMemoryMmap, live: bool) -> Self {
        Self { queues, mem, live }
    }

    /// Queue `idx`, if the device is live and the driver set the queue up with
    /// addresses inside guest memory.
    pub fn queue(&mut self, idx: usize) -> Option<&mut Queue> {
        if !self.live {
            return None;
        }
        let mem = self.mem;
        self.queues.get_mut(idx).filter(|q| q.is_valid(mem))
    }

    /// Whether the driver has finished setting the device up.
    pub fn live(&self) -> bool {
        self.live
    }
}

/// A virtio device model (the part behind the transport).
pub trait VirtioDevice: Send {
    /// Virtio device id (2 = block, 4 = rng, 19 = vsock).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered to the driver.
    fn features(&self) -> u64;
    /// Reads from the device-specific config space; out-of-range bytes read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The guest notified queue `idx`: process its available buffers. Returns true
    /// if any buffer was used (the transport then interrupts the guest).
    fn process_queue(&mut self, idx: usize, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError>;
    /// A host fd the device registered (token ≥ [`DEVICE_TOKEN_BASE`]) is ready.
    /// Returns true if any buffer was used.
    fn host_event(
        &mut self,
        _token: u32,
        _events: EventSet,
        _ctx: &mut QueueCtx<'_>,
    ) -> Result<bool, DeviceError> {
        Ok(false)
    }
    /// The driver reset the device: drop per-session state (queues are reset by
    /// the transport).
    fn reset(&mut self) {}
}

/// Copies `src` at `offset` of a config space into `data` (zero fill outside).
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    for (i, b) in data.iter_mut().enumerate() {
        if let Some(v) = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o))
        {
            *b = *v;
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Writes split virtqueues by hand, including hostile ones.
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;
    pub const NEXT: u16 = 1;
    pub const WRITE: u16 = 2;

    pub fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// A live context over `qs`.
    pub fn ctx<'a>(qs: &'a mut [Queue], mem: &'a GuestMemoryMmap) -> super::QueueCtx<'a> {
        super::QueueCtx::new(qs, mem, true)
    }

    pub fn queue(size: u16) -> Queue {
        let mut q = Queue::new(size).unwrap();
        q.set_size(size);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        q
    }

    pub fn desc(mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let base = GuestAddress(DESC + 16 * u64::from(i));
        mem.write_obj(addr, base).unwrap();
        mem.write_obj(len, base.unchecked_add(8)).unwrap();
        mem.write_obj(flags, base.unchecked_add(12)).unwrap();
        mem.write_obj(next, base.unchecked_add(14)).unwrap();
    }

    /// Publishes `heads` in the avail ring.
    pub fn publish(mem: &GuestMemoryMmap, heads: &[u16]) {
        for (i, h) in heads.iter().enumerate() {
            mem.write_obj(*h, GuestAddress(AVAIL + 4 + 2 * i as u64))
                .unwrap();
        }
        mem.write_obj(heads.len() as u16, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// (used idx, [(id, len)]).
    pub fn used(mem: &GuestMemoryMmap) -> (u16, Vec<(u32, u32)>) {
        let idx: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        let v = (0..u64::from(idx))
            .map(|i| {
                let e = GuestAddress(USED + 4 + 8 * i);
                (
                    mem.read_obj(e).unwrap(),
                    mem.read_obj(e.unchecked_add(4)).unwrap(),
                )
            })
            .collect();
        (idx, v)
    }
}
