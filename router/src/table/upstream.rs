//! One app's upstream (an instance: one VM), the requests in flight on it
//! (so it can be drained before its VM stops, and so the balancer can send
//! the next request to the least busy instance), and whether it is healthy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One app's upstream (a VM's forwarded port).
#[derive(Debug)]
pub struct Upstream {
    /// The app served.
    pub app: String,
    /// Where the app listens.
    pub addr: SocketAddr,
    /// Which deploy this upstream belongs to.
    pub deploy: i64,
    inflight: AtomicUsize,
    idle: Notify,
    /// Passive health: after a failed connection, not picked (while another
    /// instance is healthy) until this many ms after [`epoch`]; 0 = healthy.
    failed_until_ms: AtomicU64,
    /// Active health, set by the platform's checks ([`crate::RouteTable::set_healthy`]).
    checked_down: AtomicBool,
}

/// How long an instance that failed a new connection is passed over.
pub const FAILED_CONNECT_BACKOFF: Duration = Duration::from_secs(5);

/// A process-wide zero for the passive-health deadlines (an `Instant` does
/// not fit an atomic; milliseconds since this do).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // Never 0, so 0 can mean "healthy".
    epoch().elapsed().as_millis() as u64 + 1
}

impl Upstream {
    pub(crate) fn new(app: &str, addr: SocketAddr, deploy: i64) -> Upstream {
        Upstream {
            app: app.to_string(),
            addr,
            deploy,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            failed_until_ms: AtomicU64::new(0),
            checked_down: AtomicBool::new(false),
        }
    }

    /// Whether the balancer should send it requests: its health check (if
    /// the platform reports one) passes and it has not refused a
    /// connection in the last [`FAILED_CONNECT_BACKOFF`].
    pub fn is_healthy(&self) -> bool {
        if self.checked_down.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.failed_until_ms.load(Ordering::Relaxed);
        // The clock is read only while a failure is remembered.
        until == 0 || now_ms() >= until
    }

    /// A connect to it failed, or a new connection closed before any
    /// answer (what QEMU's port forward does while nothing in the guest
    /// listens): pass it over for a while.
    pub(crate) fn mark_failed(&self) {
        let now = now_ms();
        let until = now + FAILED_CONNECT_BACKOFF.as_millis() as u64;
        let before = self.failed_until_ms.swap(until, Ordering::Relaxed);
        // Once per outage, not once per request while every instance is down.
        if before <= now {
            tracing::info!(
                app = %self.app,
                addr = %self.addr,
                "router: instance failed a new connection; passed over for {FAILED_CONNECT_BACKOFF:?}"
            );
        }
    }

    /// It answered: forget an earlier failure.
    pub(crate) fn answered(&self) {
        if self.failed_until_ms.load(Ordering::Relaxed) != 0 {
            self.failed_until_ms.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_checked_healthy(&self, healthy: bool) {
        self.checked_down.store(!healthy, Ordering::Relaxed);
        if healthy {
            self.failed_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Requests being served right now.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `timeout` passes. Returns
    /// the number still in flight (0 = fully drained).
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            if self.inflight() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inflight();
            }
        }
    }
}

/// Counts a request in flight for as long as it lives.
pub struct InflightGuard(Arc<Upstream>);

impl InflightGuard {
    /// Starts counting a request against `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> InflightGuard {
        upstream.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(upstream)
    }

    /// The upstream counted against.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.0
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
