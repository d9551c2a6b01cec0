//! Plain-HTTP forwarding: an absolute-form request (`GET
//! http://deb.debian.org/debian/dists/...`) is sent upstream in origin
//! form over a pooled connection that the [`Dialer`] made (resolved,
//! checked, connected to the checked address), without hop-by-hop headers.

use super::Body;
use crate::dial::{DialError, Dialer};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, CONNECTION};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects the pooled client through the policy.
#[derive(Clone)]
struct Connector {
    dialer: Arc<Dialer>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let port = uri.port_u16().unwrap_or(80);
            let (stream, _) = dialer.connect(host, port).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Forwards absolute-form requests.
pub(super) struct Forwarder {
    client: Client<Connector, Incoming>,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Forwarder {
    pub(super) fn new(dialer: Arc<Dialer>, idle: Duration) -> Forwarder {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(8)
            .build(Connector { dialer });
        Forwarder { client }
    }

    /// Send `req` upstream; the error is the [`DialError`] when the
    /// destination was refused or unreachable.
    pub(super) async fn forward(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, DialError> {
        strip_hop_by_hop(req.headers_mut());
        let host = req.uri().host().unwrap_or_default().to_string();
        let port = req.uri().port_u16().unwrap_or(80);
        match self.client.request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Err(e) => Err(dial_error(&e).unwrap_or_else(|| DialError::Connect {
                host,
                port,
                detail: chain(&e),
            })),
        }
    }
}

/// Remove hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// The [`DialError`] somewhere in an error's source chain, rebuilt (the
/// client keeps its own copy behind a reference).
fn dial_error(e: &(dyn std::error::Error + 'static)) -> Option<DialError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<DialError>() {
            return Some(match d {
                DialError::Refused(r) => DialError::Refused(r.clone()),
                DialError::BadHost(h) => DialError::BadHost(h.clone()),
                DialError::Resolve { host, source } => DialError::Resolve {
                    host: host.clone(),
                    source: std::io::Error::new(source.kind(), source.to_string()),
                },
                DialError::Connect { host, port, detail } => DialError::Connect {
                    host: host.clone(),
                    port: *port,
                    detail: detail.clone(),
                },
            });
        }
        cur = err.source();
    }
    None
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        parts.push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept"]);
    }
}
