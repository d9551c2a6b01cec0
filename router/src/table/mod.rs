//! The routing table: host name → the app's current instances.
//!
//! Every host is claimed by one app. An app always holds `<app>.<base>`;
//! its extra `domains` are first come, first served: the app that maps a
//! name first keeps it until it drops the name from its list (a later
//! switch without it) or is forgotten. A switch never overwrites another
//! app's host, and unmapping one app never removes another's. This is the
//! in-memory last line of defence; the durable claims (across restarts,
//! refusing the push) live in the platform's store.

mod instances;
mod names;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use instances::Instances;
pub(crate) use names::normalized;
pub use names::{normalize_host, RouteError};
pub use upstream::{InflightGuard, Upstream, FAILED_CONNECT_BACKOFF};

/// What a host resolves to.
#[derive(Debug, Clone)]
pub enum Route {
    /// The app is serving here, on one or more instances.
    Up(Arc<Instances>),
    /// The app exists but nothing serves it right now (booting, crashed, stopped).
    Down {
        /// The app.
        app: String,
        /// Why, for the 502 page ("it is starting", "it was stopped by its owner").
        why: Arc<str>,
    },
    /// The app is between two deploys with nothing serving (its old VM is
    /// stopped before the new one boots, e.g. to hand over a volume): 503
    /// with `Retry-After`.
    Deploying {
        /// The app.
        app: String,
        /// What `Retry-After` tells clients.
        retry_after: Duration,
    },
}

impl Route {
    /// The app that holds the host.
    pub fn app(&self) -> &str {
        match self {
            Route::Up(set) => set.app(),
            Route::Down { app, .. } | Route::Deploying { app, .. } => app,
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

    /// `app`'s route (the one on its default host).
    fn route_of(&self, app: &str) -> Option<&Route> {
        let host = self.hosts_of_app.get(app)?.first()?;
        self.by_host.get(host).filter(|r| r.app() == app)
    }

    /// Removes `app`'s hosts (only those it holds) and returns the
    /// instances that were serving them.
    fn unmap(&mut self, app: &str) -> Vec<Arc<Upstream>> {
        let mut previous = Vec::new();
        for h in self.hosts_of_app.remove(app).unwrap_or_default() {
            if self.owner(&h) != Some(app) {
                continue;
            }
            if let Some(Route::Up(set)) = self.by_host.remove(&h) {
                previous = set.upstreams().to_vec();
            }
        }
        previous
    }

    /// Points every host `app` holds at `route`.
    fn replace_route(&mut self, app: &str, route: Route) {
        let hosts = self.hosts_of_app.get(app).cloned().unwrap_or_default();
        for h in hosts {
            if self.owner(&h) == Some(app) {
                self.by_host.insert(h, route.clone());
            }
        }
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

    /// Points `app` (and its extra `domains`) at `addr`, its one instance.
    /// Returns the previous upstream (the first, if it had several; see
    /// [`RouteTable::try_switch_instances`]), which the caller drains and
    /// stops. Domains the app held before and no longer lists are let go.
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
        self.switch_with(app, domains, &[addr], deploy, Refused::Fail)
            .map(|old| old.into_iter().next())
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
        self.switch_with(app, domains, &[addr], deploy, Refused::Skip)
            .unwrap_or_else(|_| unreachable!("skipping never refuses"))
            .into_iter()
            .next()
    }

    /// Points `app` (and its extra `domains`) at the instances `addrs`, all
    /// of `deploy`; requests are balanced across them. Returns every
    /// instance that served before, for the caller to drain and stop.
    ///
    /// Refused, with nothing changed, for an empty list, an address listed
    /// twice, or a domain [`RouteTable::try_switch`] refuses.
    pub fn try_switch_instances(
        &self,
        app: &str,
        domains: &[String],
        addrs: &[SocketAddr],
        deploy: i64,
    ) -> Result<Vec<Arc<Upstream>>, RouteError> {
        self.switch_with(app, domains, addrs, deploy, Refused::Fail)
    }

    /// [`RouteTable::try_switch_instances`] that leaves out (with a warning)
    /// a domain that may not be mapped, like [`RouteTable::switch`]; still
    /// refuses an empty or repeating list of addresses.
    pub fn switch_instances(
        &self,
        app: &str,
        domains: &[String],
        addrs: &[SocketAddr],
        deploy: i64,
    ) -> Result<Vec<Arc<Upstream>>, RouteError> {
        self.switch_with(app, domains, addrs, deploy, Refused::Skip)
    }

    fn switch_with(
        &self,
        app: &str,
        domains: &[String],
        addrs: &[SocketAddr],
        deploy: i64,
        refused: Refused,
    ) -> Result<Vec<Arc<Upstream>>, RouteError> {
        instances::check_addrs(app, addrs)?;
        let upstreams = addrs
            .iter()
            .map(|a| Arc::new(Upstream::new(app, *a, deploy)))
            .collect();
        let set = Arc::new(Instances::new(app, upstreams));
        let mut inner = self.write();
        let hosts = inner.hosts(app, domains, &self.suffix, refused)?;
        let old = inner.unmap(app);
        inner.map(app, hosts, Route::Up(set));
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
    /// With several instances only the first is returned; the others are
    /// taken out of rotation all the same — use
    /// [`RouteTable::mark_down_all`] to drain them all.
    pub fn mark_down(&self, app: &str, domains: &[String], why: &str) -> Option<Arc<Upstream>> {
        self.mark_down_all(app, domains, why).into_iter().next()
    }

    /// [`RouteTable::mark_down`], returning every instance that was serving.
    pub fn mark_down_all(&self, app: &str, domains: &[String], why: &str) -> Vec<Arc<Upstream>> {
        let route = Route::Down {
            app: app.to_string(),
            why: why.into(),
        };
        self.set_idle(app, domains, route)
    }

    /// Marks `app` as being deployed with nothing serving it (its old VM
    /// stops before the new one boots): its hosts answer 503 with
    /// `Retry-After: <retry_after in whole seconds, at least 1>` until it
    /// is switched up again. Hosts as for [`RouteTable::mark_down`].
    /// Returns every instance that was serving, to drain and stop.
    pub fn mark_deploying(
        &self,
        app: &str,
        domains: &[String],
        retry_after: Duration,
    ) -> Vec<Arc<Upstream>> {
        let route = Route::Deploying {
            app: app.to_string(),
            retry_after,
        };
        self.set_idle(app, domains, route)
    }

    /// Points `app`'s hosts (and the `domains` it may have) at a route
    /// with no instance.
    fn set_idle(&self, app: &str, domains: &[String], route: Route) -> Vec<Arc<Upstream>> {
        let mut inner = self.write();
        let mut wanted = inner.hosts_of_app.get(app).cloned().unwrap_or_default();
        wanted.extend(domains.iter().cloned());
        let hosts = inner
            .hosts(app, &wanted, &self.suffix, Refused::Skip)
            .unwrap_or_default();
        let old = inner.unmap(app);
        inner.map(app, hosts, route);
        old
    }

    /// Forgets `app` entirely (destroyed): its hosts answer 404 and its
    /// domains are free for others. Returns its (first) instance; see
    /// [`RouteTable::forget_all`].
    pub fn forget(&self, app: &str) -> Option<Arc<Upstream>> {
        self.forget_all(app).into_iter().next()
    }

    /// [`RouteTable::forget`], returning every instance that was serving.
    pub fn forget_all(&self, app: &str) -> Vec<Arc<Upstream>> {
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

    /// The deploy currently serving `app`, if it is up (the newest, while
    /// a rolling redeploy has instances of two).
    pub fn deploy_of(&self, app: &str) -> Option<i64> {
        match self.read().route_of(app)? {
            Route::Up(set) => Some(set.deploy()),
            Route::Down { .. } | Route::Deploying { .. } => None,
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
