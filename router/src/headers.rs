//! Header rewriting between client and app: hop-by-hop headers removed,
//! forwarding headers set by the router (and believed only from a
//! trusted proxy).

use std::net::IpAddr;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

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

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// Marks the router's own responses; removed from the app's.
pub(crate) static X_BYTEPORT_ROUTER: HeaderName =
    HeaderName::from_static(crate::pages::MARKER_HEADER);

/// Whether a client header claims to say who the client is or how it
/// connected: apps trust these, so only the router (or a trusted proxy)
/// may set them.
fn is_forwarding(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-")
        || matches!(
            n,
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "true-client-ip"
                | "x-cluster-client-ip"
                | "cf-connecting-ip"
        )
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
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
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
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
        for n in named {
            headers.remove(n);
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

/// Who sent a request, as the router tells the app.
pub(crate) struct Peer<'a> {
    /// The TCP peer.
    pub ip: IpAddr,
    /// `ip` as a header value (made once per connection).
    pub ip_header: &'a HeaderValue,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `X-Real-IP` for the app and
/// returns the client's address. From an untrusted peer every forwarding
/// header it sent is dropped and the peer is the client; a trusted proxy's
/// are kept, its `X-Forwarded-For` appended to, and the client is the
/// nearest address in it that is not a trusted proxy.
pub(crate) fn set_forwarding(
    headers: &mut HeaderMap,
    peer: &Peer<'_>,
    host: &HeaderValue,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !peer.trusted {
        if headers.keys().any(is_forwarding) {
            let spoofed: Vec<HeaderName> = headers
                .keys()
                .filter(|n| is_forwarding(n))
                .cloned()
                .collect();
            for n in spoofed {
                headers.remove(n);
            }
        }
        headers.insert(X_FORWARDED_FOR.clone(), peer.ip_header.clone());
        headers.insert(X_REAL_IP.clone(), peer.ip_header.clone());
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        return peer.ip;
    }
    let chain = joined(headers, &X_FORWARDED_FOR);
    let client = client_from_chain(chain.as_deref(), peer.ip, &is_trusted);
    let xff = match chain {
        Some(prev) if !prev.is_empty() => HeaderValue::from_str(&format!("{prev}, {}", peer.ip))
            .unwrap_or_else(|_| peer.ip_header.clone()),
        _ => peer.ip_header.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        headers.insert(X_REAL_IP.clone(), v);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    client
}

/// All values of `name` joined with ", " (a list header may be split).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?;
    let mut out = first.trim().to_string();
    for v in values {
        out.push_str(", ");
        out.push_str(v.trim());
    }
    Some(out)
}

/// Walks `X-Forwarded-For` from the right (the hop nearest the router)
/// past trusted proxies; the first other address is the client. An entry
/// that is not an address stops the walk: the hop that reported it is the
/// client as far as anyone can tell.
fn client_from_chain(
    chain: Option<&str>,
    peer: IpAddr,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let mut client = peer;
    for entry in chain.unwrap_or("").rsplit(',') {
        match parse_hop(entry) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, maybe with a port (`[v6]:p`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
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

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("bank.example"));
        h.insert("x-forwarded-port", HeaderValue::from_static("443"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("true-client-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        h
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_replaced() {
        let ip_header = HeaderValue::from_static("192.0.2.7");
        let peer = Peer {
            ip: "192.0.2.7".parse().unwrap(),
            ip_header: &ip_header,
            trusted: false,
        };
        let mut h = spoofed();
        let client = set_forwarding(
            &mut h,
            &peer,
            &HeaderValue::from_static("a.localhost"),
            |_| false,
        );
        assert_eq!(client, peer.ip);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.localhost");
        for gone in ["forwarded", "x-forwarded-port", "true-client-ip"] {
            assert!(!h.contains_key(gone), "{gone} dropped");
        }
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn a_trusted_proxys_headers_are_kept_and_appended_to() {
        let ip_header = HeaderValue::from_static("10.0.0.2");
        let peer = Peer {
            ip: "10.0.0.2".parse().unwrap(),
            ip_header: &ip_header,
            trusted: true,
        };
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let mut h = spoofed();
        let client = set_forwarding(
            &mut h,
            &peer,
            &HeaderValue::from_static("a.localhost"),
            trusted,
        );
        // 10.0.0.9 is another trusted hop; 6.6.6.6 is who came to it.
        assert_eq!(client, "6.6.6.6".parse::<IpAddr>().unwrap());
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.9, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "6.6.6.6");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "bank.example");
        assert!(h.contains_key("forwarded"));

        // Without a chain the proxy itself is the client.
        let mut h = HeaderMap::new();
        let client = set_forwarding(
            &mut h,
            &peer,
            &HeaderValue::from_static("a.localhost"),
            trusted,
        );
        assert_eq!(client, peer.ip);
        assert_eq!(h["x-forwarded-for"], "10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let c = |chain| client_from_chain(Some(chain), peer, trusted).to_string();
        assert_eq!(c("1.1.1.1, 2.2.2.2, 10.0.0.5"), "2.2.2.2");
        assert_eq!(c("10.0.0.7, 10.0.0.5"), "10.0.0.7");
        assert_eq!(c("1.1.1.1, junk, 10.0.0.5"), "10.0.0.5");
        assert_eq!(c("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(c(""), "10.0.0.2");
    }
}
