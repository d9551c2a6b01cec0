//! An HTTP egress proxy that enforces the [`Policy`]: `CONNECT host:port`
//! tunnels (HTTPS, git, anything over TCP) and plain-HTTP forwarding of
//! absolute-form requests (`GET http://host/path`, what apt and
//! `http_proxy` clients send), each destination resolved, checked and
//! connected by a [`Dialer`].
//!
//! Limits: at most `max_connections` client connections at once (more get
//! `503`), request heads of at most `max_header_bytes` (more get `431`), a
//! connection with no traffic either way for `idle_timeout` is closed, and
//! each upstream address gets `connect_timeout`. A refused destination gets
//! `403` with a body naming it and the rule, one `tracing` warning (target
//! `egress`), and a call of [`ProxyConfig::on_refusal`].
//!
//! The proxy listens wherever the caller puts a listener: a TCP listener
//! (possibly created inside another network namespace, which is how build
//! steps reach it), a unix socket, or any single stream
//! ([`Proxy::serve_connection`]).

mod forward;
mod idle;

use crate::dial::{DialError, Dialer, Refusal};
use crate::policy::Policy;
use bytes::Bytes;
use forward::Forwarder;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use idle::{Activity, IdleIo};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Called once per refused request (after the log line).
pub type RefusalHook = Arc<dyn Fn(&Refusal) + Send + Sync>;

/// How the proxy behaves.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Where clients may connect.
    pub policy: Policy,
    /// Client connections served at once.
    pub max_connections: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Time each upstream address gets to accept.
    pub connect_timeout: Duration,
    /// Largest request head (request line + headers); at least 8 KiB.
    pub max_header_bytes: usize,
    /// Told about every refusal (e.g. to show it in a build log).
    pub on_refusal: Option<RefusalHook>,
}

impl Default for ProxyConfig {
    /// Internet only; 256 connections, 2 min idle, 30 s connect, 64 KiB heads.
    fn default() -> Self {
        ProxyConfig {
            policy: Policy::internet_only(),
            max_connections: 256,
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            on_refusal: None,
        }
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("policy", &self.policy)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("on_refusal", &self.on_refusal.is_some())
            .finish()
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy; cheap to clone (clones share limits and the upstream pool).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    dialer: Arc<Dialer>,
    forwarder: Forwarder,
    permits: Arc<Semaphore>,
}

/// A `CONNECT` accepted by the handler, tunnelled once hyper hands the
/// client connection over.
type PendingTunnel = (hyper::upgrade::OnUpgrade, TcpStream);

impl Proxy {
    /// A proxy with `config`.
    pub fn new(config: ProxyConfig) -> Proxy {
        let dialer = Arc::new(Dialer::new(config.policy.clone(), config.connect_timeout));
        let forwarder = Forwarder::new(dialer.clone(), config.idle_timeout);
        Proxy {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.max_connections.max(1))),
                config,
                dialer,
                forwarder,
            }),
        }
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &Policy {
        self.inner.dialer.policy()
    }

    /// Accept and serve clients of `listener` until this future is dropped
    /// (which also ends every connection it accepted).
    pub async fn serve_tcp(&self, listener: tokio::net::TcpListener) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let proxy = self.clone();
                        conns.spawn(async move { proxy.serve_connection(stream).await });
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    /// [`Proxy::serve_tcp`] for a unix socket listener.
    pub async fn serve_unix(&self, listener: tokio::net::UnixListener) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let proxy = self.clone();
                        conns.spawn(async move { proxy.serve_connection(stream).await });
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    /// Serve one client connection to its end (or its idle timeout).
    pub async fn serve_connection<S>(&self, mut io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(_permit): Result<OwnedSemaphorePermit, _> =
            self.inner.permits.clone().try_acquire_owned()
        else {
            let limit = self.inner.config.max_connections;
            tracing::warn!(target: "egress", limit, "connection refused: at the connection limit");
            let _ = io.write_all(&too_many(limit)).await;
            let _ = io.shutdown().await;
            return;
        };
        let idle = self.inner.config.idle_timeout;
        let activity = Activity::new();
        let io = IdleIo::new(io, activity.clone());
        let pending: Arc<Mutex<Option<PendingTunnel>>> = Arc::new(Mutex::new(None));
        let service = {
            let (inner, pending) = (self.inner.clone(), pending.clone());
            hyper::service::service_fn(move |req| {
                let (inner, pending) = (inner.clone(), pending.clone());
                async move { Ok::<_, Infallible>(inner.handle(req, &pending).await) }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .max_buf_size(self.inner.config.max_header_bytes.max(8192))
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::select! {
            r = conn => {
                if let Err(e) = r {
                    tracing::debug!(target: "egress", "client connection ended: {e}");
                }
            }
            _ = activity.idle(idle) => return,
        }
        let tunnel = pending.lock().ok().and_then(|mut p| p.take());
        if let Some((upgrade, upstream)) = tunnel {
            if let Ok(client) = upgrade.await {
                let mut client = TokioIo::new(client);
                let mut upstream = IdleIo::new(upstream, activity.clone());
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = activity.idle(idle) => {}
                }
            }
        }
    }
}

impl Inner {
    async fn handle(
        &self,
        mut req: Request<Incoming>,
        pending: &Mutex<Option<PendingTunnel>>,
    ) -> Response<Body> {
        let target = req.uri().to_string();
        if req.method() == Method::CONNECT {
            let Some(authority) = req.uri().authority().cloned() else {
                return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n".into());
            };
            let Some(port) = authority.port_u16() else {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("CONNECT {authority}: no port\n"),
                );
            };
            return match self.dialer.connect(authority.host(), port).await {
                Ok((upstream, _)) => {
                    let upgrade = hyper::upgrade::on(&mut req);
                    if let Ok(mut p) = pending.lock() {
                        *p = Some((upgrade, upstream));
                    }
                    Response::new(empty())
                }
                Err(e) => self.failed("CONNECT", &target, e),
            };
        }
        match req.uri().scheme_str() {
            Some("http") if req.uri().authority().is_some() => {}
            Some("https") => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("{target}: for https use CONNECT (set https_proxy)\n"),
                )
            }
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{target}: this is an HTTP proxy; send absolute http:// URLs or CONNECT\n"
                    ),
                )
            }
        }
        let method = req.method().to_string();
        match self.forwarder.forward(req).await {
            Ok(resp) => resp,
            Err(e) => self.failed(&method, &target, e),
        }
    }

    /// The response (and the log line) for a destination not reached.
    fn failed(&self, method: &str, target: &str, e: DialError) -> Response<Body> {
        match e {
            DialError::Refused(refusal) => {
                tracing::warn!(target: "egress", method, target, "refused: {refusal}");
                if let Some(hook) = &self.config.on_refusal {
                    hook(&refusal);
                }
                let mut resp = text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "BytePort egress policy refused {method} {target}: {refusal}. \
                         Sandboxed builds and apps may reach the internet only, not this host or its private networks.\n"
                    ),
                );
                resp.headers_mut().insert(
                    "x-byteport-egress",
                    hyper::header::HeaderValue::from_static("refused"),
                );
                resp
            }
            DialError::BadHost(h) => text(StatusCode::BAD_REQUEST, format!("{h}\n")),
            e @ DialError::Resolve { .. } => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
            e @ DialError::Connect { .. } => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    // Out of file descriptors and the like: back off instead of spinning.
    tracing::warn!(target: "egress", "accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn too_many(limit: usize) -> Vec<u8> {
    let body = format!("BytePort egress proxy: at its limit of {limit} connections; retry\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
