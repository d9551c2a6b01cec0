//! Bodies through the router: the client's request body on its way to the
//! app (held to `max_body_bytes`), and the response on its way back, which
//! carries the request's [`Exchange`] so the request is logged when its
//! last byte has gone — or when the client leaves.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, StatusCode};

use crate::client::PooledBody;
use crate::conn::{ConnState, Phase};
use crate::log::{Outcome, RequestRecord};
use crate::table::InflightGuard;

/// Why the client's body could not be passed on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// It went over `max_body_bytes`.
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading it from the client failed: malformed, or the client left.
    #[error("reading the request body from the client")]
    Client(#[source] hyper::Error),
}

impl RequestBodyError {
    /// Whether the client went away (rather than sent something broken).
    pub fn client_left(&self) -> bool {
        let RequestBodyError::Client(e) = self else {
            return false;
        };
        if e.is_incomplete_message() || e.is_closed() {
            return true;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                );
            }
            source = s.source();
        }
        false
    }
}

/// The client's request body, counted against the limit as it streams.
pub(crate) struct RequestBody {
    /// `None` for a request sent again without a body (a retried GET).
    inner: Option<Incoming>,
    left: u64,
    limit: u64,
    /// The connection, told when the body is over; `None` once it is (or
    /// for a request without a body).
    conn: Option<Arc<ConnState>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, conn: &Arc<ConnState>) -> RequestBody {
        let conn = (!inner.is_end_stream()).then(|| {
            conn.set_body_open(true);
            conn.clone()
        });
        RequestBody {
            inner: Some(inner),
            left: limit,
            limit,
            conn,
        }
    }

    /// No body: for a bodiless request sent to another instance.
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            left: 0,
            limit: 0,
            conn: None,
        }
    }

    fn over(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.set_body_open(false);
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.over();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
            None => {
                self.over();
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                self.over();
                return Poll::Ready(Some(Err(RequestBodyError::Client(e))));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.left {
                self.over();
                let limit = self.limit;
                return Poll::Ready(Some(Err(RequestBodyError::TooLarge { limit })));
            }
            self.left -= len;
        }
        if self.is_end_stream() {
            self.over();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Which app a request is for, as far as the router got.
pub(crate) enum AppRef {
    /// No app: unknown host, or refused before a host was known.
    None,
    /// An app that is not being proxied to (down, or upgraded).
    Named(String),
    /// An app being served; counted in flight for drains.
    Serving(InflightGuard),
}

impl AppRef {
    fn name(&self) -> Option<&str> {
        match self {
            AppRef::None => None,
            AppRef::Named(app) => Some(app),
            AppRef::Serving(guard) => Some(&guard.upstream().app),
        }
    }
}

/// One request's record in the making; handed to the router's
/// [`crate::OnRequest`] when dropped — by the response body when it is
/// done, or with the request handler when the client leaves first.
pub(crate) struct Exchange {
    pub conn: Arc<ConnState>,
    pub app: AppRef,
    pub method: Method,
    pub target: Option<PathAndQuery>,
    pub client: IpAddr,
    pub started: Instant,
    /// The status sent; 499 until there is one.
    pub status: u16,
    pub router_page: Option<&'static str>,
    /// Set once known; `None` when dropped means the client left.
    pub outcome: Option<Outcome>,
    pub body_bytes: u64,
}

impl Exchange {
    pub fn new(conn: Arc<ConnState>, method: Method, target: Option<PathAndQuery>) -> Exchange {
        let client = conn.peer.ip();
        Exchange {
            conn,
            app: AppRef::None,
            method,
            target,
            client,
            started: Instant::now(),
            status: 499,
            router_page: None,
            outcome: None,
            body_bytes: 0,
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let record = RequestRecord {
            app: self.app.name(),
            method: &self.method,
            target: self.target.as_ref().map_or("/", |p| p.as_str()),
            status: self.status,
            duration: self.started.elapsed(),
            body_bytes: self.body_bytes,
            peer: self.conn.peer,
            client: self.client,
            outcome: self.outcome.unwrap_or(Outcome::ClientAbandoned),
            router_page: self.router_page,
            upstream: match &self.app {
                AppRef::Serving(guard) => Some(guard.upstream().addr),
                _ => None,
            },
        };
        (self.conn.proxy.on_request)(&record);
        // The response is over: the connection waits for the next request.
        if self.conn.phase() == Phase::Streaming {
            self.conn.set_phase(Phase::Idle);
        }
    }
}

enum Content {
    /// A page of the router's own.
    Page(Full<Bytes>),
    /// The app's response body.
    Upstream(PooledBody),
}

/// What the router answers with: a page of its own or the app's body,
/// either way carrying the request's [`Exchange`].
pub(crate) struct RouterBody {
    content: Content,
    exchange: Exchange,
}

impl RouterBody {
    fn new(content: Content, mut exchange: Exchange, status: StatusCode) -> RouterBody {
        exchange.status = status.as_u16();
        // hyper sends no body for these, and polls none.
        let bodiless = exchange.method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let mut body = RouterBody { content, exchange };
        if bodiless || body.is_end_stream() {
            body.exchange.outcome.get_or_insert(Outcome::Completed);
        }
        body
    }

    /// The router's own page.
    pub fn page(html: String, exchange: Exchange, status: StatusCode) -> RouterBody {
        RouterBody::new(
            Content::Page(Full::new(Bytes::from(html))),
            exchange,
            status,
        )
    }

    /// The request's record, to correct before it is logged.
    pub fn exchange_mut(&mut self) -> &mut Exchange {
        &mut self.exchange
    }

    /// The app's response body.
    pub fn upstream(body: PooledBody, exchange: Exchange, status: StatusCode) -> RouterBody {
        RouterBody::new(Content::Upstream(body), exchange, status)
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.content {
            Content::Page(page) => Pin::new(page)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Content::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        let exchange = &mut this.exchange;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    exchange.body_bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                exchange.outcome.get_or_insert(Outcome::UpstreamError);
            }
            Poll::Ready(None) => {
                exchange.outcome.get_or_insert(Outcome::Completed);
            }
            Poll::Pending => {}
        }
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && this.is_end_stream() {
            this.exchange.outcome.get_or_insert(Outcome::Completed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Page(page) => page.is_end_stream(),
            Content::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Page(page) => page.size_hint(),
            Content::Upstream(body) => body.size_hint(),
        }
    }
}
