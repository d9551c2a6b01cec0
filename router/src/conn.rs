//! One client connection: what it is doing now, when a byte last moved on
//! it, and the watchdog that closes it when a deadline passes.
//!
//! hyper's own `header_read_timeout` starts counting the moment a
//! keep-alive connection goes idle, which would make the idle timeout the
//! header timeout; the phases below keep the two apart. The socket is
//! wrapped in [`TimedIo`], which notes the time of every read and write
//! that moved bytes (a clock read, no lock); [`crate::watchdog`] reads the
//! phase and those times.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::limits::Slot;
use crate::proxy::Proxy;
use crate::watchdog::{Closed, Due, Signal};

/// What a connection is doing, for the watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// A request head is arriving (or due, on a new connection): it must be
    /// whole within `header_read_timeout` of its start.
    ReadingHead = 0,
    /// Between requests on a keep-alive connection.
    Idle = 1,
    /// A request waits for the app's response head; the request's own
    /// `upstream_response_timeout` governs — unless the client is still
    /// sending its body, which may not stall longer than `idle_timeout`.
    AwaitingUpstream = 2,
    /// A response (and maybe still the request body) is flowing.
    Streaming = 3,
    /// An upgraded connection (WebSocket) tunnelled to the app.
    Tunnel = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::ReadingHead,
            1 => Phase::Idle,
            2 => Phase::AwaitingUpstream,
            3 => Phase::Streaming,
            _ => Phase::Tunnel,
        }
    }
}

/// One client connection's shared state: the socket wrapper, the request
/// handler and the response body all see it.
pub(crate) struct ConnState {
    pub proxy: Arc<Proxy>,
    pub peer: SocketAddr,
    /// The peer's address as a header value (made once, cloned per request).
    pub peer_header: HeaderValue,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    base: Instant,
    phase: AtomicU8,
    /// When the current request head started, ms after `base`.
    head_since: AtomicU64,
    /// When a byte last moved either way, ms after `base`.
    last_activity: AtomicU64,
    /// A request body is still arriving from the client.
    body_open: AtomicBool,
    /// Raised by the watchdog: the connection must close.
    pub(crate) close: Signal,
    /// Raised by the watchdog: the app's response head may be overdue.
    pub(crate) upstream_due: Signal,
    /// The connection's place under the caps, given back when the last
    /// user of the socket is gone (an upgraded connection outlives hyper's).
    _slot: Slot,
}

impl ConnState {
    pub fn new(proxy: Arc<Proxy>, peer: SocketAddr, trusted: bool, slot: Slot) -> ConnState {
        let peer_header = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnState {
            proxy,
            peer,
            peer_header,
            trusted,
            base: Instant::now(),
            phase: AtomicU8::new(Phase::ReadingHead as u8),
            head_since: AtomicU64::new(0),
            last_activity: AtomicU64::new(0),
            body_open: AtomicBool::new(false),
            close: Signal::default(),
            upstream_due: Signal::default(),
            _slot: slot,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Notes whether a request body is still arriving: while it is, a
    /// silent client is stalling (idle), not waiting for the app.
    pub fn set_body_open(&self, open: bool) {
        self.body_open.store(open, Ordering::Relaxed);
    }

    pub fn body_open(&self) -> bool {
        self.body_open.load(Ordering::Relaxed)
    }

    /// When a byte last moved on the connection.
    pub fn last_activity(&self) -> Instant {
        self.base + Duration::from_millis(self.last_activity.load(Ordering::Relaxed))
    }

    fn on_write(&self) {
        self.last_activity.store(self.now_ms(), Ordering::Relaxed);
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_activity.store(now, Ordering::Relaxed);
        // The first byte after an idle spell starts the next request head.
        if self.phase() == Phase::Idle {
            self.head_since.store(now, Ordering::Relaxed);
            self.set_phase(Phase::ReadingHead);
        }
    }

    /// The deadline of the current phase, ms after `base`, and what is due
    /// when it passes.
    pub(crate) fn deadline(&self) -> (u64, Due) {
        let config = &self.proxy.config;
        let ms = |d: Duration| d.as_millis() as u64;
        let last_activity = self.last_activity.load(Ordering::Relaxed);
        match self.phase() {
            Phase::ReadingHead => (
                self.head_since.load(Ordering::Relaxed) + ms(config.header_read_timeout),
                Due::Close(Closed::SlowHead),
            ),
            Phase::AwaitingUpstream if !self.body_open() => (
                last_activity + ms(config.upstream_response_timeout),
                Due::UpstreamTimeout,
            ),
            Phase::Idle | Phase::Streaming | Phase::Tunnel | Phase::AwaitingUpstream => (
                last_activity + ms(config.idle_timeout),
                Due::Close(Closed::Idle),
            ),
        }
    }

    /// Whether the app's response head is overdue now.
    pub(crate) fn upstream_overdue(&self) -> bool {
        !self.body_open()
            && self.last_activity() + self.proxy.config.upstream_response_timeout <= Instant::now()
    }
}

/// The client socket, noting when bytes move.
pub(crate) struct TimedIo {
    stream: TcpStream,
    conn: Arc<ConnState>,
}

impl TimedIo {
    pub fn new(stream: TcpStream, conn: Arc<ConnState>) -> TimedIo {
        TimedIo { stream, conn }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.conn.on_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        if n > 0 {
            this.conn.on_write();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.conn.on_write();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
