//! What a client names as its destination: an IP address in any of the
//! spellings resolvers accept, or a DNS name.
//!
//! `inet_aton`, and therefore many resolvers and HTTP clients, read
//! `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1` and `0x7f.1` as
//! `127.0.0.1`. A proxy that treated those as names would hand them to the
//! resolver and connect wherever it says; a filter that compared strings
//! would let them through. Here a host whose last label is numeric is
//! parsed as an IPv4 address the way the WHATWG URL standard does
//! (decimal, `0x` hex and leading-zero octal parts, 1 to 4 parts, the last
//! part filling the remaining bytes) or rejected, so every spelling ends as
//! the address it means and the policy judges that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A destination host as the client named it, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An address literal (any IPv4 spelling, or IPv6 in brackets).
    Ip(IpAddr),
    /// A DNS name: lowercase, no trailing dot, checked label by label.
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Why a host string is not a usable destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{host}` is not a valid host name or address: {why}")]
pub struct HostError {
    /// The host as given (truncated to 100 characters).
    pub host: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Longest DNS name (RFC 1035).
const MAX_NAME: usize = 253;

/// Parse a host as it appears in a `CONNECT` authority or a URL (IPv6 in
/// brackets; no port).
pub fn parse_host(input: &str) -> Result<Host, HostError> {
    let err = |why| HostError {
        host: input.chars().take(100).collect(),
        why,
    };
    if let Some(inner) = input.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| err("unclosed `[`"))?;
        if inner.contains('%') {
            return Err(err("IPv6 zone identifiers name a local interface"));
        }
        return inner
            .parse::<Ipv6Addr>()
            .map(|v6| Host::Ip(IpAddr::V6(v6)))
            .map_err(|_| err("not an IPv6 address"));
    }
    if input.contains(':') {
        return Err(err("IPv6 addresses must be written in brackets"));
    }
    let lower = input.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(err("empty"));
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    if ends_in_a_number(last) {
        return parse_ipv4(name)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or_else(|| err("a numeric host that is not an IPv4 address"));
    }
    if name.len() > MAX_NAME {
        return Err(err("longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(err("every label must be 1 to 63 characters"));
        }
        let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        if !label.bytes().all(ok) {
            return Err(err(
                "only letters, digits, `-` and `_` (use punycode for other names)",
            ));
        }
    }
    Ok(Host::Name(name.to_string()))
}

/// WHATWG: the host is an IPv4 address when its last label is all digits
/// or parses as an IPv4 number (`0x..` hex).
fn ends_in_a_number(last: &str) -> bool {
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || ipv4_number(last).is_some())
}

/// One part of an IPv4 address: `0x`-prefixed hex, `0`-prefixed octal, or
/// decimal.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 20 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The WHATWG IPv4 parser: 1 to 4 parts, each but the last at most 255,
/// the last filling the remaining bytes.
pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<_>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    let remaining_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << remaining_bits {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "0177.0000.0.01",
            "127.1",
            "127.0.1",
            "0x7f.1",
            "0x7f.0x0.0x0.0x1",
            "127.0.0.1.",
            "017700000001",
        ] {
            assert_eq!(parse_host(s), Ok(Host::Ip(ip("127.0.0.1"))), "{s}");
        }
        assert_eq!(parse_host("0"), Ok(Host::Ip(ip("0.0.0.0"))));
        assert_eq!(parse_host("0x"), Ok(Host::Ip(ip("0.0.0.0"))));
        assert_eq!(
            parse_host("169.254.43518"),
            Ok(Host::Ip(ip("169.254.169.254")))
        );
        assert_eq!(parse_host("10.0x10203"), Ok(Host::Ip(ip("10.1.2.3"))));
    }

    #[test]
    fn ipv6_literals_need_brackets_and_no_zone() {
        assert_eq!(parse_host("[::1]"), Ok(Host::Ip(ip("::1"))));
        assert_eq!(
            parse_host("[::ffff:127.0.0.1]"),
            Ok(Host::Ip(ip("::ffff:7f00:1")))
        );
        for bad in [
            "::1",
            "[::1",
            "[fe80::1%eth0]",
            "[fe80::1%25eth0]",
            "[nope]",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numeric_hosts_that_are_not_addresses_are_rejected_not_resolved() {
        for bad in [
            "256.0.0.1",
            "1.2.3.4.5",
            "1.2..3",
            "4294967296",
            "0x100000000",
            "1.16777216",
            "1.2.65536",
            "09.0.0.1",
            "a.123",
        ] {
            let e = parse_host(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn names_are_lowercased_and_checked() {
        assert_eq!(
            parse_host("Registry.NPMJS.org."),
            Ok(Host::Name("registry.npmjs.org".into()))
        );
        assert_eq!(
            parse_host("_srv.example.com"),
            Ok(Host::Name("_srv.example.com".into()))
        );
        assert_eq!(
            parse_host("0x7f.example"),
            Ok(Host::Name("0x7f.example".into()))
        );
        let long = format!("{}.com", "a".repeat(64));
        for bad in ["", ".", "a..b", "exa mple.com", "ex/ample", "é.com", &long] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        assert!(parse_host(&"a.".repeat(126)).is_ok());
        assert!(parse_host(&"a.".repeat(128)).is_err());
        // A last label that is not a number makes a name (resolved, then checked).
        assert_eq!(
            parse_host("example.0x1g"),
            Ok(Host::Name("example.0x1g".into()))
        );
        assert_eq!(parse_host("1.2.3.0x"), Ok(Host::Ip(ip("1.2.3.0"))));
        assert_eq!(Host::Ip(ip("::1")).to_string(), "[::1]");
    }
}
