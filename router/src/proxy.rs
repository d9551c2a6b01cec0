//! One proxied request: which host it is for, route lookup, the limits
//! checked before anything reaches the app, header rewriting, forwarding
//! (plain or upgraded; which instance, and retries, in `retry`) and the
//! router's own error pages.

use std::future::Future;
use std::sync::Arc;

use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::body::{AppRef, Exchange, RequestBody, RequestBodyError, RouterBody};
use crate::client::{UpstreamClient, UpstreamError};
use crate::config::RouterConfig;
use crate::conn::{ConnState, Phase};
use crate::headers::{self, Peer, X_BYTEPORT_ROUTER};
use crate::log::{OnRequest, Outcome};
use crate::pages;
use crate::retry;
use crate::stats::Counters;
use crate::table::{InflightGuard, Instances, Route, RouteTable};
use crate::watchdog;

/// What every connection shares.
pub(crate) struct Proxy {
    pub config: RouterConfig,
    pub table: RouteTable,
    pub on_request: OnRequest,
    pub client: UpstreamClient,
    pub counters: Counters,
}

/// Why the router answered itself, for [`crate::RequestRecord::router_page`]
/// (the client sees the page's words and the `x-byteport-router: error`
/// marker).
mod reason {
    pub const UNKNOWN_HOST: &str = "unknown-host";
    pub const APP_DOWN: &str = "app-down";
    pub const APP_DEPLOYING: &str = "app-deploying";
    pub const UPSTREAM_ERROR: &str = "upstream-error";
    pub const UPSTREAM_TIMEOUT: &str = "upstream-timeout";
    pub const BODY_TOO_LARGE: &str = "body-too-large";
    pub const BAD_REQUEST: &str = "bad-request";
}

/// A page of the router's own, marked as such.
fn page(
    mut exchange: Exchange,
    status: StatusCode,
    why: &'static str,
    html: String,
) -> Response<RouterBody> {
    exchange.router_page = Some(why);
    exchange.conn.set_phase(Phase::Streaming);
    let mut r = Response::new(RouterBody::page(html, exchange, status));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        X_BYTEPORT_ROUTER.clone(),
        HeaderValue::from_static(pages::MARKER_VALUE),
    );
    r
}

fn bad_request(exchange: Exchange, why: &str) -> Response<RouterBody> {
    page(
        exchange,
        StatusCode::BAD_REQUEST,
        reason::BAD_REQUEST,
        pages::bad_request(why),
    )
}

/// The host a request is for. An absolute-form target's authority wins
/// over the Host header (RFC 9112 §3.2.2); then it is also the Host the
/// app is sent.
enum Target {
    /// Routed by the Host header.
    HostHeader(HeaderValue),
    /// Routed by the request target's authority.
    Absolute(HeaderValue),
}

impl Target {
    fn of(req: &Request<Incoming>) -> Result<Target, &'static str> {
        if let Some(authority) = req.uri().authority() {
            let host = match authority.port() {
                Some(port) => format!("{}:{}", authority.host(), port.as_str()),
                None => authority.host().to_string(),
            };
            return HeaderValue::from_str(&host)
                .map(Target::Absolute)
                .map_err(|_| "The request target's host is not valid.");
        }
        let mut hosts = req.headers().get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(host), None) => Ok(Target::HostHeader(host.clone())),
            (None, _) => Err("The request has no Host header, so no app can be chosen."),
            (Some(_), Some(_)) => Err("The request has more than one Host header."),
        }
    }

    fn value(&self) -> &HeaderValue {
        match self {
            Target::HostHeader(v) | Target::Absolute(v) => v,
        }
    }
}

/// Handles one request on `conn`.
pub(crate) async fn handle(req: Request<Incoming>, conn: Arc<ConnState>) -> Response<RouterBody> {
    conn.set_phase(Phase::AwaitingUpstream);
    let mut exchange = Exchange::new(
        conn,
        req.method().clone(),
        req.uri().path_and_query().cloned(),
    );
    if req.method() == hyper::Method::CONNECT {
        // Apps are reached by name; the router tunnels to no address a
        // client picks.
        let html = pages::bad_request("This server is not a forward proxy: CONNECT is refused.");
        return page(
            exchange,
            StatusCode::METHOD_NOT_ALLOWED,
            reason::BAD_REQUEST,
            html,
        );
    }
    let target = match Target::of(&req) {
        Ok(t) => t,
        Err(why) => return bad_request(exchange, why),
    };
    let Ok(host) = target.value().to_str() else {
        return bad_request(exchange, "The Host header is not valid.");
    };
    // A clone of the connection's own Arc: no refcount shared across threads.
    let conn = exchange.conn.clone();
    let proxy = &conn.proxy;
    let instances = match proxy.table.lookup(host) {
        Some(Route::Up(set)) => set,
        Some(Route::Down { app, why }) => {
            let html = pages::app_down(&app, &why);
            exchange.app = AppRef::Named(app);
            return page(exchange, StatusCode::BAD_GATEWAY, reason::APP_DOWN, html);
        }
        Some(Route::Deploying { app, retry_after }) => {
            return deploying(exchange, app, retry_after)
        }
        None => {
            let html = pages::unknown_host(host);
            return page(exchange, StatusCode::NOT_FOUND, reason::UNKNOWN_HOST, html);
        }
    };
    exchange.app = AppRef::Serving(InflightGuard::new(instances.pick().clone()));
    let limit = proxy.config.max_body_bytes;
    // A body announced larger than the limit never reaches the app.
    if req.body().size_hint().lower() > limit {
        return page(
            exchange,
            StatusCode::PAYLOAD_TOO_LARGE,
            reason::BODY_TOO_LARGE,
            pages::body_too_large(limit),
        );
    }
    forward(req, target, exchange, &conn, &instances).await
}

/// 503 with `Retry-After` while the app is between two deploys.
fn deploying(
    mut exchange: Exchange,
    app: String,
    retry_after: std::time::Duration,
) -> Response<RouterBody> {
    let secs = pages::retry_after_secs(retry_after);
    let html = pages::app_deploying(&app, secs);
    exchange.app = AppRef::Named(app);
    let mut r = page(
        exchange,
        StatusCode::SERVICE_UNAVAILABLE,
        reason::APP_DEPLOYING,
        html,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The app a request is being forwarded to.
fn served_app(exchange: &Exchange) -> &crate::table::Upstream {
    match &exchange.app {
        AppRef::Serving(guard) => guard.upstream(),
        _ => unreachable!("forward is only called for a served app"),
    }
}

async fn forward(
    mut req: Request<Incoming>,
    target: Target,
    mut exchange: Exchange,
    conn: &Arc<ConnState>,
    instances: &Instances,
) -> Response<RouterBody> {
    let proxy = &conn.proxy;
    let upgrade = headers::is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Origin form on the upstream connection: the path, no authority.
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match hyper::Uri::builder().path_and_query(path).build() {
        Ok(uri) => parts.uri = uri,
        Err(_) => return bad_request(exchange, "The request target is not a valid path."),
    }
    parts.version = hyper::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Target::Absolute(authority) = &target {
        parts.headers.insert(header::HOST, authority.clone());
    }
    let peer = Peer {
        ip: conn.peer.ip(),
        ip_header: &conn.peer_header,
        trusted: conn.trusted,
    };
    exchange.client = headers::set_forwarding(&mut parts.headers, &peer, target.value(), |ip| {
        proxy.config.is_trusted(ip)
    });
    let body = RequestBody::new(body, proxy.config.max_body_bytes, conn);
    let replay = retry::Replay::of(&parts, &body, upgrade, instances);
    let timeout = proxy.config.upstream_response_timeout;
    let req = Request::from_parts(parts, body);
    let sent = retry::send(req, replay, instances, &mut exchange.app, &proxy.client);
    let mut resp = match within_upstream_timeout(sent, conn).await {
        Some(Ok(resp)) => resp,
        Some(Err(e)) => return upstream_failed(exchange, &e),
        None => {
            exchange.outcome = Some(Outcome::UpstreamTimeout);
            let html = pages::app_too_slow(&served_app(&exchange).app, timeout);
            return page(
                exchange,
                StatusCode::GATEWAY_TIMEOUT,
                reason::UPSTREAM_TIMEOUT,
                html,
            );
        }
    };
    conn.set_phase(Phase::Streaming);
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            // The tunnel counts in flight now; the exchange is logged at once.
            let app = AppRef::Named(served_app(&exchange).app.clone());
            let guard = std::mem::replace(&mut exchange.app, app);
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                guard,
                conn.clone(),
            ));
        }
    }
    let (mut parts, body) = resp.into_parts();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop(&mut parts.headers, false);
    }
    // Only the router's own pages carry the marker.
    parts.headers.remove(&X_BYTEPORT_ROUTER);
    Response::from_parts(parts, RouterBody::upstream(body, exchange, status))
}

/// Waits for `sent` (the app's response head) until
/// `upstream_response_timeout` has passed with nothing moving on the client
/// connection — counted from the request body's end: while the client
/// still owes body bytes a silence is its own (the watchdog's idle
/// timeout), not the app's. `None` when it passed. The watchdog keeps the
/// time; nothing here arms a timer.
async fn within_upstream_timeout<F: Future>(sent: F, conn: &ConnState) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = sent => Some(out),
        () = watchdog::upstream_overdue(conn) => None,
    }
}

/// The request could not be passed on: the client's fault (its body), or
/// the app's.
fn upstream_failed(mut exchange: Exchange, e: &UpstreamError) -> Response<RouterBody> {
    match request_body_error(e) {
        Some(RequestBodyError::TooLarge { limit }) => page(
            exchange,
            StatusCode::PAYLOAD_TOO_LARGE,
            reason::BODY_TOO_LARGE,
            pages::body_too_large(*limit),
        ),
        Some(body_error) if body_error.client_left() => {
            // Nobody will read this; the exchange is logged as abandoned.
            exchange.outcome = Some(Outcome::ClientAbandoned);
            let mut r = bad_request(exchange, "The request body ended early.");
            r.body_mut().exchange_mut().status = 499;
            r
        }
        Some(body_error) => {
            tracing::debug!(peer = %exchange.conn.peer, error = %body_error, "router: bad request body");
            bad_request(
                exchange,
                "The request body is malformed (its chunked encoding or length is broken).",
            )
        }
        None => {
            tracing::debug!(error = %e, "router: upstream request failed");
            exchange.outcome = Some(Outcome::UpstreamError);
            let html = pages::app_down(&served_app(&exchange).app, "the app did not answer");
            page(
                exchange,
                StatusCode::BAD_GATEWAY,
                reason::UPSTREAM_ERROR,
                html,
            )
        }
    }
}

/// The client body's error, if that is what made sending fail.
pub(crate) fn request_body_error(e: &UpstreamError) -> Option<&RequestBodyError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(body) = s.downcast_ref::<RequestBodyError>() {
            return Some(body);
        }
        source = s.source();
    }
    None
}

/// Copies bytes both ways between an upgraded client connection and the
/// app, until either side closes or nothing moves for `idle_timeout`.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    app: AppRef,
    conn: Arc<ConnState>,
) {
    let _inflight = app;
    match tokio::try_join!(client, upstream) {
        Ok((client, server)) => {
            conn.set_phase(Phase::Tunnel);
            let _watchdog = watchdog::spawn(&conn);
            let mut client = TokioIo::new(client);
            let mut server = TokioIo::new(server);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = watchdog::closed(&conn) => {}
            }
        }
        Err(e) => tracing::debug!(error = %e, "router: upgrade failed"),
    }
}
