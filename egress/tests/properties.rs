//! Properties of the policy and the host parser over generated input:
//! every spelling of an IPv4 address means that address, every IPv6 form
//! of an IPv4 address gets the IPv4 address's verdict, every address of a
//! denied range is denied, and no input makes the parser panic.

use egress::{parse_host, Allow, Host, Policy, Reason};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn v4_in(base: [u8; 4], prefix: u32) -> impl Strategy<Value = Ipv4Addr> {
    let base = u32::from(Ipv4Addr::from(base));
    let host_bits = 32 - prefix;
    (0u64..(1u64 << host_bits)).prop_map(move |h| Ipv4Addr::from(base | h as u32))
}

/// Addresses from every denied IPv4 range.
fn denied_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        v4_in([0, 0, 0, 0], 8),
        v4_in([10, 0, 0, 0], 8),
        v4_in([100, 64, 0, 0], 10),
        v4_in([127, 0, 0, 0], 8),
        v4_in([169, 254, 0, 0], 16),
        v4_in([172, 16, 0, 0], 12),
        v4_in([192, 0, 0, 0], 24),
        v4_in([192, 168, 0, 0], 16),
        v4_in([198, 18, 0, 0], 15),
        v4_in([224, 0, 0, 0], 4),
        v4_in([240, 0, 0, 0], 4),
    ]
}

fn at(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, 443)
}

proptest! {
    #[test]
    fn every_address_of_a_denied_ipv4_range_is_denied_in_every_form(v4 in denied_v4()) {
        let p = Policy::internet_only();
        let plain = p.check(at(IpAddr::V4(v4)), &[]).unwrap_err();
        prop_assert!(matches!(plain.reason, Reason::Special(_)));
        let mapped = p.check(at(IpAddr::V6(v4.to_ipv6_mapped())), &[]).unwrap_err();
        prop_assert_eq!(mapped.reason, plain.reason);
        let nat64 = Ipv6Addr::from((0x64_ff9b_u128 << 96) | u128::from(u32::from(v4)));
        let via_nat64 = p.check(at(IpAddr::V6(nat64)), &[]).unwrap_err();
        prop_assert!(matches!(via_nat64.reason, Reason::Nat64(_)));
        // The IPv4-compatible form is denied for what it is.
        prop_assert!(p.check(at(IpAddr::V6(v4.to_ipv6_compatible())), &[]).is_err());
    }

    #[test]
    fn an_ipv4_address_and_its_mapped_form_always_get_the_same_verdict(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let p = Policy::internet_only();
        let a = p.check(at(IpAddr::V4(v4)), &[]).map_err(|d| d.reason);
        let b = p.check(at(IpAddr::V6(v4.to_ipv6_mapped())), &[]).map_err(|d| d.reason);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn every_spelling_of_an_ipv4_address_parses_to_it(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let [a, b, c, d] = v4.octets();
        let want = Ok(Host::Ip(IpAddr::V4(v4)));
        for spelling in [
            v4.to_string(),
            bits.to_string(),
            format!("0x{bits:x}"),
            format!("0X{bits:X}"),
            format!("0{bits:o}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("{a}.{}", bits & 0xff_ffff),
            format!("{a}.{b}.{}", bits & 0xffff),
            format!("{v4}."),
        ] {
            prop_assert_eq!(parse_host(&spelling), want.clone(), "{}", spelling);
        }
    }

    #[test]
    fn unique_local_and_link_local_ipv6_are_denied(low in any::<u128>(), ula in any::<bool>()) {
        let (prefix, bits) = if ula { (0xfc00u128 << 112, 7) } else { (0xfe80u128 << 112, 10) };
        let ip = Ipv6Addr::from(prefix | (low >> bits));
        prop_assert!(Policy::internet_only().check(at(IpAddr::V6(ip)), &[]).is_err(), "{}", ip);
    }

    #[test]
    fn the_host_parser_never_panics_and_names_are_clean(s in "\\PC{0,80}") {
        if let Ok(Host::Name(n)) = parse_host(&s) {
            prop_assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            prop_assert!(!n.ends_with('.') && n.len() <= 253);
            prop_assert_eq!(n.to_ascii_lowercase(), n.clone());
        }
    }

    #[test]
    fn allow_rules_print_and_parse_back(bits in any::<u32>(), port in 1u16.., prefix in 0u8..=32) {
        let addr = Allow::Addr(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(bits)), port));
        prop_assert_eq!(addr.to_string().parse::<Allow>().unwrap(), addr);
        let range: Allow = format!("{}/{prefix}", Ipv4Addr::from(bits)).parse().unwrap();
        prop_assert_eq!(range.to_string().parse::<Allow>().unwrap(), range);
    }
}
