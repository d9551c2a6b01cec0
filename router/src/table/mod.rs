//! The routing table: host name → the app's current upstream.
//!
//! Every host is claimed by one app. An app always holds `<app>.<base>`;
//! its extra `domains` are first come, first served: the app that maps a
//! name first keeps it until it drops the name from its list (a later
//! switch without it) or is forgotten. A switch never overwrites another
//! app's host, and unmapping one app never removes another's. This is the
//! in-memory last line of defence; the durable claims (across restarts,
//! refusing the push) live in the platform's store.

mod names;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

pub(crate) use names::normalized;
pub use names::{normalize_host, RouteError};
pub use upstream::{InflightGuard, Upstream};

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

impl Route {
    /// The app that holds the host.
    pub fn app(&self) -> &str {
        match self {
            Route::Up(u) => &u.app,
            Route::Down { app, .. } => app,
        }
    }
}

/// What to do with a domain that may not be mapped.
#[derive(Clone, Copy, PartialEq)]
enum Refused {
    /// Refuse the whole change.
    Fail,
    /// Leave the domain out (with a warning) and map the rest.
    Skip,
}

#[derive(Default)]
struct Inner {
    by_host: HashMap<String, Route>,
    hosts_of_app: HashMap<String, Vec<String>>,
}

impl Inner {
    fn owner(&self, host: &str) -> Option<&str> {
        self.by_host.get(host).map(Route::app)
    }

    /// Removes `app`'s hosts (only those it holds) and returns the upstream
    /// that was serving them.
    fn unmap(&mut self, app: &str) -> Option<Arc<Upstream>> {
        let mut previous = None;
        for h in self.hosts_of_app.remove(app).unwrap_or_default() {
            if self.owner(&h) != Some(app) {
                continue;
            }
            if let Some(Route::Up(u)) = self.by_host.remove(&h) {
                previous = Some(u);
            }
        }
        previous
    }

    /// Maps `hosts` (each free or `app`'s already, as [`Inner::hosts`]
    /// checked under the same lock) to `route`.
    fn map(&mut self, app: &str, hosts: Vec<String>, route: Route) {
        for h in &hosts {
            debug_assert!(self.owner(h).is_none_or(|o| o == app), "{h} is taken");
            self.by_host.insert(h.clone(), route.clone());
        }
        self.hosts_of_app.insert(app.to_string(), hosts);
    }

    /// `app`'s default host, then each domain it may have (normalised,
    /// deduplicated). A domain it may not have fails or is skipped.
    fn hosts(
        &self,
        app: &str,
        domains: &[String],
        base: &str,
        refused: Refused,
    ) -> Result<Vec<String>, RouteError> {
        let mut hosts = vec![format!("{app}.{base}")];
        for d in domains {
            let d = normalize_host(d);
            if hosts.contains(&d) {
                continue;
            }
            let allowed =
                names::check_claimable(app, &d, base).and_then(|()| match self.owner(&d) {
                    Some(owner) if owner != app => Err(RouteError::DomainTaken {
                        domain: d.clone(),
                        owner: owner.to_string(),
                    }),
                    _ => Ok(()),
                });
            match allowed {
                Ok(()) => hosts.push(d),
                Err(e) if refused == Refused::Fail => return Err(e),
                Err(e) => tracing::warn!(app, error = %e, "router: domain not mapped"),
            }
        }
        Ok(hosts)
    }
}

/// Host → upstream routes, shared by the router and the supervisor.
#[derive(Default, Clone)]
pub struct RouteTable {
    inner: Arc<RwLock<Inner>>,
    suffix: Arc<String>,
}

impl RouteTable {
    /// A table whose default host for app `a` is `a.<suffix>` (e.g. `localhost`).
    pub fn new(suffix: &str) -> RouteTable {
        RouteTable {
            inner: Arc::default(),
            suffix: Arc::new(normalize_host(suffix)),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Points `app` (and its extra `domains`) at `addr`. Returns the
    /// previous upstream, which the caller drains and stops. Domains the
    /// app held before and no longer lists are let go.
    ///
    /// Refused, with nothing changed, when a domain is held by another app,
    /// is another app's `<app>.<base>` (or under it), is the base name, or
    /// is not a DNS name.
    pub fn try_switch(
        &self,
        app: &str,
        domains: &[String],
        addr: SocketAddr,
        deploy: i64,
    ) -> Result<Option<Arc<Upstream>>, RouteError> {
        self.switch_with(app, domains, addr, deploy, Refused::Fail)
    }

    /// [`RouteTable::try_switch`] for callers that cannot handle a refusal
    /// yet: a domain that may not be mapped is left out (with a warning)
    /// instead of failing the switch. Never takes another app's host.
    pub fn switch(
        &self,
        app: &str,
        domains: &[String],
        addr: SocketAddr,
        deploy: i64,
    ) -> Option<Arc<Upstream>> {
        self.switch_with(app, domains, addr, deploy, Refused::Skip)
            .unwrap_or_else(|_| unreachable!("skipping never refuses"))
    }

    fn switch_with(
        &self,
        app: &str,
        domains: &[String],
        addr: SocketAddr,
        deploy: i64,
        refused: Refused,
    ) -> Result<Option<Arc<Upstream>>, RouteError> {
        let upstream = Arc::new(Upstream::new(app, addr, deploy));
        let mut inner = self.write();
        let hosts = inner.hosts(app, domains, &self.suffix, refused)?;
        let old = inner.unmap(app);
        inner.map(app, hosts, Route::Up(upstream));
        Ok(old)
    }

    /// Whether `app` could be switched to `domains` now (the check
    /// [`RouteTable::try_switch`] makes), without changing anything.
    pub fn check_domains(&self, app: &str, domains: &[String]) -> Result<(), RouteError> {
        self.read()
            .hosts(app, domains, &self.suffix, Refused::Fail)
            .map(drop)
    }

    /// Marks `app` down: its hosts answer 502, saying `why` ("it is
    /// starting"), until it is switched up again. The app keeps the hosts
    /// it holds; `domains` it may have are added, others left out. Returns
    /// the upstream that was serving, if any.
    pub fn mark_down(&self, app: &str, domains: &[String], why: &str) -> Option<Arc<Upstream>> {
        let mut inner = self.write();
        let mut wanted = inner.hosts_of_app.get(app).cloned().unwrap_or_default();
        wanted.extend(domains.iter().cloned());
        let hosts = inner
            .hosts(app, &wanted, &self.suffix, Refused::Skip)
            .unwrap_or_default();
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

    /// Forgets `app` entirely (destroyed): its hosts answer 404 and its
    /// domains are free for others.
    pub fn forget(&self, app: &str) -> Option<Arc<Upstream>> {
        self.write().unmap(app)
    }

    /// What a Host header value routes to.
    pub fn lookup(&self, host: &str) -> Option<Route> {
        let host = normalized(host);
        self.read().by_host.get(host.as_ref()).cloned()
    }

    /// The app holding `host`, if any.
    pub fn owner(&self, host: &str) -> Option<String> {
        let host = normalized(host);
        self.read().owner(host.as_ref()).map(String::from)
    }

    /// The deploy currently serving `app`, if it is up.
    pub fn deploy_of(&self, app: &str) -> Option<i64> {
        let inner = self.read();
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
mod tests;
