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
