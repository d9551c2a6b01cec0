//! The admission rules, without a network: who is refused, dropped or
//! displaced, and when.

use super::*;

fn v4(last: u8) -> Source {
    Source::of(IpAddr::from([127, 0, 0, last]))
}

fn budget(start: usize, rate: u8, full: usize, per_source: usize) -> Arc<Admission> {
    Arc::new(Admission::new(
        Startups {
            start,
            rate_percent: rate,
            full,
        },
        per_source,
        2,
    ))
}

#[test]
fn sources_group_ipv6_by_64_and_unmap_ipv4() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(c));
    let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
    assert_eq!(Source::of(mapped), v4(2));
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    assert_eq!(v4(2).to_string(), "127.0.0.2");
}

#[test]
fn one_address_gets_at_most_its_share() {
    let a = budget(100, 30, 100, 3);
    let held: Vec<_> = (0..3)
        .map(|_| {
            a.admit_rolling(v4(2), CancellationToken::new(), 99)
                .unwrap()
        })
        .collect();
    assert_eq!(
        a.admit_rolling(v4(2), CancellationToken::new(), 99).err(),
        Some(Refusal::PerSource)
    );
    // Another address is not affected.
    let other = a.admit_rolling(v4(1), CancellationToken::new(), 0).unwrap();
    assert_eq!(a.stats().handshakes, 4);
    drop(held);
    drop(other);
    assert_eq!(a.stats().handshakes, 0);
    assert_eq!(a.stats().refused_per_source, 1);
}

#[test]
fn random_early_drop_spares_addresses_with_no_handshake() {
    let a = budget(2, 50, 10, 10);
    let _h: Vec<_> = (0..2)
        .map(|_| a.admit_rolling(v4(2), CancellationToken::new(), 0).unwrap())
        .collect();
    // At start the probability is the rate: a roll under it drops...
    assert_eq!(
        a.admit_rolling(v4(2), CancellationToken::new(), 49).err(),
        Some(Refusal::RandomDrop)
    );
    // ...one over it does not.
    let _k = a
        .admit_rolling(v4(2), CancellationToken::new(), 50)
        .unwrap();
    // A new address is admitted whatever the roll.
    let _n = a.admit_rolling(v4(3), CancellationToken::new(), 0).unwrap();
}

#[test]
fn a_full_pool_makes_room_for_a_new_address_only() {
    let a = budget(4, 30, 4, 4);
    let k: Vec<CancellationToken> = (0..4).map(|_| CancellationToken::new()).collect();
    let mut held = vec![];
    // Address .2 holds three, .3 holds one.
    for (i, t) in k.iter().enumerate() {
        let src = if i < 3 { v4(2) } else { v4(3) };
        held.push(a.admit_rolling(src, t.clone(), 99).unwrap());
    }
    // .3 already has one: refused, nothing displaced.
    assert_eq!(
        a.admit_rolling(v4(3), CancellationToken::new(), 99).err(),
        Some(Refusal::Full)
    );
    assert!(k.iter().all(|t| !t.is_cancelled()));
    // A fresh address displaces the oldest handshake of .2.
    let fresh = a
        .admit_rolling(v4(1), CancellationToken::new(), 99)
        .unwrap();
    assert_eq!(fresh.displaced, Some(v4(2)));
    assert!(k[0].is_cancelled() && !k[1].is_cancelled() && !k[3].is_cancelled());
    assert_eq!(a.stats().handshakes, 4);
    // Dropping the displaced ticket later does not free a second slot.
    held.remove(0);
    assert_eq!(a.stats().handshakes, 4);
    assert_eq!(a.stats().displaced, 1);
}

#[test]
fn with_one_handshake_per_address_the_oldest_makes_room() {
    let a = budget(3, 30, 3, 3);
    let k: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
    let _held: Vec<_> = k
        .iter()
        .enumerate()
        .map(|(i, t)| a.admit_rolling(v4(10 + i as u8), t.clone(), 99).unwrap())
        .collect();
    let _new = a
        .admit_rolling(v4(1), CancellationToken::new(), 99)
        .unwrap();
    assert!(k[0].is_cancelled() && !k[1].is_cancelled() && !k[2].is_cancelled());
}

#[test]
fn authenticated_connections_have_their_own_budget() {
    let a = budget(1, 30, 1, 1);
    let mut first = a
        .admit_rolling(v4(1), CancellationToken::new(), 99)
        .unwrap();
    assert!(first.ticket.authenticated());
    assert!(first.ticket.authenticated(), "idempotent");
    // Its handshake slot is free again.
    let mut second = a
        .admit_rolling(v4(1), CancellationToken::new(), 99)
        .unwrap();
    assert!(second.ticket.authenticated());
    let mut third = a
        .admit_rolling(v4(1), CancellationToken::new(), 99)
        .unwrap();
    assert!(!third.ticket.authenticated(), "budget of 2 spent");
    let s = a.stats();
    assert_eq!((s.handshakes, s.authenticated, s.over_limit), (0, 2, 1));
    drop(first);
    drop(third);
    let s = a.stats();
    assert_eq!((s.authenticated, s.over_limit), (1, 0));
}
