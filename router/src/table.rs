//! The routing table: host name → the app's current upstream, with
//! in-flight counting so an old upstream can be drained before its VM stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
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
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a host resolves to.
#[derive(Debug, Clone)]
pub enum Route {
    /// The app is serving here.
    Up(Arc<Upstream>),
    /// The app exists but nothing serves it right now (booting, crashed, stopped).
    Down {
        /// The app.
        app: String,
        /// Why, for the 502 page ("it is starting", "it was stopped by its owner").
        why: Arc<str>,
    },
}

#[derive(Default)]
struct Inner {
    by_host: HashMap<String, Route>,
    hosts_of_app: HashMap<String, Vec<String>>,
}

impl Inner {
    fn unmap(&mut self, app: &str) -> Option<Arc<Upstream>> {
        let mut previous = None;
        for h in self.hosts_of_app.remove(app).unwrap_or_default() {
            if let Some(Route::Up(u)) = self.by_host.remove(&h) {
                previous = Some(u);
            }
        }
        previous
    }

    fn map(&mut self, app: &str, hosts: Vec<String>, route: Route) {
        for h in &hosts {
            self.by_host.insert(h.clone(), route.clone());
        }
        self.hosts_of_app.insert(app.to_string(), hosts);
    }
}

/// Host → upstream routes, shared by the router and the supervisor.
#[derive(Default, Clone)]
pub struct RouteTable {
    inner: Arc<RwLock<Inner>>,
    suffix: Arc<String>,
}

/// Normalises a Host header: lower case, port and trailing dot removed.
pub fn normalize_host(host: &str) -> String {
    normalized(host).into_owned()
}

/// [`normalize_host`] without allocating when the name is already lower
/// case (the common case: browsers send `app.localhost:8000`).
fn normalized(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port → [v6]
        match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => host,
        }
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
    };
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

impl RouteTable {
    /// A table whose default host for app `a` is `a.<suffix>` (e.g. `localhost`).
    pub fn new(suffix: &str) -> RouteTable {
        RouteTable {
            inner: Arc::default(),
            suffix: Arc::new(suffix.to_string()),
        }
    }

    fn hosts_for(&self, app: &str, domains: &[String]) -> Vec<String> {
        let mut hosts = vec![format!("{app}.{}", self.suffix)];
        hosts.extend(domains.iter().map(|d| normalize_host(d)));
        hosts
    }

    /// Points `app` (and its extra `domains`) at `addr`. Returns the
    /// previous upstream, which the caller drains and stops.
    pub fn switch(
        &self,
        app: &str,
        domains: &[String],
        addr: SocketAddr,
        deploy: i64,
    ) -> Option<Arc<Upstream>> {
        let upstream = Arc::new(Upstream {
            app: app.to_string(),
            addr,
            deploy,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
        });
        let hosts = self.hosts_for(app, domains);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = inner.unmap(app);
        inner.map(app, hosts, Route::Up(upstream));
        old
    }

    /// Marks `app` down: its hosts answer 502, saying `why` ("it is
    /// starting"), until it is switched up again. Returns the upstream that
    /// was serving, if any.
    pub fn mark_down(&self, app: &str, domains: &[String], why: &str) -> Option<Arc<Upstream>> {
        let hosts = self.hosts_for(app, domains);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = inner.unmap(app);
        inner.map(
            app,
            hosts,
            Route::Down {
                app: app.to_string(),
                why: why.into(),
            },
        );
        old
    }

    /// Forgets `app` entirely (destroyed): its hosts answer 404.
    pub fn forget(&self, app: &str) -> Option<Arc<Upstream>> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.unmap(app)
    }

    /// What a Host header value routes to.
    pub fn lookup(&self, host: &str) -> Option<Route> {
        let host = normalized(host);
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.by_host.get(host.as_ref()).cloned()
    }

    /// The deploy currently serving `app`, if it is up.
    pub fn deploy_of(&self, app: &str) -> Option<i64> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let host = inner.hosts_of_app.get(app)?.first()?;
        match inner.by_host.get(host)? {
            Route::Up(u) => Some(u.deploy),
            Route::Down { .. } => None,
        }
    }

    /// If `host` is `<app>.<suffix>`, the app name.
    pub fn app_of_default_host(&self, host: &str) -> Option<String> {
        let host = normalize_host(host);
        host.strip_suffix(&format!(".{}", self.suffix))
            .filter(|a| !a.is_empty() && !a.contains('.'))
            .map(String::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Hello.LOCALHOST:8000"), "hello.localhost");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a:b"), "a:b");
        assert_eq!(normalize_host("  App.localhost.:8000 "), "app.localhost");
        assert_eq!(normalize_host("[::1"), "[::1");
        assert_eq!(normalize_host(""), "");
        assert_eq!(normalize_host(":"), "");
        assert!(matches!(
            normalized("app.localhost:1"),
            std::borrow::Cow::Borrowed("app.localhost")
        ));
    }

    #[test]
    fn switch_returns_the_old_upstream_and_moves_domains() {
        let t = RouteTable::new("localhost");
        let a1: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let a2: SocketAddr = "127.0.0.1:1002".parse().unwrap();
        assert!(t
            .switch("hello", &["Hello.Example.com".into()], a1, 1)
            .is_none());
        let addr = |h: &str| match t.lookup(h) {
            Some(Route::Up(u)) => Some(u.addr),
            _ => None,
        };
        assert_eq!(addr("hello.localhost:8000"), Some(a1));
        assert_eq!(addr("hello.example.com"), Some(a1));
        let old = t.switch("hello", &[], a2, 2).unwrap();
        assert_eq!(old.deploy, 1);
        assert_eq!(addr("hello.localhost"), Some(a2));
        assert!(
            t.lookup("hello.example.com").is_none(),
            "dropped domain no longer routes"
        );
        assert_eq!(
            t.mark_down("hello", &[], "it is starting").unwrap().deploy,
            2
        );
        assert!(matches!(
            t.lookup("hello.localhost"),
            Some(Route::Down { .. })
        ));
        assert!(t.forget("hello").is_none());
        assert!(t.lookup("hello.localhost").is_none());
        assert_eq!(
            t.app_of_default_host("hello.localhost:8000").as_deref(),
            Some("hello")
        );
        assert!(t.app_of_default_host("a.b.localhost").is_none());
    }

    #[tokio::test]
    async fn drain_waits_for_inflight_requests() {
        let t = RouteTable::new("localhost");
        t.switch("a", &[], "127.0.0.1:1".parse().unwrap(), 1);
        let Some(Route::Up(up)) = t.lookup("a.localhost") else {
            panic!("a is up")
        };
        let guard = InflightGuard::new(up.clone());
        assert_eq!(up.drain(Duration::from_millis(20)).await, 1);
        let up2 = up.clone();
        let waiter = tokio::spawn(async move { up2.drain(Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
