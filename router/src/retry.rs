//! Sending a request to one of an app's instances, and to another when
//! that one fails: a failed connect (nothing was sent) for any request, a
//! failure before the response head only for a [`Replay`]able one.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Body as _;
use hyper::{HeaderMap, Method, Request, Response, Uri};

use crate::body::{AppRef, RequestBody};
use crate::client::{PooledBody, UpstreamClient, UpstreamError};
use crate::proxy::request_body_error;
use crate::table::{InflightGuard, Instances, Upstream};

/// What it takes to send a request again once it has gone out: only for
/// a bodiless safe request (GET, HEAD, OPTIONS) to an app with several
/// instances — what nginx's `proxy_next_upstream error` retries.
pub(crate) struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    pub fn of(
        parts: &hyper::http::request::Parts,
        body: &RequestBody,
        upgrade: bool,
        instances: &Instances,
    ) -> Option<Replay> {
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        (safe && !upgrade && body.is_end_stream() && instances.upstreams().len() > 1).then(|| {
            Replay {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: parts.headers.clone(),
            }
        })
    }

    fn request(&self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Sends `req` to the instance `app` is counted against, moving on to
/// another instance (and counting it there) when the connect fails — the
/// failed one is passed over for a while — or, for a [`Replay`]able
/// request, when the instance fails before answering. A kept-alive
/// connection the app had closed unnoticed is replaced by a new one to
/// the same instance when none of the request went out.
pub(crate) async fn send(
    mut req: Request<RequestBody>,
    replay: Option<Replay>,
    instances: &Instances,
    app: &mut AppRef,
    client: &UpstreamClient,
) -> Result<Response<PooledBody>, UpstreamError> {
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut fresh = false;
    loop {
        let upstream: Arc<Upstream> = match &*app {
            AppRef::Serving(guard) => guard.upstream().clone(),
            _ => unreachable!("retry::send is only called for a served app"),
        };
        let addr = upstream.addr;
        let error = match client.checkout(addr, fresh).await {
            Err(e) => {
                upstream.mark_failed();
                e
            }
            Ok(checkout) => {
                let reused = checkout.reused;
                match client.send_on(checkout, addr, req).await {
                    Ok(resp) => {
                        upstream.answered();
                        return Ok(resp);
                    }
                    Err(failed) => {
                        // A new connection closed unanswered: nothing serves
                        // there (a port forward accepts for a dead app).
                        if !reused && request_body_error(&failed.error).is_none() {
                            upstream.mark_failed();
                        }
                        match (failed.unsent, &replay) {
                            (Some(unsent), _) if reused => {
                                // A stale pooled connection: a new one, same instance.
                                req = unsent;
                                fresh = true;
                                continue;
                            }
                            (Some(unsent), _) => req = unsent,
                            (None, Some(replay)) => req = replay.request(),
                            (None, None) => return Err(failed.error),
                        }
                        failed.error
                    }
                }
            }
        };
        tried.push(addr);
        let Some(next) = instances.pick_except(&tried) else {
            return Err(error);
        };
        tracing::debug!(%addr, next = %next.addr, %error, "router: instance failed; trying another");
        *app = AppRef::Serving(InflightGuard::new(next.clone()));
        fresh = false;
    }
}
