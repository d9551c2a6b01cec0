//! `dashboard`: BytePort's web dashboard and JSON API, served by
//! `byteport up` on `http_addr`.
//!
//! Server-rendered pages (axum + askama) that work without JavaScript;
//! htmx and its SSE extension (vendored under `static/`) make them live
//! over one Server-Sent Events stream per page. Every page action has a
//! JSON twin under `/api/v1` (token or session auth), described by an
//! OpenAPI 3.1 document generated from the handlers ([`api`]); Prometheus
//! text at `/metrics`. The portfolio's drafts are reviewed here
//! ([`review`]) and its public site is served at `/portfolio/`.
//!
//! It reads and changes apps only through [`platform::Platform`]: the
//! store for rows, jobs for every change (restart, stop, start, rollback,
//! redeploy, cancel), and the app's event stream for every log — the
//! same stream `git push` and `logs -f` follow.
//!
//! ```no_run
//! # async fn demo(platform: std::sync::Arc<platform::Platform>, host: std::sync::Arc<dyn dashboard::HostInfo>) {
//! let options = dashboard::Options::new("127.0.0.1:8080".parse().unwrap());
//! let server = dashboard::serve(options, platform, host).await.unwrap();
//! println!("dashboard on http://{}", server.local_addr());
//! server.shutdown().await;
//! # }
//! ```
#![deny(missing_docs)]

pub mod ansi;
pub mod api;
mod assets;
pub mod auth;
mod error;
pub mod host;
mod live;
pub mod ops;
mod pages;
pub mod review;
mod security;
mod views;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use platform::Platform;
use tokio::sync::watch;

pub use error::Error;
pub use host::{HostCheck, HostInfo};

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen (`http_addr`; loopback by default).
    pub addr: SocketAddr,
    /// A reverse proxy whose `X-Forwarded-For` and `X-Forwarded-Proto`
    /// are believed (`http_trusted_proxy`): the client's address for the
    /// sign-in rate limit, and HTTPS for `Secure` cookies.
    pub trusted_proxy: Option<IpAddr>,
}

impl Options {
    /// Listen on `addr`, trusting no proxy.
    pub fn new(addr: SocketAddr) -> Options {
        Options {
            addr,
            trusted_proxy: None,
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct Ctx(Arc<Inner>);

struct Inner {
    platform: Arc<Platform>,
    host: Arc<dyn HostInfo>,
    options: Options,
    limiter: auth::RateLimiter,
    /// `true` once the server is shutting down: open streams end.
    stop: watch::Sender<bool>,
}

impl Ctx {
    /// Shared state for the handlers.
    pub fn new(platform: Arc<Platform>, host: Arc<dyn HostInfo>, options: Options) -> Ctx {
        Ctx(Arc::new(Inner {
            platform,
            host,
            options,
            limiter: auth::RateLimiter::default(),
            stop: watch::channel(false).0,
        }))
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<Platform> {
        &self.0.platform
    }

    pub(crate) fn host(&self) -> &Arc<dyn HostInfo> {
        &self.0.host
    }

    pub(crate) fn options(&self) -> &Options {
        &self.0.options
    }

    pub(crate) fn limiter(&self) -> &auth::RateLimiter {
        &self.0.limiter
    }

    /// Resolves once the server is shutting down.
    pub(crate) async fn stopping(&self) {
        let mut rx = self.0.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Ends open streams and tells the server to stop.
    pub fn stop(&self) {
        self.0.stop.send_replace(true);
    }
}

/// Every route: pages, static files, the API, `/metrics`, and the public
/// portfolio site at `/portfolio/` (when the portfolio runs on this
/// host), with the security headers and body limits applied.
pub fn router(ctx: Ctx) -> axum::Router {
    let (api, _doc) = api::router();
    let site = ctx.platform().portfolio().map(|p| p.site.clone());
    let mut router = axum::Router::new()
        .merge(pages::router())
        .merge(assets::router())
        .merge(api)
        .route("/metrics", axum::routing::get(api::metrics::metrics))
        .fallback(error::fallback)
        .with_state(ctx);
    if let Some(site) = site {
        // Public and read-only: only approved versions are in it. It
        // carries its own `/portfolio` prefix and its own (stricter)
        // Content-Security-Policy, which the headers layer keeps.
        router = router.merge(portfolio::site::router(site));
    }
    router
        .layer(axum::extract::DefaultBodyLimit::max(
            security::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(security::headers))
}

/// Errors starting the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken or not ours.
    #[error("dashboard cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running dashboard.
pub struct Server {
    local_addr: SocketAddr,
    ctx: Ctx,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, ends open streams, and waits (at most 5 s) for
    /// requests in flight.
    pub async fn shutdown(self) {
        self.ctx.stop();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// Listens on `options.addr` and serves until [`Server::shutdown`].
pub async fn serve(
    options: Options,
    platform: Arc<Platform>,
    host: Arc<dyn HostInfo>,
) -> Result<Server, ServeError> {
    let addr = options.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let ctx = Ctx::new(platform, host, options);
    let app = router(ctx.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stopping = ctx.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move { stopping.stopping().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "dashboard server failed");
        }
    });
    Ok(Server {
        local_addr,
        ctx,
        task,
    })
}
