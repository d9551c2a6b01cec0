//! Per-connection limits, each with a message where the client can still
//! get one: the handshake deadline (version line, key exchange and the
//! start of authentication; closed hard, nothing can be said before the
//! key exchange), the login deadline (authentication; a disconnect reason,
//! then closed hard), the idle timeout (a stalled git exchange ends with a
//! stderr message; an authenticated connection that runs nothing is
//! disconnected with a reason OpenSSH prints), the connection limit's
//! message, and [`WarnLimiter`], which keeps a flood from flooding the log.
//! Who gets a slot at all is [`crate::admission`]'s job; the maximum pack
//! size lives with receive-pack.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Authenticated connections told the server is full beyond
/// `max_connections + HARD_EXTRA` are disconnected right away instead.
pub const HARD_EXTRA: usize = 32;

/// What a connection is doing, shared by its handler and its watchdog.
#[derive(Debug)]
pub struct ConnState {
    started: Instant,
    handshake_done: AtomicBool,
    authenticated: AtomicBool,
    running: AtomicUsize,
    ran: AtomicBool,
    last_activity: Mutex<Instant>,
    changed: tokio::sync::Notify,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            started: Instant::now(),
            handshake_done: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            ran: AtomicBool::new(false),
            last_activity: Mutex::new(Instant::now()),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl ConnState {
    /// The key exchange is done and the client began to authenticate.
    pub fn handshake_done(&self) {
        if !self.handshake_done.swap(true, Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// Has the key exchange completed (so messages can reach the client)?
    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done.load(Ordering::SeqCst)
    }

    /// Marks the connection authenticated.
    pub fn authenticated(&self) {
        self.handshake_done.store(true, Ordering::SeqCst);
        self.authenticated.store(true, Ordering::SeqCst);
        self.touch();
        self.changed.notify_one();
    }

    /// Records activity now.
    pub fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// A command starts; the guard marks its end.
    pub fn running(self: &Arc<Self>) -> RunningGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.ran.store(true, Ordering::SeqCst);
        self.touch();
        RunningGuard(self.clone())
    }

    /// Has a command run, or is one running, on this connection?
    pub fn ran_anything(&self) -> bool {
        self.ran.load(Ordering::SeqCst)
    }
}

/// Marks the end of a command when dropped.
pub struct RunningGuard(Arc<ConnState>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// Renders a duration for messages (`90 s`, `10 min`).
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s > 0 {
        format!("{s} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The deadlines a connection lives by.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From accept to the start of authentication (key exchange done).
    pub handshake: Duration,
    /// From accept to successful authentication.
    pub login: Duration,
    /// Without a command, or without data in a git exchange.
    pub idle: Duration,
}

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// No key exchange within the handshake deadline: the socket is
    /// dropped (no message can be sent before the key exchange).
    Handshake(Duration),
    /// No authentication within the login deadline.
    Login(Duration),
    /// Authenticated, but no command for the idle timeout.
    Idle(Duration),
}

impl Closing {
    /// The disconnect reason the client is sent (where it can be).
    pub fn reason(&self) -> String {
        crate::wording::closing(self)
    }
}

/// Waits until the connection must be closed and says why.
pub async fn watchdog(state: &ConnState, limits: Deadlines) -> Closing {
    loop {
        let now = Instant::now();
        let deadline = if !state.authenticated.load(Ordering::SeqCst) {
            let (deadline, closing) = if state.handshake_done.load(Ordering::SeqCst)
                || limits.handshake >= limits.login
            {
                (state.started + limits.login, Closing::Login(limits.login))
            } else {
                (
                    state.started + limits.handshake,
                    Closing::Handshake(limits.handshake),
                )
            };
            if now >= deadline {
                return closing;
            }
            deadline
        } else if state.running.load(Ordering::SeqCst) > 0 {
            // A running command watches its own streams.
            now + limits.idle.min(Duration::from_secs(1))
        } else {
            let last = *state
                .last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if now >= last + limits.idle {
                return Closing::Idle(limits.idle);
            }
            last + limits.idle
        };
        // Re-evaluate at the deadline or as soon as the state changes.
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = state.changed.notified() => {}
        }
    }
}

/// Writes WARN lines about refused and closed connections at most once
/// per interval, each saying how many were left out, so a flood costs
/// the log one line per interval.
pub struct WarnLimiter {
    interval: Duration,
    last: Mutex<Option<(std::time::Instant, u64)>>,
    written: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: Mutex::new(None),
            written: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Writes `what` about `peer` as a WARN line, or counts it as left out.
    pub fn warn(&self, peer: std::net::SocketAddr, what: &dyn std::fmt::Display) {
        let now = std::time::Instant::now();
        let left_out = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match *last {
                Some((at, ref mut n)) if now.duration_since(at) < self.interval => {
                    *n += 1;
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some((_, n)) => {
                    *last = Some((now, 0));
                    n
                }
                None => {
                    *last = Some((now, 0));
                    0
                }
            }
        };
        self.written.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %peer,
            left_out,
            "gitd: connection closed: {what} (at most one such line per {}; {left_out} left out since the last)",
            human(self.interval)
        );
    }

    /// Lines written and lines left out so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.written.load(Ordering::Relaxed),
            self.suppressed.load(Ordering::Relaxed),
        )
    }
}

/// A stream whose reads and writes fail with `TimedOut` after `timeout`
/// without progress, setting `fired` so the caller can say why.
pub struct IdleIo<S> {
    inner: S,
    timeout: Duration,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    fired: Arc<AtomicBool>,
}

impl<S> IdleIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration, fired: Arc<AtomicBool>) -> IdleIo<S> {
        IdleIo {
            inner,
            timeout,
            read_timer: None,
            write_timer: None,
            fired,
        }
    }
}

fn poll_timer(
    timer: &mut Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    fired: &AtomicBool,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
    match t.as_mut().poll(cx) {
        Poll::Ready(()) => {
            fired.store(true, Ordering::SeqCst);
            Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("idle for {}", human(timeout)),
            ))
        }
        Poll::Pending => Poll::Pending,
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                poll_timer(&mut this.read_timer, this.timeout, &this.fired, cx).map(Err)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.write_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                poll_timer(&mut this.write_timer, this.timeout, &this.fired, cx).map(Err)
            }
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_chatty_one_does_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let fired = Arc::new(AtomicBool::new(false));
        let mut io = IdleIo::new(server, Duration::from_secs(10), fired.clone());
        use tokio::io::AsyncWriteExt;
        // Data every 6 s keeps it alive past 10 s in total.
        let writer = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                client.write_all(b"x").await.unwrap();
            }
            client // kept open, silent
        });
        let mut b = [0u8; 1];
        for _ in 0..3 {
            io.read_exact(&mut b).await.unwrap();
        }
        assert!(!fired.load(Ordering::SeqCst));
        let _client = writer.await.unwrap();
        let e = io.read_exact(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(fired.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_reasons() {
        let limits = Deadlines {
            handshake: Duration::from_secs(2),
            login: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        };
        // No key exchange: the handshake deadline, the shorter one.
        let s = ConnState::default();
        let started = Instant::now();
        let r = watchdog(&s, limits).await;
        assert_eq!(r, Closing::Handshake(Duration::from_secs(2)));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(r
            .reason()
            .contains("key exchange did not complete within 2 s"));
        // Key exchange done, no authentication: the login deadline.
        let s = Arc::new(ConnState::default());
        let w = tokio::spawn({
            let s = s.clone();
            async move { watchdog(&s, limits).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.handshake_done();
        let r = w.await.unwrap();
        assert_eq!(r, Closing::Login(Duration::from_secs(5)));
        assert!(r
            .reason()
            .contains("authentication did not complete within 5 s"));
        // Authenticated and running: never idle; then idle.
        let s = Arc::new(ConnState::default());
        s.authenticated();
        assert!(!s.ran_anything());
        let g = s.running();
        assert!(s.ran_anything());
        let w = tokio::spawn({
            let s = s.clone();
            async move { watchdog(&s, limits).await }
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!w.is_finished(), "a running command is not idle");
        drop(g);
        let r = w.await.unwrap();
        assert!(r.reason().contains("no command for 1 min"), "{r:?}");
        assert_eq!(human(Duration::from_millis(1500)), "1 s");
    }

    #[test]
    fn a_flood_of_warnings_writes_one_line_per_interval() {
        let w = WarnLimiter::new(Duration::from_secs(3600));
        let peer = "127.0.0.2:4000".parse().unwrap();
        for _ in 0..1000 {
            w.warn(peer, &"refused");
        }
        assert_eq!(w.counts(), (1, 999));
        let w = WarnLimiter::new(Duration::ZERO);
        for _ in 0..3 {
            w.warn(peer, &"refused");
        }
        assert_eq!(w.counts(), (3, 0));
    }
}
