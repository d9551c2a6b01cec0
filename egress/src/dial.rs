//! Connecting on behalf of sandboxed code: parse the host ([`crate::host`]),
//! resolve it once, judge every address ([`crate::policy`]), and connect to
//! an address that was judged — never resolve again, so a name cannot
//! answer "public" to the check and "private" to the connect (DNS
//! rebinding).
//!
//! Answers are kept for [`DNS_TTL`] and concurrent lookups of one name
//! share a single query: a package manager opens a dozen connections to
//! its registry at once, and resolvers that drop bursts of identical
//! queries (this project's CI resolver drops about half of 30) turn each
//! dropped one into glibc's 5 s retry — and npm then backs off for 10-20 s.
//! Cached addresses are judged again on every connection.

use crate::host::{parse_host, Host, HostError};
use crate::local::LocalAddresses;
use crate::policy::{Denied, Policy};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Addresses of one name tried at most (getaddrinfo's order: the host's
/// preferred family first).
const MAX_ADDRESSES: usize = 4;

/// How long a name's addresses are reused (getaddrinfo reports no TTL).
pub const DNS_TTL: Duration = Duration::from_secs(30);

/// Names remembered at most; past that the cache starts over.
const DNS_CACHE_NAMES: usize = 1024;

/// One name's answer, behind a lock held while it is being looked up.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Vec<IpAddr>)>>>;

/// Resolved names, with single-flight lookups.
#[derive(Debug, Default)]
struct DnsCache {
    names: Mutex<HashMap<String, Slot>>,
}

impl DnsCache {
    async fn lookup(&self, name: &str) -> std::io::Result<Vec<IpAddr>> {
        let slot = {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            if names.len() >= DNS_CACHE_NAMES && !names.contains_key(name) {
                names.clear();
            }
            names.entry(name.to_string()).or_default().clone()
        };
        let mut answer = slot.lock().await;
        if let Some((at, addrs)) = answer.as_ref() {
            if at.elapsed() < DNS_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((name, 0))
            .await?
            .map(|a| a.ip())
            .collect();
        *answer = Some((Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// A destination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host as parsed (an address or a name).
    pub host: Host,
    /// The port asked for.
    pub port: u16,
    /// Every address the host stood for, each denied.
    pub denied: Vec<Denied>,
    /// The name means this host whatever DNS says (`localhost`, `*.localhost`).
    pub loopback_name: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (host, port) = (&self.host, self.port);
        if self.loopback_name {
            return write!(f, "{host}:{port} names this host (loopback)");
        }
        let reasons: Vec<String> = self.denied.iter().map(|d| d.to_string()).collect();
        match host {
            Host::Ip(_) => f.write_str(&reasons.join("; ")),
            Host::Name(_) => write!(
                f,
                "{host}:{port} resolves only to refused addresses: {}",
                reasons.join("; ")
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The host is not a valid name or address.
    #[error(transparent)]
    BadHost(#[from] HostError),
    /// The policy refuses every address of the destination.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// DNS failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// Allowed addresses, but none accepted a connection in time.
    #[error("cannot connect to {host}:{port}: {detail}")]
    Connect {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// What happened at each address tried.
        detail: String,
    },
}

/// Resolves, checks and connects under a [`Policy`].
#[derive(Debug)]
pub struct Dialer {
    policy: Policy,
    local: LocalAddresses,
    connect_timeout: Duration,
    dns: DnsCache,
}

impl Dialer {
    /// A dialer enforcing `policy`, giving each address `connect_timeout`.
    pub fn new(policy: Policy, connect_timeout: Duration) -> Dialer {
        Dialer {
            policy,
            local: LocalAddresses::new(Duration::from_secs(2)),
            connect_timeout,
            dns: DnsCache::default(),
        }
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The addresses `host:port` may be reached at, in the resolver's
    /// order, or why none may. Resolves names once; the caller must connect
    /// to these addresses and never resolve `host` again.
    pub async fn allowed_addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, DialError> {
        let parsed = parse_host(host)?;
        let candidates: Vec<SocketAddr> = match &parsed {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(name) if name == "localhost" || name.ends_with(".localhost") => {
                // Such a name is this host whatever DNS says (RFC 6761): it
                // reaches loopback only where the policy makes an exception
                // for that port (an app VM's way to the router, which serves
                // every app at `<app>.localhost`).
                let loopback = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
                if self.policy.check(loopback, &[]).is_err() {
                    return Err(DialError::Refused(Refusal {
                        host: parsed,
                        port,
                        denied: Vec::new(),
                        loopback_name: true,
                    }));
                }
                vec![loopback]
            }
            Host::Name(name) => self
                .dns
                .lookup(name)
                .await
                .map_err(|source| DialError::Resolve {
                    host: name.clone(),
                    source,
                })?
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        };
        let local = self.local.get();
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for addr in candidates {
            match self.policy.check(addr, &local) {
                Ok(()) if !allowed.contains(&addr) => allowed.push(addr),
                Ok(()) => {}
                Err(d) => denied.push(d),
            }
        }
        if allowed.is_empty() {
            return Err(DialError::Refused(Refusal {
                host: parsed,
                port,
                denied,
                loopback_name: false,
            }));
        }
        allowed.truncate(MAX_ADDRESSES);
        Ok(allowed)
    }

    /// Connect to `host:port` if the policy allows it: to the first checked
    /// address that accepts. Returns the stream and the address it reached.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, SocketAddr), DialError> {
        let addrs = self.allowed_addresses(host, port).await?;
        let mut tried = Vec::new();
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(e)) => tried.push(format!("{addr}: {e}")),
                Err(_) => tried.push(format!(
                    "{addr}: no answer within {:?}",
                    self.connect_timeout
                )),
            }
        }
        Err(DialError::Connect {
            host: host.to_string(),
            port,
            detail: tried.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer() -> Dialer {
        Dialer::new(Policy::internet_only(), Duration::from_secs(2))
    }

    #[tokio::test]
    async fn literals_in_any_spelling_are_refused_before_any_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for host in [
            "127.0.0.1",
            "2130706433",
            "0x7f.1",
            "0177.1",
            "[::ffff:127.0.0.1]",
        ] {
            match dialer().connect(host, port).await {
                Err(DialError::Refused(r)) => {
                    assert!(r.to_string().contains("loopback"), "{host}: {r}");
                    assert_eq!(r.denied[0].addr.port(), port);
                }
                other => panic!("{host}: expected a refusal, got {other:?}"),
            }
        }
        for host in ["localhost", "LOCALHOST.", "anything.localhost"] {
            let e = dialer().connect(host, port).await.unwrap_err();
            assert!(e.to_string().contains("names this host"), "{e}");
        }
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(accepted.is_err(), "a refused destination was connected to");
    }

    #[tokio::test]
    async fn concurrent_lookups_of_a_name_share_one_answer() {
        let cache = Arc::new(DnsCache::default());
        let lookups: Vec<_> = (0..20)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.lookup("localhost").await.unwrap() })
            })
            .collect();
        let mut answers = Vec::new();
        for l in lookups {
            answers.push(l.await.unwrap());
        }
        assert!(
            answers.iter().all(|a| *a == answers[0] && !a.is_empty()),
            "{answers:?}"
        );
        assert_eq!(cache.names.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_localhost_name_reaches_loopback_only_at_an_excepted_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let d = Dialer::new(
            Policy::internet_only().allowing(crate::Allow::Addr(addr)),
            Duration::from_secs(2),
        );
        let (_s, reached) = d.connect("other-app.localhost", addr.port()).await.unwrap();
        assert_eq!(reached, addr);
        let e = d
            .connect("other-app.localhost", addr.port() ^ 1)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("names this host"), "{e}");
    }

    #[tokio::test]
    async fn an_explicit_exception_connects_and_reports_the_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let d = Dialer::new(
            Policy::internet_only().allowing(crate::Allow::Addr(addr)),
            Duration::from_secs(2),
        );
        let (_s, reached) = d.connect("127.0.0.1", addr.port()).await.unwrap();
        assert_eq!(reached, addr);
        assert!(listener.accept().await.is_ok());
        let e = d.connect("[::1", 1).await.unwrap_err();
        assert!(matches!(e, DialError::BadHost(_)), "{e}");
    }
}
