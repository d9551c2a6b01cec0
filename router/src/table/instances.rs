//! Several instances (VMs) per app: which one gets the next request, and
//! changing the set one instance at a time (scaling, a rolling redeploy).
//!
//! Picking is least outstanding requests among the healthy instances,
//! ties broken round-robin so idle traffic still splits evenly. An
//! instance is unhealthy while the platform's health check says so
//! ([`RouteTable::set_healthy`]) or for a few seconds after it refused a
//! connection. When no instance is healthy every one is still tried, least
//! busy first: a health mark may be stale, and a refused connect costs
//! little — so a single-instance app behaves as it always did.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{names::RouteError, Refused, Route, RouteTable, Upstream};

/// The instances serving one app, as the balancer sees them. Never empty.
/// Replaced as a whole when an instance is added or removed; the
/// [`Upstream`]s (their in-flight counts and health) carry over.
#[derive(Debug)]
pub struct Instances {
    app: String,
    upstreams: Vec<Arc<Upstream>>,
    /// Where the next round-robin scan starts.
    next: AtomicUsize,
}

impl Instances {
    pub(super) fn new(app: &str, upstreams: Vec<Arc<Upstream>>) -> Instances {
        debug_assert!(!upstreams.is_empty());
        Instances {
            app: app.to_string(),
            upstreams,
            next: AtomicUsize::new(0),
        }
    }

    /// The app served.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// Every instance, in the order they were added.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The newest deploy among the instances (during a rolling redeploy
    /// they belong to two).
    pub fn deploy(&self) -> i64 {
        self.upstreams.iter().map(|u| u.deploy).max().unwrap_or(0)
    }

    /// The instance the next request should go to.
    pub fn pick(&self) -> &Arc<Upstream> {
        self.pick_except(&[])
            .unwrap_or_else(|| unreachable!("instances are never empty"))
    }

    /// [`Instances::pick`] among those not at `tried` (for a retry);
    /// `None` when every instance has been tried.
    pub(crate) fn pick_except(&self, tried: &[SocketAddr]) -> Option<&Arc<Upstream>> {
        if let [only] = self.upstreams.as_slice() {
            return (!tried.contains(&only.addr)).then_some(only);
        }
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<((bool, usize), &Arc<Upstream>)> = None;
        for i in 0..n {
            let u = &self.upstreams[(start + i) % n];
            if tried.contains(&u.addr) {
                continue;
            }
            // Healthy first, then least in flight; the first found wins a tie.
            let key = (!u.is_healthy(), u.inflight());
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, u));
            }
        }
        best.map(|(_, u)| u)
    }

    fn find(&self, addr: SocketAddr) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.addr == addr)
    }
}

/// Refuses an empty or repeating list of instance addresses.
pub(super) fn check_addrs(app: &str, addrs: &[SocketAddr]) -> Result<(), RouteError> {
    if addrs.is_empty() {
        return Err(RouteError::NoInstances { app: app.into() });
    }
    let mut seen = HashSet::with_capacity(addrs.len());
    match addrs.iter().find(|a| !seen.insert(**a)) {
        Some(addr) => Err(RouteError::DuplicateInstance {
            app: app.into(),
            addr: *addr,
        }),
        None => Ok(()),
    }
}

impl RouteTable {
    /// The instances serving `app` now (empty when it is not up).
    pub fn instances(&self, app: &str) -> Vec<Arc<Upstream>> {
        match self.read().route_of(app) {
            Some(Route::Up(set)) => set.upstreams.clone(),
            _ => Vec::new(),
        }
    }

    /// Adds an instance of `deploy` at `addr` to `app`: it takes requests
    /// at once. An app that is down (or deploying) comes up on the hosts
    /// it holds, with this one instance; an app the table does not know
    /// gets its default host. Refused, with nothing changed, when `app`
    /// already has an instance at `addr`.
    pub fn add_instance(
        &self,
        app: &str,
        addr: SocketAddr,
        deploy: i64,
    ) -> Result<Arc<Upstream>, RouteError> {
        let added = Arc::new(Upstream::new(app, addr, deploy));
        let mut inner = self.write();
        let mut upstreams = match inner.route_of(app) {
            Some(Route::Up(set)) => {
                if set.find(addr).is_some() {
                    return Err(RouteError::DuplicateInstance {
                        app: app.into(),
                        addr,
                    });
                }
                set.upstreams.clone()
            }
            _ => Vec::new(),
        };
        upstreams.push(added.clone());
        let held = inner.hosts_of_app.get(app).cloned().unwrap_or_default();
        let hosts = inner
            .hosts(app, &held, &self.suffix, Refused::Skip)
            .unwrap_or_else(|_| unreachable!("skipping never refuses"));
        inner.unmap(app);
        inner.map(
            app,
            hosts,
            Route::Up(Arc::new(Instances::new(app, upstreams))),
        );
        Ok(added)
    }

    /// Takes the instance at `addr` out of `app`'s rotation: no new request
    /// goes to it. Returns it, so the caller can [`Upstream::drain`] it
    /// before stopping its VM; `None` (nothing changed) if `app` has no
    /// instance there. Removing the last instance leaves the app down
    /// (502, "it has no instance running").
    pub fn remove_instance(&self, app: &str, addr: SocketAddr) -> Option<Arc<Upstream>> {
        let mut inner = self.write();
        let Some(Route::Up(set)) = inner.route_of(app) else {
            return None;
        };
        let removed = set.find(addr)?.clone();
        let rest: Vec<_> = set
            .upstreams
            .iter()
            .filter(|u| u.addr != addr)
            .cloned()
            .collect();
        let route = if rest.is_empty() {
            Route::Down {
                app: app.into(),
                why: "it has no instance running".into(),
            }
        } else {
            Route::Up(Arc::new(Instances::new(app, rest)))
        };
        inner.replace_route(app, route);
        Some(removed)
    }

    /// Reports the platform's health check of the instance at `addr`: an
    /// unhealthy instance gets no requests while another is healthy.
    /// Returns whether `app` has an instance there.
    pub fn set_healthy(&self, app: &str, addr: SocketAddr, healthy: bool) -> bool {
        match self.read().route_of(app) {
            Some(Route::Up(set)) => match set.find(addr) {
                Some(u) => {
                    u.set_checked_healthy(healthy);
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}
