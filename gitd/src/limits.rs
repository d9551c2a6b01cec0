//! Connection limits, each with a message the client sees: the maximum
//! number of connections (told after authentication, on stderr, with a
//! non-zero exit), the idle timeout (a stalled git exchange ends with a
//! stderr message; an authenticated connection that runs nothing is
//! disconnected with a reason OpenSSH prints), and the login timeout.
//! The maximum pack size lives with receive-pack.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Connections beyond `max_connections + HARD_EXTRA` are closed before
/// the SSH handshake (no message: they would cost a key exchange each).
pub const HARD_EXTRA: usize = 32;

/// What a connection is doing, shared by its handler and its watchdog.
#[derive(Debug)]
pub struct ConnState {
    started: Instant,
    authenticated: AtomicBool,
    running: AtomicUsize,
    last_activity: Mutex<Instant>,
    changed: tokio::sync::Notify,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            started: Instant::now(),
            authenticated: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            last_activity: Mutex::new(Instant::now()),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl ConnState {
    /// Marks the connection authenticated.
    pub fn authenticated(&self) {
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
        self.touch();
        RunningGuard(self.clone())
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

/// The message an over-limit client gets.
pub fn at_connection_limit(max: usize) -> String {
    format!(
        "byteport: the server is at its connection limit ({max} connections); try again in a moment"
    )
}

/// The message a client that stalled a git exchange gets.
pub fn idle_message(timeout: Duration) -> String {
    format!(
        "byteport: nothing received from the client for {}: closing the connection (idle timeout)",
        human(timeout)
    )
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

/// Waits until the connection must be closed for idleness and returns the
/// reason to send with the disconnect.
pub async fn watchdog(state: &ConnState, idle: Duration, login: Duration) -> String {
    loop {
        let now = Instant::now();
        let deadline = if !state.authenticated.load(Ordering::SeqCst) {
            let d = state.started + login;
            if now >= d {
                return format!(
                    "byteport: authentication did not complete within {}",
                    human(login)
                );
            }
            d
        } else if state.running.load(Ordering::SeqCst) > 0 {
            // A running command watches its own streams.
            now + idle.min(Duration::from_secs(1))
        } else {
            let last = *state
                .last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let d = last + idle;
            if now >= d {
                return format!(
                    "byteport: no command for {}: closing the connection (idle timeout)",
                    human(idle)
                );
            }
            d
        };
        // Re-evaluate at the deadline or as soon as the state changes.
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = state.changed.notified() => {}
        }
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
        let s = ConnState::default();
        let r = watchdog(&s, Duration::from_secs(30), Duration::from_secs(5)).await;
        assert!(
            r.contains("authentication did not complete within 5 s"),
            "{r}"
        );
        let s = Arc::new(ConnState::default());
        s.authenticated();
        let g = s.running();
        let w = tokio::spawn({
            let s = s.clone();
            async move { watchdog(&s, Duration::from_secs(60), Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!w.is_finished(), "a running command is not idle");
        drop(g);
        let r = w.await.unwrap();
        assert!(r.contains("no command for 1 min"), "{r}");
        assert_eq!(human(Duration::from_millis(1500)), "1 s");
    }
}
