//! The edge router: an HTTP/1.1 reverse proxy on `router_addr` that sends
//! `<app>.localhost` (and each app's `domains`) to the app's current VM
//! or VMs ([`RouteTable::switch_instances`]), or answers 503 while it is
//! being deployed ([`RouteTable::mark_deploying`]).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::sync::Arc;
//! let table = router::RouteTable::new("localhost");
//! table
//!     .try_switch("hello", &[], "127.0.0.1:9000".parse().unwrap(), 1)
//!     .expect("hello may have its own name");
//! let config = router::RouterConfig::new("127.0.0.1:8000".parse().unwrap());
//! let router = router::Router::serve(
//!     config,
//!     table,
//!     Arc::new(|r: &router::RequestRecord<'_>| println!("{r}")),
//! )
//! .await?;
//! println!("open connections: {}", router.stats().open_connections);
//! # Ok(()) }
//! ```
//!
//! What it does for every request, in order:
//! 1. **Connection caps** ([`RouterConfig::max_connections`], per client
//!    address [`RouterConfig::max_connections_per_client`]): over them, a 503
//!    and the connection closed, before anything is read.
//! 2. **Deadlines** per connection: a request head must arrive whole within
//!    [`RouterConfig::header_read_timeout`] (slowloris), at most
//!    [`RouterConfig::max_header_bytes`] long (431); a connection with
//!    nothing moving for [`RouterConfig::idle_timeout`] is closed.
//! 3. **Host**: an absolute-form target's authority, else the one Host
//!    header (RFC 9112 §3.2.2); looked up in the [`RouteTable`], where each
//!    name is held by one app ([`RouteTable::try_switch`] refuses another's).
//! 4. **Body limit** [`RouterConfig::max_body_bytes`]: 413, before anything
//!    reaches the app when the length is announced.
//! 5. **Headers**: hop-by-hop ones removed; `X-Forwarded-For/-Proto/-Host`
//!    and `X-Real-IP` set by the router — a client's own are dropped unless
//!    it is one of [`RouterConfig::trusted_proxies`].
//! 6. **Forwarding** to one of the app's [`Instances`] (least outstanding
//!    requests, round-robin ties, unhealthy ones passed over, a failed
//!    connect retried on another) over a keep-alive upstream pool;
//!    WebSocket upgrades are tunnelled. No response head within
//!    [`RouterConfig::upstream_response_timeout`]: 504.
//! 7. **Record**: when the response's last byte has gone (or the client
//!    left: 499), an [`OnRequest`] callback gets a [`RequestRecord`].
//!
//! The router's own pages (400, 404, 413, 502, 503, 504) carry the header
//! `x-byteport-router: error` and `<meta name="byteport-router"
//! content="error">` in their HTML; an app cannot send that header (it is
//! removed from app responses), so it tells the router's pages from the
//! app's (the portfolio's screenshotter relies on it). Malformed request
//! heads get hyper's bare 400/431 and a close.
#![deny(missing_docs)]

mod body;
mod client;
mod config;
mod conn;
mod headers;
mod limits;
mod log;
mod pages;
mod proxy;
mod retry;
mod server;
mod stats;
mod table;
mod watchdog;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{parse_trusted_proxies, BadProxyEntry, InvalidRouterConfig, IpNet, RouterConfig};
pub use log::{OnRequest, Outcome, RequestLog, RequestRecord};
pub use stats::RouterStats;
pub use table::{
    normalize_host, InflightGuard, Instances, Route, RouteError, RouteTable, Upstream,
    FAILED_CONNECT_BACKOFF,
};

/// A running router.
pub struct Router {
    /// The address it listens on (useful with port 0).
    pub local_addr: SocketAddr,
    proxy: Arc<proxy::Proxy>,
    limits: Arc<limits::Limits>,
    task: tokio::task::JoinHandle<()>,
}

impl Router {
    /// Binds `config.listen` and serves `table` until the router is
    /// dropped or [`Router::shutdown`] is called. `on_request` gets every
    /// request's record when it is over. A config that fails
    /// [`RouterConfig::validate`] is refused (`InvalidInput`, naming the
    /// setting) before anything is bound.
    pub async fn serve(
        config: RouterConfig,
        table: RouteTable,
        on_request: OnRequest,
    ) -> std::io::Result<Router> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        warn_if_over_file_limit(config.max_connections);
        let limits = Arc::new(limits::Limits::new(
            config.max_connections,
            config.max_connections_per_client,
        ));
        let http = server::http1_builder(&config);
        let proxy = Arc::new(proxy::Proxy {
            config,
            table,
            on_request,
            client: client::UpstreamClient::default(),
            counters: stats::Counters::default(),
        });
        let task = tokio::spawn(server::accept_loop(
            listener,
            proxy.clone(),
            limits.clone(),
            http,
        ));
        Ok(Router {
            local_addr,
            proxy,
            limits,
            task,
        })
    }

    /// [`Router::serve`] with the default settings on `addr`, logging one
    /// line per request to a known app through `log` (the first router's
    /// interface, kept until its callers move to [`Router::serve`]).
    pub async fn bind(
        addr: SocketAddr,
        table: RouteTable,
        log: RequestLog,
    ) -> std::io::Result<Router> {
        let on_request: OnRequest = Arc::new(move |r: &RequestRecord<'_>| {
            if let Some(app) = r.app {
                log(app, &r.to_string());
            }
        });
        Router::serve(RouterConfig::new(addr), table, on_request).await
    }

    /// The router's connection counters now.
    pub fn stats(&self) -> RouterStats {
        self.proxy.counters.snapshot(self.limits.open())
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RouterConfig {
        &self.proxy.config
    }

    /// Stops accepting connections (open ones finish on their own).
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every connection costs a descriptor (two while proxied): a cap above
/// the process's limit is never reached — accept fails first.
fn warn_if_over_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur != libc::RLIM_INFINITY && (max_connections as u64) * 2 > limit.rlim_cur {
        tracing::warn!(
            max_connections,
            open_file_limit = limit.rlim_cur,
            "router: max_connections needs about twice as many open files as the process may \
             have; raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections"
        );
    }
}
