//! One proxied request: route lookup, header rewriting, forwarding (plain
//! or upgraded), error pages, and the request log line.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::table::{InflightGuard, Route, RouteTable};
use super::{pages, RequestLog};

type Body = BoxBody<Bytes, hyper::Error>;

pub struct Proxy {
    table: RouteTable,
    log: RequestLog,
    client: Client<HttpConnector, Incoming>,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn full(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed());
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
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade = headers.get(header::UPGRADE).cloned();
    for name in named {
        headers.remove(name);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::UPGRADE, u);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

impl Proxy {
    pub fn new(table: RouteTable, log: RequestLog) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        Proxy {
            table,
            log,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build(connector),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().host().map(str::to_string));
        let Some(host) = host else {
            return full(
                StatusCode::BAD_REQUEST,
                pages::bad_request("The request has no Host header, so no app can be chosen."),
            );
        };
        let upstream = match self.table.lookup(&host) {
            Some(Route::Up(u)) => u,
            Some(Route::Down { app, why }) => {
                (self.log)(
                    &app,
                    &format!("{method} {path} 502 (app not running) from {peer}"),
                );
                return full(StatusCode::BAD_GATEWAY, pages::app_down(&app, &why));
            }
            None => return full(StatusCode::NOT_FOUND, pages::unknown_host(&host)),
        };
        let guard = InflightGuard::new(upstream.clone());
        let app = upstream.app.clone();
        let response = self.forward(req, &upstream.addr, &host, peer, guard).await;
        let status = response.status();
        (self.log)(
            &app,
            &format!(
                "{method} {path} {} {}ms from {peer}",
                status.as_u16(),
                started.elapsed().as_millis()
            ),
        );
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
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let uri = match format!("http://{upstream}{path}").parse() {
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
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            parts.headers.insert("x-forwarded-for", v);
        }
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Ok(v) = HeaderValue::from_str(host) {
            parts.headers.insert("x-forwarded-host", v);
        }
        let upstream_req = Request::from_parts(parts, body);
        let mut resp = match self.client.request(upstream_req).await {
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
            return Response::from_parts(parts, body.boxed());
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        // Keep the request counted until the body has been sent.
        let body = body
            .map_frame(move |f| {
                let _ = &guard;
                f
            })
            .boxed();
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
