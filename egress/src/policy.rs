//! The address policy: a pure decision on one destination address.
//!
//! Sandboxed code (a build step, later an app VM) may reach the internet
//! and nothing else. Denied, always, unless an [`Allow`] rule names the
//! destination explicitly:
//!
//! - the special-purpose ranges in [`SPECIAL_RANGES`]: loopback, "this
//!   network" (`0.0.0.0` reaches this host), private networks, CGNAT,
//!   link-local (cloud metadata at `169.254.169.254`), multicast, reserved
//!   space, IPv6 loopback/unspecified/ULA/link-local/site-local, and the
//!   IPv6 forms that embed or tunnel an IPv4 address (IPv4-compatible,
//!   SIIT, 6to4, Teredo, local-use NAT64);
//! - IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) and the well-known NAT64
//!   prefix (`64:ff9b::a.b.c.d`) are judged by the IPv4 address inside;
//! - any address assigned to one of this host's interfaces (a public
//!   address of the host reaches the host's own services just as loopback
//!   does);
//! - port 0.
//!
//! The documentation ranges (`192.0.2.0/24`, `198.51.100.0/24`,
//! `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`) are *not* denied: they
//! are never routed on the internet, so reaching them gives nothing, and
//! sandboxed CI networks (this project's own among them) answer DNS with
//! them.
//!
//! The decision is made on addresses, after DNS resolution, and the caller
//! connects to the very address that was checked ([`crate::dial`]), so a
//! name that resolves to a private address (DNS rebinding) is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address range written as CIDR (`10.0.0.0/8`, `fc00::/7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `prefix` leading bits of `addr` (host bits are cleared).
    /// `None` when `prefix` is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= bits).then(|| Cidr {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` (of the same family) lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            _ => false,
        }
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a string is not a CIDR range or an allow rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not {expected}")]
pub struct ParseError {
    input: String,
    expected: &'static str,
}

impl FromStr for Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError {
            input: s.to_string(),
            expected: "an address range such as 10.0.0.0/8 or fd00::/8",
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Cidr::new(addr, prefix).ok_or_else(bad)
    }
}

/// A special-purpose range the policy denies, with what it is for the
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    /// The range in CIDR notation.
    pub cidr: &'static str,
    /// What the range is, e.g. `loopback` or `private network`.
    pub what: &'static str,
}

/// Every range the policy denies, most specific first within a family.
pub const SPECIAL_RANGES: &[SpecialRange] = &[
    // IPv4
    r("0.0.0.0/8", "\"this network\" (0.0.0.0 reaches this host)"),
    r("10.0.0.0/8", "private network"),
    r("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    r("127.0.0.0/8", "loopback"),
    r(
        "169.254.0.0/16",
        "link-local (cloud metadata services live here)",
    ),
    r("172.16.0.0/12", "private network"),
    r("192.0.0.0/24", "IETF protocol assignments"),
    r("192.168.0.0/16", "private network"),
    r("198.18.0.0/15", "benchmarking network"),
    r("224.0.0.0/4", "multicast"),
    r("240.0.0.0/4", "reserved (and broadcast)"),
    // IPv6
    r("::/128", "unspecified address (reaches this host)"),
    r("::1/128", "loopback"),
    r("::/96", "IPv4-compatible (deprecated)"),
    r("::ffff:0:0:0/96", "IPv4-translated (SIIT)"),
    r("64:ff9b:1::/48", "local-use NAT64"),
    r("100::/64", "discard-only"),
    r("2001::/23", "IETF protocol assignments (Teredo among them)"),
    r("2002::/16", "6to4"),
    r("5f00::/16", "segment-routing identifiers"),
    r("fc00::/7", "unique local (private network)"),
    r("fe80::/10", "link-local"),
    r("fec0::/10", "site-local (deprecated)"),
    r("ff00::/8", "multicast"),
];

const fn r(cidr: &'static str, what: &'static str) -> SpecialRange {
    SpecialRange { cidr, what }
}

/// The well-known NAT64 prefix; the last 32 bits are an IPv4 address.
const NAT64: &str = "64:ff9b::/96";

/// The special range `ip` is in, if any (IPv4-mapped addresses are judged
/// by their IPv4 address; see [`canonical`]).
pub fn special_range(ip: IpAddr) -> Option<&'static SpecialRange> {
    static PARSED: std::sync::LazyLock<Vec<(Option<Cidr>, &'static SpecialRange)>> =
        std::sync::LazyLock::new(|| {
            SPECIAL_RANGES
                .iter()
                .map(|range| (range.cidr.parse().ok(), range))
                .collect()
        });
    let ip = canonical(ip);
    PARSED
        .iter()
        .find(|(cidr, _)| cidr.is_some_and(|c| c.contains(ip)))
        .map(|(_, range)| *range)
}

/// `ip` with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) turned into the IPv4
/// address it stands for (what the kernel connects to).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// An explicit exception to the policy (an internal package mirror, a test
/// server). Production defaults have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Allow {
    /// Exactly this address and port.
    Addr(SocketAddr),
    /// Any port of any address in this range.
    Range(Cidr),
}

impl Allow {
    fn covers(&self, dest: SocketAddr) -> bool {
        let ip = canonical(dest.ip());
        match self {
            Allow::Addr(a) => canonical(a.ip()) == ip && a.port() == dest.port(),
            Allow::Range(c) => c.contains(ip),
        }
    }
}

impl FromStr for Allow {
    type Err = ParseError;

    /// `10.1.2.3:8081`, `[fd00::1]:443`, `10.1.2.3` (any port) or `10.0.0.0/8`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Allow::Addr(a));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(Allow::Range(Cidr { addr: ip, prefix }));
        }
        s.parse::<Cidr>().map(Allow::Range).map_err(|_| ParseError {
            input: s.to_string(),
            expected: "an address, address:port or range (10.1.2.3:8081, 10.0.0.0/8)",
        })
    }
}

impl std::fmt::Display for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allow::Addr(a) => write!(f, "{a}"),
            Allow::Range(c) => write!(f, "{c}"),
        }
    }
}

/// Why one destination address is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It lies in a special-purpose range.
    Special(&'static SpecialRange),
    /// The NAT64 form of an IPv4 address in a special-purpose range.
    Nat64(&'static SpecialRange),
    /// It is assigned to one of this host's interfaces.
    LocalAddress,
    /// Port 0 is nobody's service.
    PortZero,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Special(r) => write!(f, "{} ({})", r.what, r.cidr),
            Reason::Nat64(r) => write!(f, "NAT64 form of an address in {} ({})", r.what, r.cidr),
            Reason::LocalAddress => f.write_str("an address of this host"),
            Reason::PortZero => f.write_str("port 0"),
        }
    }
}

/// A destination the policy denies, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{addr} is {reason}")]
pub struct Denied {
    /// The destination as checked.
    pub addr: SocketAddr,
    /// Why it is denied.
    pub reason: Reason,
}

/// Where sandboxed code may connect: the internet, plus explicit
/// exceptions. `Policy::default()` is [`Policy::internet_only`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Allow>,
}

impl Policy {
    /// The internet only, no exceptions (the production default).
    pub fn internet_only() -> Policy {
        Policy::default()
    }

    /// This policy plus an explicit exception (tests name their own server
    /// this way; an operator names an internal package mirror).
    pub fn allowing(mut self, allow: Allow) -> Policy {
        self.allow.push(allow);
        self
    }

    /// The explicit exceptions.
    pub fn allowed(&self) -> &[Allow] {
        &self.allow
    }

    /// Decide on one destination. `local` holds the addresses of this
    /// host's interfaces ([`crate::local_addresses`]); passing them in
    /// keeps the decision a pure function.
    pub fn check(&self, dest: SocketAddr, local: &[IpAddr]) -> Result<(), Denied> {
        if self.allow.iter().any(|a| a.covers(dest)) {
            return Ok(());
        }
        let deny = |reason| Err(Denied { addr: dest, reason });
        let ip = canonical(dest.ip());
        if let Some(range) = special_range(ip) {
            return deny(Reason::Special(range));
        }
        if let IpAddr::V6(v6) = ip {
            if NAT64.parse::<Cidr>().is_ok_and(|c| c.contains(ip)) {
                // The gateway connects to the IPv4 address in the last 32 bits.
                let v4 = Ipv4Addr::from(u128::from(v6) as u32);
                if let Some(range) = special_range(IpAddr::V4(v4)) {
                    return deny(Reason::Nat64(range));
                }
            }
        }
        if local.iter().any(|l| canonical(*l) == ip) {
            return deny(Reason::LocalAddress);
        }
        if dest.port() == 0 {
            return deny(Reason::PortZero);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &Policy, s: &str) -> Result<(), Denied> {
        p.check(s.parse().unwrap(), &[])
    }

    #[test]
    fn every_special_range_parses_and_is_found() {
        for range in SPECIAL_RANGES {
            let c: Cidr = range.cidr.parse().unwrap();
            assert_eq!(c.to_string(), range.cidr, "ranges are written canonically");
            let first = special_range(c.addr()).unwrap();
            assert!(
                first.cidr.parse::<Cidr>().unwrap().contains(c.addr()),
                "{range:?}"
            );
        }
    }

    #[test]
    fn the_internet_is_allowed_and_the_host_and_private_networks_are_not() {
        let p = Policy::internet_only();
        for ok in [
            "1.1.1.1:443",
            "151.101.0.223:80",
            "203.0.113.80:443",
            "192.0.2.10:80",
            "[2606:4700::1111]:443",
            "[2001:db8::1]:80",
            "[64:ff9b::808:808]:53",
        ] {
            assert_eq!(check(&p, ok), Ok(()), "{ok}");
        }
        for (bad, what) in [
            ("127.0.0.1:2222", "loopback"),
            ("127.255.255.254:1", "loopback"),
            ("0.0.0.0:22", "this network"),
            ("10.1.2.3:80", "private network"),
            ("172.31.255.255:80", "private network"),
            ("192.168.1.1:80", "private network"),
            ("100.100.100.200:80", "carrier-grade NAT"),
            ("169.254.169.254:80", "link-local"),
            ("192.0.0.170:80", "IETF"),
            ("198.19.0.1:80", "benchmarking"),
            ("224.0.0.251:5353", "multicast"),
            ("255.255.255.255:80", "reserved"),
            ("[::1]:22", "loopback"),
            ("[::]:22", "unspecified"),
            ("[::ffff:127.0.0.1]:22", "loopback"),
            ("[::ffff:a9fe:a9fe]:80", "link-local"),
            ("[::127.0.0.1]:22", "IPv4-compatible"),
            ("[::ffff:0:a00:1]:80", "SIIT"),
            (
                "[64:ff9b::7f00:1]:22",
                "NAT64 form of an address in loopback",
            ),
            ("[64:ff9b:1::a00:1]:80", "local-use NAT64"),
            ("[2001::1]:80", "Teredo"),
            ("[2002:7f00:1::1]:80", "6to4"),
            ("[fd00::1]:80", "unique local"),
            ("[fe80::1]:80", "link-local"),
            ("[fec0::1]:80", "site-local"),
            ("[ff02::1]:80", "multicast"),
            ("8.8.8.8:0", "port 0"),
        ] {
            let e = check(&p, bad).unwrap_err();
            assert!(e.to_string().contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn addresses_of_this_host_are_denied_even_when_public() {
        let p = Policy::internet_only();
        let local: Vec<IpAddr> = vec!["198.51.100.7".parse().unwrap()];
        let e = p
            .check("198.51.100.7:2222".parse().unwrap(), &local)
            .unwrap_err();
        assert_eq!(e.reason, Reason::LocalAddress);
        assert_eq!(
            e.to_string(),
            "198.51.100.7:2222 is an address of this host"
        );
        let mapped = p
            .check("[::ffff:198.51.100.7]:2222".parse().unwrap(), &local)
            .unwrap_err();
        assert_eq!(mapped.reason, Reason::LocalAddress);
        assert!(p
            .check("198.51.100.8:2222".parse().unwrap(), &local)
            .is_ok());
    }

    #[test]
    fn explicit_exceptions_allow_exactly_what_they_name() {
        let p = Policy::internet_only()
            .allowing("127.0.0.1:8080".parse().unwrap())
            .allowing("10.9.0.0/16".parse().unwrap());
        assert!(check(&p, "127.0.0.1:8080").is_ok());
        assert!(check(&p, "[::ffff:127.0.0.1]:8080").is_ok());
        assert!(check(&p, "127.0.0.1:8081").is_err());
        assert!(check(&p, "127.0.0.2:8080").is_err());
        assert!(check(&p, "10.9.200.1:1").is_ok());
        assert!(check(&p, "10.10.0.1:1").is_err());
        assert_eq!(p.allowed().len(), 2);
        assert_eq!(p.allowed()[0].to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn allow_rules_and_ranges_parse_or_say_what_they_expected() {
        assert_eq!(
            "10.1.2.3".parse::<Allow>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            "[fd00::1]:443".parse::<Allow>().unwrap().to_string(),
            "[fd00::1]:443"
        );
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            let e = bad.parse::<Allow>().unwrap_err();
            assert!(e.to_string().contains("is not an address"), "{e}");
        }
        assert!(Cidr::new("1.2.3.4".parse().unwrap(), 33).is_none());
        assert!(!"10.0.0.0/8"
            .parse::<Cidr>()
            .unwrap()
            .contains("::ffff:10.0.0.1".parse().unwrap()));
    }
}
