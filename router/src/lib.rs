//! The edge router: an HTTP/1.1 reverse proxy on `router_addr` that sends
//! `<app>.localhost` (and each app's `domains`) to the app's current VM.
//!
//! WebSocket upgrades pass through; `X-Forwarded-For/-Proto/-Host` are set;
//! a known app with nothing serving gets a 502 page, an unknown host a 404.
//! Each request line goes to a [`RequestLog`] so it shows in the app's logs.

mod client;
mod pages;
mod proxy;
mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use table::{normalize_host, InflightGuard, Route, RouteTable, Upstream};

/// Receives one line per proxied request: (app, line).
pub type RequestLog = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A running router.
pub struct Router {
    /// The address it listens on (useful with port 0).
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Router {
    /// Binds `addr` and serves `table` until the returned handle is dropped
    /// or [`Router::shutdown`] is called.
    pub async fn bind(
        addr: SocketAddr,
        table: RouteTable,
        log: RequestLog,
    ) -> std::io::Result<Router> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(proxy::Proxy::new(table, log));
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "router: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.handle(req, peer).await) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "router: connection ended with an error");
                    }
                });
            }
        });
        Ok(Router { local_addr, task })
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}
