//! One vsock stream connection between a guest port and a host Unix socket:
//! state, credit accounting in both directions, and what must be told to the
//! guest next.
//!
//! Credit (virtio spec 5.10.6.3): each side advertises `buf_alloc` (its receive
//! buffer) and `fwd_cnt` (bytes it has consumed). A sender may have at most
//! `peer_buf_alloc - (sent - peer_fwd_cnt)` bytes in flight. We never send the
//! guest more than that, and a guest that sends us more than our `buf_alloc`
//! allows is violating the protocol: its connection is reset.

use std::collections::VecDeque;
use std::io::Write;
use std::num::Wrapping;
use std::os::unix::net::UnixStream;

use vm_memory::{VolatileSlice, WriteVolatile};
use vmm_sys_util::epoll::EventSet;

use super::CONN_BUF_ALLOC;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Host-initiated: REQUEST sent (or queued), waiting for the guest's RESPONSE.
    Connecting,
    /// Data may flow.
    Established,
}

/// The host side of one connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub stream: UnixStream,
    pub token: u32,
    pub state: State,
    /// Control packets owed to the guest.
    pub send_request: bool,
    pub send_response: bool,
    pub send_rst: bool,
    /// Host closed its write side: tell the guest with SHUTDOWN(SEND) once.
    pub send_host_shutdown: bool,
    pub send_credit_request: bool,
    /// Epoll said the host socket is readable and we have not drained it yet.
    pub host_readable: bool,
    /// The host side will send no more (EOF seen).
    pub host_eof: bool,
    /// The host socket hung up entirely (it is off the event loop).
    pub host_hup: bool,
    /// The guest said it will send / receive no more (SHUTDOWN flags).
    pub guest_no_send: bool,
    pub guest_no_recv: bool,
    /// In the muxer's RX queue already.
    pub queued: bool,
    /// Events currently registered on the event loop (`None`: off the loop).
    pub interest: Option<EventSet>,
    // Host → guest.
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    rx_cnt: Wrapping<u32>,
    // Guest → host.
    tx_buf: VecDeque<u8>,
    fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
}

/// The guest broke the protocol on this connection; it gets a RST.
#[derive(Debug)]
pub(super) struct Violation(pub &'static str);

impl Conn {
    pub fn new(stream: UnixStream, token: u32, state: State) -> Self {
        Self {
            stream,
            token,
            state,
            send_request: false,
            send_response: false,
            send_rst: false,
            send_host_shutdown: false,
            send_credit_request: false,
            host_readable: false,
            host_eof: false,
            host_hup: false,
            guest_no_send: false,
            guest_no_recv: false,
            queued: false,
            interest: None,
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            rx_cnt: Wrapping(0),
            tx_buf: VecDeque::new(),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
        }
    }

    /// Records the credit the guest advertises in every packet it sends.
    pub fn peer_credit_update(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
        if self.peer_credit() > 0 {
            self.send_credit_request = false;
        }
    }

    /// Bytes we may still send to the guest. A guest claiming to have consumed
    /// more than we sent gets no extra credit from it.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Bytes just sent to the guest.
    pub fn sent_to_guest(&mut self, n: u32) {
        self.rx_cnt += Wrapping(n);
    }

    /// Our credit figures for an outgoing header: (buf_alloc, fwd_cnt). The guest
    /// learns them from every packet, so this also settles any pending update.
    pub fn credit_for_header(&mut self) -> (u32, u32) {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        (CONN_BUF_ALLOC, self.fwd_cnt.0)
    }

    /// The guest asked for our credit figures (CREDIT_REQUEST).
    pub fn force_credit_update(&mut self) {
        self.last_fwd_cnt_sent = self.fwd_cnt - Wrapping(CONN_BUF_ALLOC);
    }

    /// The guest may be running out of credit: it has been told less than half
    /// of what we have forwarded since.
    pub fn credit_update_due(&self) -> bool {
        (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CONN_BUF_ALLOC / 2
    }

    /// Host-bound bytes still buffered.
    pub fn pending_tx(&self) -> usize {
        self.tx_buf.len()
    }

    /// Whether reading from the host socket is allowed now.
    pub fn may_read_host(&self) -> bool {
        self.state == State::Established && !self.host_eof && !self.guest_no_recv
    }

    /// Data from the guest for the host socket: written straight through when
    /// possible, buffered otherwise.
    pub fn take_from_guest(&mut self, data: &VolatileSlice<'_, ()>) -> Result<(), Violation> {
        if self.state != State::Established {
            return Err(Violation("data before the connection was established"));
        }
        if self.guest_no_send {
            return Err(Violation("data after SHUTDOWN(SEND)"));
        }
        if self.tx_buf.len() + data.len() > CONN_BUF_ALLOC as usize {
            return Err(Violation("data beyond the advertised credit"));
        }
        let mut done = 0;
        if self.tx_buf.is_empty() {
            match self.stream.write_volatile(data) {
                Ok(n) => done = n,
                Err(vm_memory::VolatileMemoryError::IOError(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The host side is gone; the caller notices on the next flush.
                Err(_) => {}
            }
        }
        if done < data.len() {
            let rest = data
                .subslice(done, data.len() - done)
                .map_err(|_| Violation("slice"))?;
            let mut tmp = vec![0u8; rest.len()];
            rest.copy_to(&mut tmp[..]);
            self.tx_buf.extend(tmp);
        }
        self.fwd_cnt += Wrapping(done as u32);
        Ok(())
    }

    /// Writes buffered guest data to the host socket. Returns false if the host
    /// side cannot take data any more (closed).
    pub fn flush_to_host(&mut self) -> bool {
        while !self.tx_buf.is_empty() {
            let (a, _) = self.tx_buf.as_slices();
            match self.stream.write(a) {
                Ok(0) => return false,
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.fwd_cnt += Wrapping(n as u32);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether the guest should be offered this connection's next RX packet.
    pub fn has_rx(&self) -> bool {
        self.send_rst
            || self.send_request
            || self.send_response
            || (self.may_read_host() && self.host_readable && self.peer_credit() > 0)
            || self.send_host_shutdown
            || self.credit_update_due()
            || self.send_credit_request
    }

    /// The events to watch on the host socket given the state.
    pub fn desired_interest(&self) -> EventSet {
        let mut ev = EventSet::empty();
        if self.may_read_host() && !self.host_readable && self.peer_credit() > 0 {
            ev |= EventSet::IN;
        }
        if !self.tx_buf.is_empty() {
            ev |= EventSet::OUT;
        }
        ev
    }
}
