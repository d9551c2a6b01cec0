//! The router's HTTP/1.1 client for upstreams (app VMs): keep-alive
//! connections per upstream address, handed back to the pool when the
//! response body has been read to its end — the one moment HTTP/1.1 allows
//! a connection to carry the next request.
//!
//! Written on hyper's connection API rather than hyper-util's pooled
//! `Client`: a router talks to a handful of loopback upstreams, needs no
//! DNS, TLS or connect racing, and the general client's bookkeeping per
//! request cost about a quarter of the router's throughput (measured with
//! `cargo bench --bench router`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::body::RequestBody;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Idle connections kept per upstream.
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to an upstream gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request could not be sent upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The upstream.
        addr: SocketAddr,
        /// What happened.
        message: String,
    },
    /// The HTTP exchange failed.
    #[error("upstream {addr}: {source}")]
    Http {
        /// The upstream.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

type Idle = Vec<(SendRequest<RequestBody>, Instant)>;

/// Keep-alive connections to upstreams.
#[derive(Clone, Default)]
pub struct UpstreamClient {
    idle: Arc<Mutex<HashMap<SocketAddr, Idle>>>,
}

impl UpstreamClient {
    fn take_idle(&self, addr: SocketAddr) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some((sender, since)) = list.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, addr: SocketAddr, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE {
            list.push((sender, Instant::now()));
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let connect_err = |message: String| UpstreamError::Connect { addr, message };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| connect_err(format!("no answer in {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Http { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "router: upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// A connection to `addr` ready for one request: an idle keep-alive
    /// one (unless `fresh`), or a new one. Nothing of a request is sent
    /// yet, so a failure here can be retried elsewhere with the request.
    pub async fn checkout(&self, addr: SocketAddr, fresh: bool) -> Result<Checkout, UpstreamError> {
        // A pooled connection read its last response to the end; its
        // connection task may need a moment to notice, hence `ready()`.
        if let Some(mut sender) = self.take_idle(addr).filter(|_| !fresh) {
            if sender.ready().await.is_ok() {
                return Ok(Checkout {
                    sender,
                    reused: true,
                });
            }
        }
        Ok(Checkout {
            sender: self.connect(addr).await?,
            reused: false,
        })
    }

    /// Sends `req` to `addr` over `conn`. The response body gives the
    /// connection back when it ends. On failure, the request comes back
    /// if none of it was written.
    pub async fn send_on(
        &self,
        conn: Checkout,
        addr: SocketAddr,
        req: Request<RequestBody>,
    ) -> Result<Response<PooledBody>, SendFailed> {
        let mut sender = conn.sender;
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => {
                let unsent = e.take_message();
                let source = e.into_error();
                return Err(SendFailed {
                    error: UpstreamError::Http { addr, source },
                    unsent,
                });
            }
        };
        let (parts, body) = resp.into_parts();
        let done = body.is_end_stream();
        // A protocol switch takes the connection over for good.
        let reusable = parts.status != hyper::StatusCode::SWITCHING_PROTOCOLS;
        let mut body = PooledBody {
            body,
            give_back: reusable.then(|| (sender, self.clone(), addr)),
        };
        if done {
            body.release();
        }
        Ok(Response::from_parts(parts, body))
    }
}

/// A connection handed out for one request.
pub struct Checkout {
    sender: SendRequest<RequestBody>,
    /// Whether it carried an earlier request (it may have been closed by
    /// the app since, unnoticed).
    pub reused: bool,
}

/// Why [`UpstreamClient::send_on`] failed.
pub struct SendFailed {
    /// What went wrong.
    pub error: UpstreamError,
    /// The request, when none of it reached the connection.
    pub unsent: Option<Request<RequestBody>>,
}

/// A response body that returns its connection to the pool once read to
/// the end (dropped early, the connection is simply closed).
pub struct PooledBody {
    body: Incoming,
    give_back: Option<(SendRequest<RequestBody>, UpstreamClient, SocketAddr)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, client, addr)) = self.give_back.take() {
            client.put_idle(addr, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.give_back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
