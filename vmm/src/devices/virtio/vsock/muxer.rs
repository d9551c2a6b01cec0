//! The host side of vsock (Firecracker's scheme), multiplexing guest streams onto
//! Unix sockets:
//!
//! - a host program connects to `uds_path` and writes `CONNECT <port>\n`; we send
//!   the guest a REQUEST for that port and, when the guest answers RESPONSE, reply
//!   `OK <host port>\n` on the socket; then bytes flow;
//! - a guest connection to host port P is connected to the Unix socket `<uds_path>_P`.
//!
//! Everything runs on the event loop. Packets for the guest are produced only when
//! the guest has given us RX buffers, in round-robin over the connections that have
//! something to say (`rx_queue`); RSTs for packets that match no connection wait in
//! a bounded queue of their own.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use virtio_queue::{Queue, QueueT};
use virtio_vsock::packet::{VsockPacket, PKT_HEADER_SIZE};
use vm_memory::{GuestMemoryMmap, ReadVolatile};
use vmm_sys_util::epoll::EventSet;

use super::conn::{Conn, State};
use super::host::{connect_nonblocking, header, parse_connect, would_block, Out};
use super::*;
use crate::devices::virtio::{DeviceError, DEVICE_TOKEN_BASE};
use crate::event_loop::Poller;

/// (local = host-side port, peer = guest-side port).
type Key = (u32, u32);

const LISTENER: u32 = DEVICE_TOKEN_BASE;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_CONNECT_LINE: usize = 32;

/// A host connection that has not sent its `CONNECT` line yet.
#[derive(Debug)]
struct PendingHost {
    stream: UnixStream,
    line: Vec<u8>,
}

/// The vsock host side.
#[derive(Debug)]
pub(super) struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    poller: Poller,
    conns: HashMap<Key, Conn>,
    by_token: HashMap<u32, Key>,
    pending_host: HashMap<u32, PendingHost>,
    rx_queue: VecDeque<Key>,
    rst_queue: VecDeque<Key>,
    next_token: u32,
    next_local_port: u32,
    root_ports: Vec<u32>,
}

/// Guest ports below this need `CAP_NET_BIND_SERVICE` in the guest to bind.
const GUEST_PRIVILEGED_PORTS: u32 = 1024;

impl Muxer {
    /// Binds `uds_path` (replacing a stale socket file) and watches it.
    pub fn new(
        guest_cid: u64,
        uds_path: &Path,
        root_ports: &[u32],
        poller: Poller,
    ) -> Result<Self, VsockError> {
        let err = |source| VsockError::Listen {
            path: uds_path.to_path_buf(),
            source,
        };
        let _ = std::fs::remove_file(uds_path);
        let listener = UnixListener::bind(uds_path).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        poller
            .add(listener.as_raw_fd(), LISTENER, EventSet::IN)
            .map_err(err)?;
        Ok(Self {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            poller,
            conns: HashMap::new(),
            by_token: HashMap::new(),
            pending_host: HashMap::new(),
            rx_queue: VecDeque::new(),
            rst_queue: VecDeque::new(),
            next_token: LISTENER + 1,
            next_local_port: HOST_PORT_FIRST,
            root_ports: root_ports.to_vec(),
        })
    }

    /// Number of open connections (for tests and diagnostics).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn alloc_token(&mut self) -> u32 {
        loop {
            let t = self.next_token;
            self.next_token = self.next_token.checked_add(1).unwrap_or(LISTENER + 1);
            if !self.by_token.contains_key(&t) && !self.pending_host.contains_key(&t) {
                return t;
            }
        }
    }

    fn alloc_local_port(&mut self, peer: u32) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = p.checked_add(1).unwrap_or(HOST_PORT_FIRST);
            if !self.conns.contains_key(&(p, peer)) {
                return p;
            }
        }
    }

    /// Drops every connection (device reset); the listener stays.
    pub fn reset(&mut self) {
        self.conns.clear();
        self.by_token.clear();
        self.pending_host.clear();
        self.rx_queue.clear();
        self.rst_queue.clear();
    }

    fn rst_unknown(&mut self, key: Key) {
        if self.rst_queue.len() < MAX_PENDING_RST {
            self.rst_queue.push_back(key);
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            self.by_token.remove(&c.token);
        }
    }

    /// Queues the connection for RX if it has something to send, and makes the
    /// event loop watch what its state needs.
    fn reschedule(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.has_rx() && !c.queued {
            c.queued = true;
            self.rx_queue.push_back(key);
        }
        if let Some(current) = c.interest {
            let want = c.desired_interest();
            if want != current
                && self
                    .poller
                    .modify(c.stream.as_raw_fd(), c.token, want)
                    .is_ok()
            {
                c.interest = Some(want);
            }
        }
    }

    fn insert(&mut self, key: Key, mut c: Conn) {
        let want = c.desired_interest();
        if self.poller.add(c.stream.as_raw_fd(), c.token, want).is_ok() {
            c.interest = Some(want);
        }
        self.by_token.insert(c.token, key);
        self.conns.insert(key, c);
        self.reschedule(key);
    }

    /// One packet the guest sent on the TX queue.
    pub fn recv_pkt(&mut self, pkt: &VsockPacket<'_, ()>) {
        // Wrong addresses cannot be answered meaningfully: drop.
        if pkt.src_cid() != self.guest_cid || pkt.dst_cid() != HOST_CID {
            tracing::debug!(
                src = pkt.src_cid(),
                dst = pkt.dst_cid(),
                "vsock: dropping packet with wrong CIDs"
            );
            return;
        }
        let key = (pkt.dst_port(), pkt.src_port());
        if pkt.type_() != TYPE_STREAM {
            if pkt.op() != OP_RST {
                self.rst_unknown(key);
            }
            return;
        }
        if pkt.op() == OP_REQUEST {
            return self.guest_connect(key, pkt);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if pkt.op() != OP_RST {
                self.rst_unknown(key);
            }
            return;
        };
        c.peer_credit_update(pkt.buf_alloc(), pkt.fwd_cnt());
        match pkt.op() {
            OP_RESPONSE if c.state == State::Connecting => {
                c.state = State::Established;
                let ok = format!("OK {}\n", key.0);
                if c.stream.write_all(ok.as_bytes()).is_err() {
                    c.send_rst = true;
                }
            }
            OP_RST => {
                self.remove(key);
                return;
            }
            OP_SHUTDOWN => {
                let f = pkt.flags();
                c.guest_no_recv |= f & SHUTDOWN_RCV != 0;
                c.guest_no_send |= f & SHUTDOWN_SEND != 0;
                if c.guest_no_recv && c.guest_no_send {
                    // The guest closed: forward what it sent, then reset.
                    c.flush_to_host();
                    c.send_rst = true;
                } else if c.guest_no_send && c.pending_tx() == 0 {
                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                }
            }
            OP_RW => {
                // An empty RW carries nothing but credit figures.
                if let Some(Err(v)) = pkt.data_slice().map(|d| c.take_from_guest(d)) {
                    tracing::debug!(reason = v.0, "vsock: resetting connection");
                    c.send_rst = true;
                }
            }
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => c.force_credit_update(),
            // RESPONSE on an established connection, unknown ops: protocol error.
            _ => c.send_rst = true,
        }
        self.reschedule(key);
    }

    fn guest_connect(&mut self, key: Key, pkt: &VsockPacket<'_, ()>) {
        if self.conns.contains_key(&key) || self.conns.len() >= MAX_CONNECTIONS {
            self.rst_unknown(key);
            return;
        }
        if self.root_ports.contains(&key.0) && key.1 >= GUEST_PRIVILEGED_PORTS {
            tracing::debug!(
                port = key.0,
                from = key.1,
                "vsock: refused an unprivileged guest connection to a root-only port"
            );
            self.rst_unknown(key);
            return;
        }
        let path = PathBuf::from(format!("{}_{}", self.uds_path.display(), key.0));
        match connect_nonblocking(&path) {
            Ok(stream) => {
                let token = self.alloc_token();
                let mut c = Conn::new(stream, token, State::Established);
                c.peer_credit_update(pkt.buf_alloc(), pkt.fwd_cnt());
                c.send_response = true;
                self.insert(key, c);
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "vsock: guest connect refused");
                self.rst_unknown(key);
            }
        }
    }

    /// A host fd is ready. `live`: the guest driver is up (else new host
    /// connections are refused by closing them).
    pub fn host_event(&mut self, token: u32, events: EventSet, live: bool) {
        if token == LISTENER {
            return self.accept(live);
        }
        if self.pending_host.contains_key(&token) {
            return self.read_connect_line(token, live);
        }
        let Some(&key) = self.by_token.get(&token) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            // The host side is gone: read what it left, then reset. It stays off
            // the loop (a hung-up fd would be reported again and again).
            let _ = self.poller.remove(c.stream.as_raw_fd());
            c.interest = None;
            c.host_hup = true;
            c.host_readable = true;
            if c.state == State::Connecting {
                c.send_rst = true;
            }
        }
        if events.contains(EventSet::IN) {
            c.host_readable = true;
        }
        if events.contains(EventSet::OUT) {
            if !c.flush_to_host() {
                c.send_rst = true;
            } else if c.guest_no_send && c.pending_tx() == 0 {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
            }
        }
        self.reschedule(key);
    }

    fn accept(&mut self, live: bool) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "vsock: accept failed");
                    return;
                }
            };
            // Closing tells the host to retry later (driver not up) or that we are full.
            if !live
                || self.pending_host.len() >= MAX_PENDING_HOST
                || stream.set_nonblocking(true).is_err()
            {
                continue;
            }
            let token = self.alloc_token();
            if self
                .poller
                .add(stream.as_raw_fd(), token, EventSet::IN)
                .is_ok()
            {
                self.pending_host.insert(
                    token,
                    PendingHost {
                        stream,
                        line: Vec::new(),
                    },
                );
            }
        }
    }

    /// Reads the `CONNECT` line one byte at a time, so data the host sends right
    /// after it stays in the socket for the connection.
    fn read_connect_line(&mut self, token: u32, live: bool) {
        let Some(p) = self.pending_host.get_mut(&token) else {
            return;
        };
        let mut byte = [0u8; 1];
        let port = loop {
            match p.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break parse_connect(&p.line),
                Ok(1) if p.line.len() < MAX_CONNECT_LINE => p.line.push(byte[0]),
                Err(e) if would_block(&e) => return,
                // EOF, an overlong line or an error: give up on this host connection.
                _ => break None,
            }
        };
        let Some(p) = self.pending_host.remove(&token) else {
            return;
        };
        let _ = self.poller.remove(p.stream.as_raw_fd());
        let (Some(peer), true) = (port, live) else {
            return; // dropping the stream closes it
        };
        if self.conns.len() >= MAX_CONNECTIONS {
            return;
        }
        let local = self.alloc_local_port(peer);
        let mut c = Conn::new(p.stream, token, State::Connecting);
        c.send_request = true;
        self.insert((local, peer), c);
    }

    /// Fills RX buffers with what is waiting for the guest. Returns true if any
    /// buffer was used.
    pub fn fill_rx(&mut self, q: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, DeviceError> {
        let qerr = |source| DeviceError::Queue { queue: RXQ, source };
        let mut used = false;
        while !self.rst_queue.is_empty() || !self.rx_queue.is_empty() {
            let Some(mut chain) = q.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let mut pkt = match VsockPacket::from_rx_virtq_chain(mem, &mut chain, MAX_PKT_DATA) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "vsock: unusable RX buffer returned unused");
                    q.add_used(mem, head, 0).map_err(qerr)?;
                    used = true;
                    continue;
                }
            };
            match self.next_packet(&mut pkt) {
                Some(out) => {
                    let hdr = header(self.guest_cid, &out);
                    let len = match pkt.set_header_from_raw(&hdr) {
                        Ok(()) => PKT_HEADER_SIZE as u32 + out.len,
                        Err(_) => 0,
                    };
                    q.add_used(mem, head, len).map_err(qerr)?;
                    used = true;
                }
                None => {
                    q.go_to_previous_position();
                    break;
                }
            }
        }
        Ok(used)
    }

    /// Produces the next packet for the guest into `pkt`'s data (if any) and
    /// returns its header fields; `None` when nobody has anything to send.
    fn next_packet(&mut self, pkt: &mut VsockPacket<'_, ()>) -> Option<Out> {
        if let Some(key) = self.rst_queue.pop_front() {
            return Some(Out {
                key,
                op: OP_RST,
                flags: 0,
                len: 0,
                credit: (0, 0),
            });
        }
        while let Some(key) = self.rx_queue.pop_front() {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            c.queued = false;
            let out = Self::conn_packet(key, c, pkt);
            let reset = out.as_ref().is_some_and(|o| o.op == OP_RST);
            if reset {
                self.remove(key);
            } else {
                self.reschedule(key);
            }
            if out.is_some() {
                return out;
            }
        }
        None
    }

    /// The next packet of one connection, in priority order.
    fn conn_packet(key: Key, c: &mut Conn, pkt: &mut VsockPacket<'_, ()>) -> Option<Out> {
        let out = |op, flags, len, c: &mut Conn| {
            Some(Out {
                key,
                op,
                flags,
                len,
                credit: c.credit_for_header(),
            })
        };
        if c.send_rst {
            return out(OP_RST, 0, 0, c);
        }
        if c.send_request {
            c.send_request = false;
            return out(OP_REQUEST, 0, 0, c);
        }
        if c.send_response {
            c.send_response = false;
            return out(OP_RESPONSE, 0, 0, c);
        }
        if c.may_read_host() && c.host_readable && c.peer_credit() > 0 {
            if let Some(data) = pkt.data_slice().filter(|d| !d.is_empty()) {
                let n = (c.peer_credit() as usize).min(data.len());
                // Err(true): the socket failed; Err(false): nothing to read now.
                let r: Result<usize, bool> = match data.subslice(0, n) {
                    Err(_) => Err(true),
                    Ok(mut s) => match c.stream.read_volatile(&mut s) {
                        Ok(n) => Ok(n),
                        Err(vm_memory::VolatileMemoryError::IOError(e)) if would_block(&e) => {
                            Err(false)
                        }
                        Err(_) => Err(true),
                    },
                };
                match r {
                    Ok(0) => {
                        c.host_readable = false;
                        c.host_eof = true;
                        if c.host_hup || c.guest_no_send {
                            c.send_rst = true;
                            return out(OP_RST, 0, 0, c);
                        }
                        c.send_host_shutdown = true;
                    }
                    Ok(n) => {
                        c.sent_to_guest(n as u32);
                        if c.peer_credit() == 0 {
                            c.send_credit_request = true;
                        }
                        return out(OP_RW, 0, n as u32, c);
                    }
                    Err(true) => {
                        c.send_rst = true;
                        return out(OP_RST, 0, 0, c);
                    }
                    Err(false) if c.host_hup => {
                        c.send_rst = true;
                        return out(OP_RST, 0, 0, c);
                    }
                    Err(false) => c.host_readable = false,
                }
            }
        }
        if c.send_host_shutdown {
            c.send_host_shutdown = false;
            return out(OP_SHUTDOWN, SHUTDOWN_SEND, 0, c);
        }
        if c.credit_update_due() {
            return out(OP_CREDIT_UPDATE, 0, 0, c);
        }
        if c.send_credit_request {
            c.send_credit_request = false;
            return out(OP_CREDIT_REQUEST, 0, 0, c);
        }
        None
    }
}
