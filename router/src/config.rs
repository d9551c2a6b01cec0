//! How the router treats clients, upstreams and forwarding headers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use ipnet::IpNet;

/// The router's settings. [`RouterConfig::default`] is what `byteport up`
/// runs with unless `byteport.toml` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// Where to listen. Default `127.0.0.1:8000`.
    pub listen: SocketAddr,
    /// A request head (request line and headers) must arrive whole within
    /// this time of its first byte — for a new connection, of the accept.
    /// Bytes trickling in do not extend it (slowloris). Default 10 s.
    pub header_read_timeout: Duration,
    /// The largest request head in bytes; a larger one is answered 431 and
    /// the connection closed. It also bounds what a half-sent head can
    /// make the router buffer. Default 32 KiB (nginx's default is 4 × 8 KiB).
    pub max_header_bytes: usize,
    /// A connection with no byte moving either way for this long is closed:
    /// a keep-alive connection between requests, a body stalled in either
    /// direction, a quiet WebSocket (as Heroku's 55 s and nginx's 60 s
    /// `proxy_read_timeout`). Waiting for the app's answer is governed by
    /// `upstream_response_timeout` instead. Default 60 s.
    pub idle_timeout: Duration,
    /// The most client connections open at once; beyond it a new connection
    /// is answered 503 and closed. Keep it under the process's open-file
    /// limit (`ulimit -n`), which each connection and its upstream use.
    /// Default 10 000.
    pub max_connections: usize,
    /// The most connections open at once from one client address (an IPv6
    /// client: its /64, which one host usually holds whole); beyond it 503
    /// and closed. Trusted proxies are exempt (every client behind them
    /// shares their address). Default 256.
    pub max_connections_per_client: usize,
    /// How long the app may take to start its response once nothing more
    /// is moving from the client (its body sent): 504 with the router's page
    /// beyond it. Default 60 s (nginx's `proxy_read_timeout`).
    pub upstream_response_timeout: Duration,
    /// The largest request body in bytes: 413. A body announced larger
    /// (`Content-Length`) is refused before anything reaches the app; a
    /// chunked body is cut off at the limit (the app sees its request
    /// aborted). The router streams bodies and buffers none, so this is a
    /// policy limit, not a memory one. Default 100 MiB (Cloudflare's default).
    pub max_body_bytes: u64,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `Forwarded`,
    /// `X-Real-IP`) are believed: a load balancer or TLS terminator in
    /// front of BytePort. From anyone else those headers are replaced.
    /// Default none.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 256,
            upstream_response_timeout: Duration::from_secs(60),
            max_body_bytes: 100 * 1024 * 1024,
            trusted_proxies: Vec::new(),
        }
    }
}

impl RouterConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> RouterConfig {
        RouterConfig {
            listen,
            ..RouterConfig::default()
        }
    }

    /// Checks that every setting can work: no zero deadline (every
    /// connection would be closed at once), no zero cap, a head limit that
    /// fits a request line and a few headers. [`crate::Router::serve`]
    /// refuses a config that fails this.
    pub fn validate(&self) -> Result<(), InvalidRouterConfig> {
        let invalid = |field, why| Err(InvalidRouterConfig { field, why });
        let deadlines = [
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("upstream_response_timeout", self.upstream_response_timeout),
        ];
        for (field, d) in deadlines {
            if d.is_zero() {
                return invalid(
                    field,
                    "must be more than 0 (it would close every connection at once)",
                );
            }
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_connections_per_client == 0 {
            return invalid("max_connections_per_client", "must be at least 1");
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return invalid(
                "max_header_bytes",
                "must be at least 1024 (browsers send 0.5-2 KiB heads)",
            );
        }
        Ok(())
    }

    /// Whether `peer` is one of the trusted proxies.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`;
/// it is the same client as `a.b.c.d`.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The smallest `max_header_bytes` [`RouterConfig::validate`] accepts.
const MIN_HEADER_BYTES: usize = 1024;

/// A router setting that cannot work, from [`RouterConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("router setting {field} {why}")]
pub struct InvalidRouterConfig {
    /// The [`RouterConfig`] field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A trusted-proxy entry that is neither an address nor a CIDR block.
#[derive(Debug, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR block (e.g. 10.0.0.5 or 10.0.0.0/8)")]
pub struct BadProxyEntry {
    /// The entry as written.
    pub entry: String,
}

/// Parses a list of trusted proxies: addresses or CIDR blocks, separated by
/// commas or spaces (`"10.0.0.0/8, 192.168.1.4"`), as `byteport.toml` and
/// the environment give them. An address alone is a one-address block.
pub fn parse_trusted_proxies(list: &str) -> Result<Vec<IpNet>, BadProxyEntry> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| BadProxyEntry {
                    entry: entry.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_and_match() {
        let nets = parse_trusted_proxies("10.0.0.0/8, 192.168.1.4 ::1").unwrap();
        assert_eq!(nets.len(), 3);
        let config = RouterConfig {
            trusted_proxies: nets,
            ..RouterConfig::default()
        };
        for yes in ["10.1.2.3", "192.168.1.4", "::1", "::ffff:10.9.9.9"] {
            assert!(config.is_trusted(yes.parse().unwrap()), "{yes}");
        }
        for no in ["11.0.0.1", "192.168.1.5", "::2"] {
            assert!(!config.is_trusted(no.parse().unwrap()), "{no}");
        }
        let e = parse_trusted_proxies("10.0.0.0/8,example.com").unwrap_err();
        assert!(e.to_string().contains("\"example.com\""), "{e}");
        assert!(parse_trusted_proxies("").unwrap().is_empty());
        assert!(RouterConfig::default().trusted_proxies.is_empty());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        assert_eq!(RouterConfig::default().validate(), Ok(()));
        let refused = |tune: fn(&mut RouterConfig)| {
            let mut c = RouterConfig::default();
            tune(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(refused(|c| c.idle_timeout = Duration::ZERO), "idle_timeout");
        assert_eq!(
            refused(|c| c.max_connections_per_client = 0),
            "max_connections_per_client"
        );
        assert_eq!(refused(|c| c.max_header_bytes = 100), "max_header_bytes");
        let message = InvalidRouterConfig {
            field: "max_connections",
            why: "must be at least 1",
        }
        .to_string();
        assert_eq!(message, "router setting max_connections must be at least 1");
    }
}
