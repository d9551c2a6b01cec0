//! virtio-vsock (device id 19): stream sockets between the guest (its CID) and the
//! host (CID 2), with the host side on Unix sockets (`muxer.rs`). Packets are parsed
//! by the `virtio-vsock` crate from chains walked by `virtio-queue`; the device
//! itself only routes queues: RX (0) carries packets to the guest, TX (1) packets
//! from it, the event queue (2) is left alone (it only matters for migration).
//!
//! The guest is untrusted: packets with wrong CIDs are dropped, unknown types and
//! operations and data beyond the advertised credit get a RST, malformed chains
//! (too short, wrong direction, oversized `len`, outside guest memory) are
//! returned unused. None of it can panic the VMM or grow host memory without bound.

mod conn;
mod host;
mod muxer;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use virtio_queue::{QueueOwnedT, QueueT};
use virtio_vsock::packet::VsockPacket;
use vmm_sys_util::epoll::EventSet;

use super::{read_config_bytes, DeviceError, QueueCtx, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::event_loop::Poller;

/// The host's context id.
pub const HOST_CID: u64 = 2;
/// RX queue index.
pub const RXQ: usize = 0;
/// TX queue index.
pub const TXQ: usize = 1;
/// Event queue index.
pub const EVQ: usize = 2;
/// Largest payload of one packet (Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`).
pub const MAX_PKT_DATA: u32 = 64 * 1024;
/// Receive buffer per connection, advertised to the guest as `buf_alloc`: the most
/// host-bound data we hold for a connection whose host socket is not reading.
pub const CONN_BUF_ALLOC: u32 = 256 * 1024;
/// Open connections per VM; more are refused with RST.
pub const MAX_CONNECTIONS: usize = 1024;
/// Host connections that have not sent their `CONNECT` line yet.
pub const MAX_PENDING_HOST: usize = 64;
/// RSTs waiting for RX buffers; beyond that they are dropped (the guest times out).
pub const MAX_PENDING_RST: usize = 1024;
/// First host-side port given to host-initiated connections.
pub const HOST_PORT_FIRST: u32 = 1 << 30;

const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
const SHUTDOWN_RCV: u32 = 1;
const SHUTDOWN_SEND: u32 = 2;

/// Errors setting up the host side.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The host Unix socket could not be bound or watched.
    #[error("vsock host socket {path}: {source}")]
    Listen {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// The vsock device.
#[derive(Debug)]
pub struct Vsock {
    config: [u8; 8],
    muxer: muxer::Muxer,
}

impl Vsock {
    /// A device for guest `cid` whose host side listens on `uds_path`; host fds are
    /// registered on `poller`. Guest connections to a host port in `root_ports`
    /// are accepted only from a guest source port below 1024, which only root
    /// in the guest can bind (`CAP_NET_BIND_SERVICE`): how a host service
    /// knows it talks to the guest's PID 1 and not to an app.
    pub fn new(
        cid: u64,
        uds_path: &Path,
        root_ports: &[u32],
        poller: Poller,
    ) -> Result<Self, VsockError> {
        Ok(Self {
            config: cid.to_le_bytes(),
            muxer: muxer::Muxer::new(cid, uds_path, root_ports, poller)?,
        })
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.muxer.connections()
    }

    fn process_tx(&mut self, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError> {
        let mem = ctx.mem;
        let Some(q) = ctx.queue(TXQ) else {
            return Ok(false);
        };
        let qerr = |source| DeviceError::Queue { queue: TXQ, source };
        let mut used = false;
        // The walk is bounded by the queue size; a bogus avail index is an error.
        let chains: Vec<_> = q.iter(mem).map_err(qerr)?.collect();
        for mut chain in chains {
            let head = chain.head_index();
            match VsockPacket::from_tx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(pkt) => self.muxer.recv_pkt(&pkt),
                Err(e) => tracing::debug!(error = %e, "vsock: dropping malformed TX packet"),
            }
            q.add_used(mem, head, 0).map_err(qerr)?;
            used = true;
        }
        Ok(used)
    }

    fn fill_rx(&mut self, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError> {
        let mem = ctx.mem;
        match ctx.queue(RXQ) {
            Some(q) => self.muxer.fill_rx(q, mem),
            None => Ok(false),
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        19
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn process_queue(&mut self, idx: usize, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError> {
        match idx {
            TXQ => {
                let tx = self.process_tx(ctx)?;
                Ok(self.fill_rx(ctx)? || tx)
            }
            RXQ => self.fill_rx(ctx),
            _ => Ok(false),
        }
    }
    fn host_event(
        &mut self,
        token: u32,
        events: EventSet,
        ctx: &mut QueueCtx<'_>,
    ) -> Result<bool, DeviceError> {
        self.muxer.host_event(token, events, ctx.live());
        self.fill_rx(ctx)
    }
    fn reset(&mut self) {
        self.muxer.reset();
    }
}
