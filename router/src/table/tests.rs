use std::time::Duration;

use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn up_addr(t: &RouteTable, host: &str) -> Option<SocketAddr> {
    match t.lookup(host) {
        Some(Route::Up(u)) => Some(u.upstreams()[0].addr),
        _ => None,
    }
}

#[test]
fn switch_returns_the_old_upstream_and_moves_domains() {
    let t = RouteTable::new("localhost");
    let (a1, a2) = (addr(1001), addr(1002));
    assert!(t
        .try_switch("hello", &["Hello.Example.com".into()], a1, 1)
        .unwrap()
        .is_none());
    assert_eq!(up_addr(&t, "hello.localhost:8000"), Some(a1));
    assert_eq!(up_addr(&t, "hello.example.com"), Some(a1));
    let old = t.try_switch("hello", &[], a2, 2).unwrap().unwrap();
    assert_eq!(old.deploy, 1);
    assert_eq!(up_addr(&t, "hello.localhost"), Some(a2));
    assert!(
        t.lookup("hello.example.com").is_none(),
        "dropped domain no longer routes"
    );
    assert_eq!(
        t.mark_down("hello", &[], "it is starting").unwrap().deploy,
        2
    );
    assert!(matches!(
        t.lookup("hello.localhost"),
        Some(Route::Down { .. })
    ));
    assert!(t.forget("hello").is_none());
    assert!(t.lookup("hello.localhost").is_none());
    assert_eq!(
        t.app_of_default_host("hello.localhost:8000").as_deref(),
        Some("hello")
    );
    assert!(t.app_of_default_host("a.b.localhost").is_none());
}

#[test]
fn a_domain_held_by_one_app_cannot_be_taken_by_another() {
    let t = RouteTable::new("localhost");
    t.try_switch("victim", &["shop.example".into()], addr(1), 1)
        .unwrap();
    let refused = t
        .try_switch("evil", &["SHOP.example.:80".into()], addr(2), 1)
        .unwrap_err();
    assert_eq!(
        refused,
        RouteError::DomainTaken {
            domain: "shop.example".into(),
            owner: "victim".into()
        }
    );
    assert!(refused
        .to_string()
        .contains("already served by the app victim"));
    // Refused means nothing changed, not even evil's own host.
    assert!(t.lookup("evil.localhost").is_none());
    assert_eq!(up_addr(&t, "shop.example"), Some(addr(1)));
    assert_eq!(
        t.check_domains("evil", &["shop.example".into()]),
        Err(refused)
    );

    // Another app's default name, or a name under it, is never claimable,
    // whether or not that app exists yet.
    for stolen in [
        "victim.localhost",
        "login.victim.localhost",
        "later.localhost",
    ] {
        let e = t
            .try_switch("evil", &[stolen.into()], addr(2), 1)
            .unwrap_err();
        assert!(
            matches!(e, RouteError::OtherAppsName { .. }),
            "{stolen}: {e}"
        );
    }
    assert!(matches!(
        t.try_switch("evil", &["localhost".into()], addr(2), 1),
        Err(RouteError::BaseName { .. })
    ));

    // The lenient switch maps what evil may have and leaves the rest.
    t.switch(
        "evil",
        &["shop.example".into(), "evil.example".into()],
        addr(2),
        1,
    );
    assert_eq!(up_addr(&t, "evil.localhost"), Some(addr(2)));
    assert_eq!(up_addr(&t, "evil.example"), Some(addr(2)));
    assert_eq!(up_addr(&t, "shop.example"), Some(addr(1)));
    assert_eq!(t.owner("shop.example").as_deref(), Some("victim"));
}

#[test]
fn unmapping_one_app_never_removes_anothers_hosts() {
    let t = RouteTable::new("localhost");
    t.try_switch("victim", &["shop.example".into()], addr(1), 1)
        .unwrap();
    // evil asks for the victim's domain on every path that maps hosts.
    t.switch("evil", &["shop.example".into()], addr(2), 1);
    t.mark_down("evil", &["shop.example".into()], "it is starting");
    assert_eq!(up_addr(&t, "shop.example"), Some(addr(1)));
    t.forget("evil");
    assert_eq!(up_addr(&t, "shop.example"), Some(addr(1)));
    assert_eq!(up_addr(&t, "victim.localhost"), Some(addr(1)));

    // The victim keeps its domain while it is down, and lets go of it only
    // when it drops it or is forgotten.
    t.mark_down("victim", &[], "it is restarting after a crash");
    assert!(matches!(t.lookup("shop.example"), Some(Route::Down { app, .. }) if app == "victim"));
    assert!(t
        .try_switch("evil", &["shop.example".into()], addr(2), 2)
        .is_err());
    t.try_switch("victim", &[], addr(1), 2).unwrap();
    assert!(t.lookup("shop.example").is_none());
    t.try_switch("evil", &["shop.example".into()], addr(2), 2)
        .expect("a released domain is free");
    assert_eq!(up_addr(&t, "shop.example"), Some(addr(2)));
}

#[tokio::test]
async fn drain_waits_for_inflight_requests() {
    let t = RouteTable::new("localhost");
    t.try_switch("a", &[], addr(1), 1).unwrap();
    let Some(Route::Up(set)) = t.lookup("a.localhost") else {
        panic!("a is up")
    };
    let up = set.upstreams()[0].clone();
    let guard = InflightGuard::new(up.clone());
    assert_eq!(up.drain(Duration::from_millis(20)).await, 1);
    let up2 = up.clone();
    let waiter = tokio::spawn(async move { up2.drain(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(guard);
    assert_eq!(waiter.await.unwrap(), 0);
}

fn picks(set: &Instances, n: usize) -> Vec<u16> {
    (0..n).map(|_| set.pick().addr.port()).collect()
}

fn instances_of(t: &RouteTable, host: &str) -> Arc<Instances> {
    match t.lookup(host) {
        Some(Route::Up(set)) => set,
        other => panic!("{host} is not up: {other:?}"),
    }
}

#[test]
fn empty_and_repeating_instance_lists_are_refused_with_nothing_changed() {
    let t = RouteTable::new("localhost");
    t.try_switch("a", &[], addr(1), 1).unwrap();
    let e = t.switch_instances("a", &[], &[], 2).unwrap_err();
    assert_eq!(e, RouteError::NoInstances { app: "a".into() });
    assert!(e.to_string().contains("empty list of instances"), "{e}");
    let e = t
        .try_switch_instances("a", &[], &[addr(2), addr(3), addr(2)], 2)
        .unwrap_err();
    assert_eq!(
        e,
        RouteError::DuplicateInstance {
            app: "a".into(),
            addr: addr(2)
        }
    );
    assert!(e.to_string().contains("127.0.0.1:2"), "{e}");
    assert_eq!(up_addr(&t, "a.localhost"), Some(addr(1)));
    assert_eq!(t.deploy_of("a"), Some(1));
    // add_instance refuses an address the app already has.
    assert!(matches!(
        t.add_instance("a", addr(1), 2),
        Err(RouteError::DuplicateInstance { .. })
    ));
    assert_eq!(t.instances("a").len(), 1);
}

#[test]
fn idle_instances_take_turns_and_busy_ones_are_passed_over() {
    let t = RouteTable::new("localhost");
    let old = t
        .switch_instances("a", &[], &[addr(1), addr(2), addr(3)], 1)
        .unwrap();
    assert!(old.is_empty());
    let set = instances_of(&t, "a.localhost");
    let mut seen = picks(&set, 30);
    seen.sort();
    assert_eq!(seen, [[1; 10], [2; 10], [3; 10]].concat(), "round-robin");

    // Least outstanding requests: with 1 busy, requests go to 2 and 3;
    // with 2 busy too, all go to 3.
    let busy1 = InflightGuard::new(set.upstreams()[0].clone());
    assert!(!picks(&set, 10).contains(&1));
    let busy2 = InflightGuard::new(set.upstreams()[1].clone());
    assert_eq!(picks(&set, 5), [3; 5]);
    drop((busy1, busy2));
    let mut seen = picks(&set, 3);
    seen.sort();
    assert_eq!(seen, [1, 2, 3], "turns again once idle");
}

#[test]
fn unhealthy_instances_get_no_requests_unless_all_are() {
    let t = RouteTable::new("localhost");
    t.switch_instances("a", &[], &[addr(1), addr(2)], 1)
        .unwrap();
    let set = instances_of(&t, "a.localhost");
    // Passive: a refused connect passes the instance over.
    set.upstreams()[0].mark_failed();
    assert!(!set.upstreams()[0].is_healthy());
    assert_eq!(picks(&set, 6), [2; 6]);
    set.upstreams()[0].answered();
    assert!(picks(&set, 6).contains(&1), "healthy again once it answers");

    // Active: the platform's check.
    assert!(t.set_healthy("a", addr(2), false));
    assert_eq!(picks(&set, 6), [1; 6]);
    assert!(!t.set_healthy("a", addr(9), false), "no such instance");
    assert!(!t.set_healthy("nobody", addr(1), false), "no such app");
    // Every instance unhealthy: each is still tried, in turns.
    assert!(t.set_healthy("a", addr(1), false));
    let mut all = picks(&set, 4);
    all.sort();
    assert_eq!(all, [1, 1, 2, 2]);
    assert!(t.set_healthy("a", addr(2), true));
    assert_eq!(picks(&set, 4), [2; 4]);
    // A retry never goes back to an instance already tried.
    assert_eq!(set.pick_except(&[addr(2)]).unwrap().addr, addr(1));
    assert!(set.pick_except(&[addr(1), addr(2)]).is_none());
}

#[test]
fn instances_are_added_and_removed_one_at_a_time() {
    let t = RouteTable::new("localhost");
    t.try_switch("a", &["a.example".into()], addr(1), 1)
        .unwrap();
    // A rolling redeploy: add one of deploy 2, remove one of deploy 1.
    let added = t.add_instance("a", addr(2), 2).unwrap();
    assert_eq!((added.addr, added.deploy), (addr(2), 2));
    assert_eq!(t.deploy_of("a"), Some(2), "the newest deploy");
    let both = instances_of(&t, "a.example");
    assert_eq!(both.upstreams().len(), 2, "every host of the app sees both");
    let old = t.instances("a")[0].clone();
    let guard = InflightGuard::new(old.clone());
    let removed = t.remove_instance("a", addr(1)).expect("it was there");
    assert!(
        Arc::ptr_eq(&removed, &old),
        "the same upstream, in flight count and all"
    );
    assert_eq!(removed.inflight(), 1);
    drop(guard);
    assert_eq!(removed.inflight(), 0);
    assert_eq!(up_addr(&t, "a.example"), Some(addr(2)));
    let set = instances_of(&t, "a.localhost");
    assert_eq!(picks(&set, 3), [2; 3]);

    // Unknown instance, unknown app: nothing happens.
    assert!(t.remove_instance("a", addr(7)).is_none());
    assert!(t.remove_instance("nobody", addr(2)).is_none());
    assert_eq!(t.instances("a").len(), 1);

    // The last one out leaves the app down, holding its hosts.
    t.remove_instance("a", addr(2)).unwrap();
    assert!(matches!(t.lookup("a.example"), Some(Route::Down { .. })));
    assert!(t.instances("a").is_empty());
    // And adding one brings it back up on them.
    t.add_instance("a", addr(3), 3).unwrap();
    assert_eq!(up_addr(&t, "a.example"), Some(addr(3)));
    // Another app's instance list is its own.
    t.add_instance("b", addr(3), 1).unwrap();
    assert_eq!(up_addr(&t, "b.localhost"), Some(addr(3)));
    assert_eq!(t.instances("a").len(), 1);
}

#[test]
fn deploying_keeps_the_hosts_and_hands_back_every_instance() {
    let t = RouteTable::new("localhost");
    t.try_switch_instances("a", &["a.example".into()], &[addr(1), addr(2)], 1)
        .unwrap();
    let old = t.mark_deploying("a", &[], Duration::from_secs(5));
    let mut ports: Vec<_> = old.iter().map(|u| u.addr.port()).collect();
    ports.sort();
    assert_eq!(ports, [1, 2]);
    for host in ["a.localhost", "a.example"] {
        assert!(
            matches!(t.lookup(host), Some(Route::Deploying { ref app, retry_after }) if app == "a" && retry_after == Duration::from_secs(5)),
            "{host}"
        );
    }
    assert_eq!(t.deploy_of("a"), None);
    assert!(t.instances("a").is_empty());
    // Nobody takes the domain meanwhile.
    assert!(t
        .try_switch("evil", &["a.example".into()], addr(9), 1)
        .is_err());
    t.try_switch_instances("a", &["a.example".into()], &[addr(3)], 2)
        .unwrap();
    assert_eq!(up_addr(&t, "a.example"), Some(addr(3)));

    // Down and forgotten hand back every instance too.
    t.add_instance("a", addr(4), 2).unwrap();
    assert_eq!(t.mark_down_all("a", &[], "it was stopped").len(), 2);
    t.switch_instances("a", &[], &[addr(5), addr(6)], 3)
        .unwrap();
    assert_eq!(t.forget_all("a").len(), 2);
    assert!(t.lookup("a.localhost").is_none());
}
