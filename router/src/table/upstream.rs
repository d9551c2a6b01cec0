//! One app's upstream and the requests in flight on it, so an old
//! upstream can be drained before its VM stops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
}

impl Upstream {
    pub(crate) fn new(app: &str, addr: SocketAddr, deploy: i64) -> Upstream {
        Upstream {
            app: app.to_string(),
            addr,
            deploy,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
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
