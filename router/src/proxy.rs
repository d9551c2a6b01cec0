//! One proxied request: route lookup, header rewriting, forwarding (plain
//! or upgraded), error pages, and the request log line.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::client::{PooledBody, UpstreamClient};
use super::table::{InflightGuard, Route, RouteTable};
use super::{pages, RequestLog};

/// What the router answers with: a page of its own, or the app's body,
/// which keeps the request counted in flight (for drains) and its upstream
/// connection out of the pool until it has been sent.
pub enum RouterBody {
    /// The router's own page (404, 502, 400).
    Page(Full<Bytes>),
    /// The app's response body.
    Upstream {
        /// The body, returning its connection to the pool at the end.
        body: PooledBody,
        /// Counts the request until the body is gone.
        _inflight: Option<InflightGuard>,
    },
}

impl hyper::body::Body for RouterBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RouterBody::Page(page) => std::pin::Pin::new(page)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            RouterBody::Upstream { body, .. } => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RouterBody::Page(page) => page.is_end_stream(),
            RouterBody::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            RouterBody::Page(page) => page.size_hint(),
            RouterBody::Upstream { body, .. } => body.size_hint(),
        }
    }
}

type Body = RouterBody;

pub struct Proxy {
    table: RouteTable,
    log: RequestLog,
    client: UpstreamClient,
}

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn full(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(RouterBody::Page(Full::new(Bytes::from(html))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (and those named by `Connection`), keeping
/// `Connection: upgrade` + `Upgrade` when `keep_upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Taken first: `Connection: upgrade` names the Upgrade header itself.
    let upgrade = if keep_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request log line for a request that was not proxied.
fn request_line<B>(req: &Request<B>, outcome: &str, started: Instant, peer: SocketAddr) -> String {
    format!(
        "{} {} {outcome} {}ms from {peer}",
        req.method(),
        req.uri().path_and_query().map_or("/", |p| p.as_str()),
        started.elapsed().as_millis()
    )
}

impl Proxy {
    pub fn new(table: RouteTable, log: RequestLog) -> Proxy {
        Proxy {
            table,
            log,
            client: UpstreamClient::default(),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let host = match req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
        {
            Some(h) => h.to_string(),
            None => {
                return full(
                    StatusCode::BAD_REQUEST,
                    pages::bad_request("The request has no Host header, so no app can be chosen."),
                )
            }
        };
        let upstream = match self.table.lookup(&host) {
            Some(Route::Up(u)) => u,
            Some(Route::Down { app, why }) => {
                let line = request_line(&req, "502 (app not running)", started, peer);
                (self.log)(&app, &line);
                return full(StatusCode::BAD_GATEWAY, pages::app_down(&app, &why));
            }
            None => return full(StatusCode::NOT_FOUND, pages::unknown_host(&host)),
        };
        let method = req.method().clone();
        let path = req.uri().path_and_query().cloned();
        let guard = InflightGuard::new(upstream.clone());
        let response = self.forward(req, &upstream.addr, &host, peer, guard).await;
        let line = format!(
            "{method} {} {} {}ms from {peer}",
            path.as_ref().map_or("/", |p| p.as_str()),
            response.status().as_u16(),
            started.elapsed().as_millis()
        );
        (self.log)(&upstream.app, &line);
        response
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        upstream: &SocketAddr,
        host: &str,
        peer: SocketAddr,
        guard: InflightGuard,
    ) -> Response<Body> {
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // Origin form on the upstream connection: the path, no authority.
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        let uri = match hyper::Uri::builder().path_and_query(path).build() {
            Ok(u) => u,
            Err(_) => {
                return full(
                    StatusCode::BAD_REQUEST,
                    pages::bad_request("The request target is not a valid path."),
                )
            }
        };
        parts.uri = uri;
        parts.version = hyper::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, upgrade);
        let xff = match parts
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            parts.headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        parts
            .headers
            .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        match parts.headers.get(header::HOST).cloned() {
            Some(v) => {
                parts.headers.insert(X_FORWARDED_HOST.clone(), v);
            }
            None => {
                if let Ok(v) = HeaderValue::from_str(host) {
                    parts.headers.insert(X_FORWARDED_HOST.clone(), v);
                }
            }
        }
        let upstream_req = Request::from_parts(parts, body);
        let mut resp = match self.client.send(*upstream, upstream_req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%upstream, error = %e, "router: upstream request failed");
                return full(
                    StatusCode::BAD_GATEWAY,
                    pages::app_down(
                        host.split('.').next().unwrap_or(host),
                        "the app did not answer",
                    ),
                );
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    let _guard = guard;
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((client, server)) => {
                            let mut client = TokioIo::new(client);
                            let mut server = TokioIo::new(server);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "router: upgrade failed"),
                    }
                });
            }
            let (parts, body) = resp.into_parts();
            let body = RouterBody::Upstream {
                body,
                _inflight: None,
            };
            return Response::from_parts(parts, body);
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let body = RouterBody::Upstream {
            body,
            _inflight: Some(guard),
        };
        Response::from_parts(parts, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-app"));
    }

    #[test]
    fn websocket_upgrade_headers_survive() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }
}
