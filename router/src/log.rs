//! The per-request record the router hands to its owner once a request is
//! over (its response sent, or the client gone).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;

/// Called once per request when it is over, on the router's task: keep it
/// quick (no blocking I/O, no global lock).
pub type OnRequest = Arc<dyn Fn(&RequestRecord<'_>) + Send + Sync>;

/// The first router's log callback: (app, line). [`crate::Router::bind`]
/// takes it and feeds it [`RequestRecord`]'s `Display` for requests to a
/// known app.
pub type RequestLog = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response reached the client: the app's, or a page of the
    /// router's own (then [`RequestRecord::router_page`] says which).
    Completed,
    /// The client left before the response was complete. `status` is 499
    /// (as nginx logs it) if it left before the response head.
    ClientAbandoned,
    /// The app failed: refused the connection, closed it, or broke off its
    /// response. `status` is 502 if no response head reached the client.
    UpstreamError,
    /// The app sent no response head within `upstream_response_timeout`:
    /// 504.
    UpstreamTimeout,
}

impl Outcome {
    /// A stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ClientAbandoned => "client-abandoned",
            Outcome::UpstreamError => "upstream-error",
            Outcome::UpstreamTimeout => "upstream-timeout",
        }
    }
}

/// One request, as the router saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    /// The app the host routed to; `None` for an unknown host or a request
    /// refused before a host was known.
    pub app: Option<&'a str>,
    /// The request method.
    pub method: &'a Method,
    /// The request target's path and query (`/` if it had none).
    pub target: &'a str,
    /// The status sent (499 if the client left before any).
    pub status: u16,
    /// From the request head being read to the response's last byte (or
    /// the client leaving).
    pub duration: Duration,
    /// Response body bytes handed to the connection.
    pub body_bytes: u64,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or the address a trusted proxy forwarded for.
    pub client: IpAddr,
    /// How it ended.
    pub outcome: Outcome,
    /// When the router answered itself (the client got a page marked
    /// `x-byteport-router: error`), why: `unknown-host`, `app-down`, `app-deploying`,
    /// `upstream-error`, `upstream-timeout`, `body-too-large` or
    /// `bad-request`.
    pub router_page: Option<&'static str>,
    /// The instance (VM address) picked for the request — the last one
    /// tried, if another failed first. `None` when no instance was picked
    /// (unknown host, app down or deploying, refused early) and for a
    /// WebSocket upgrade (the tunnel holds the instance).
    pub upstream: Option<SocketAddr>,
}

/// The request line of the app log: `GET /x 200 3ms from 127.0.0.1:5000`,
/// then who the client is if a proxy forwarded it, then what went wrong.
impl fmt::Display for RequestRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}ms from ",
            self.method,
            self.target,
            self.status,
            self.duration.as_millis()
        )?;
        if self.client == self.peer.ip() {
            write!(f, "{}", self.peer)?;
        } else {
            write!(f, "{} via {}", self.client, self.peer)?;
        }
        match (self.outcome, self.router_page) {
            (Outcome::Completed, None) => Ok(()),
            (Outcome::Completed, Some(page)) => write!(f, " (router: {page})"),
            (Outcome::ClientAbandoned, _) => f.write_str(" (client left)"),
            (Outcome::UpstreamError, _) => f.write_str(" (app failed)"),
            (Outcome::UpstreamTimeout, _) => f.write_str(" (app too slow)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, router_page: Option<&'static str>) -> RequestRecord<'static> {
        static GET: Method = Method::GET;
        RequestRecord {
            app: Some("hello"),
            method: &GET,
            target: "/x?y=1",
            status: 200,
            duration: Duration::from_millis(3),
            body_bytes: 12,
            peer: "127.0.0.1:5000".parse().unwrap(),
            client: "127.0.0.1".parse().unwrap(),
            outcome,
            router_page,
            upstream: None,
        }
    }

    #[test]
    fn renders_the_request_line() {
        assert_eq!(
            record(Outcome::Completed, None).to_string(),
            "GET /x?y=1 200 3ms from 127.0.0.1:5000"
        );
        let mut r = record(Outcome::ClientAbandoned, None);
        r.status = 499;
        r.client = "6.6.6.6".parse().unwrap();
        assert_eq!(
            r.to_string(),
            "GET /x?y=1 499 3ms from 6.6.6.6 via 127.0.0.1:5000 (client left)"
        );
        assert!(record(Outcome::Completed, Some("body-too-large"))
            .to_string()
            .ends_with("(router: body-too-large)"));
    }
}
