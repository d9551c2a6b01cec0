//! Lies a client or an app tells: who the client is (forwarding headers),
//! which host a request is for, which page is the router's, which names
//! an app serves.
//!
//! Measured before: `X-Real-IP: 6.6.6.6` reached the app unchanged and
//! `X-Forwarded-For: 6.6.6.6` arrived as `6.6.6.6, 127.0.0.1`; an
//! absolute-form target lost to the Host header; a later app could take
//! another's domain and unmapping it removed the victim's route.

use router::RouteError;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// Every forwarding header a client can forge, each claiming 6.6.6.6 or
/// another origin than the real one.
const FORGED: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
                      X-Forwarded-Proto: https\r\nX-Forwarded-Host: bank.example\r\n\
                      Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-Port: 443\r\n";

fn forged_get(host: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\n{FORGED}Connection: close\r\n\r\n")
}

#[tokio::test]
async fn forged_forwarding_headers_are_replaced_not_appended_to() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = connect_from("127.0.0.5", r.addr()).await;
    s.write_all(forged_get("a.localhost").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut s).await.unwrap()).unwrap();
    assert!(
        resp.contains("xff=127.0.0.5 xri=127.0.0.5 xfp=http xfh=a.localhost fwd=-"),
        "the app sees the router's view of the client only: {resp}"
    );
    assert!(!resp.contains("6.6.6.6"), "{resp}");
    assert!(!resp.contains("bank.example"), "{resp}");
    let logged = r.records.wait_for(|l| l.app.is_some()).await;
    assert_eq!(logged.client.to_string(), "127.0.0.5");
}

#[tokio::test]
async fn a_trusted_proxy_may_say_who_the_client_is_and_nobody_else() {
    let r = start_router(|c| {
        c.trusted_proxies = router::parse_trusted_proxies("127.0.0.2").unwrap();
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();

    let mut proxy = connect_from("127.0.0.2", r.addr()).await;
    proxy
        .write_all(forged_get("a.localhost").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut proxy).await.unwrap()).unwrap();
    assert!(
        resp.contains(
            "xff=6.6.6.6, 127.0.0.2 xri=6.6.6.6 xfp=https xfh=bank.example \
             fwd=for=6.6.6.6;proto=https"
        ),
        "{resp}"
    );
    let logged = r.records.wait_for(|l| l.app.is_some()).await;
    assert_eq!(logged.client.to_string(), "6.6.6.6");
    assert!(
        logged.line.contains("from 6.6.6.6 via 127.0.0.2:"),
        "{logged:?}"
    );

    // The same headers from an address that is not the proxy are replaced.
    let mut other = connect_from("127.0.0.3", r.addr()).await;
    other
        .write_all(forged_get("a.localhost").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut other).await.unwrap()).unwrap();
    assert!(
        resp.contains("xff=127.0.0.3 xri=127.0.0.3 xfp=http xfh=a.localhost fwd=-"),
        "{resp}"
    );
}

#[tokio::test]
async fn an_absolute_form_target_wins_over_the_host_header() {
    let r = start_router(|_| {}).await;
    let a = App::start("app-a").await;
    let b = App::start("app-b").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    r.table.try_switch("b", &[], b.addr, 1).unwrap();
    let resp = raw(
        r.addr(),
        "GET http://a.localhost:8000/x?q=1 HTTP/1.1\r\nHost: b.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("app-a path=/x?q=1 host=a.localhost:8000 "),
        "RFC 9112 §3.2.2: the target's authority is the host, also for the app: {resp}"
    );
    assert_eq!(b.seen.requests(), 0);
    // Two Host headers are ambiguous: refused.
    let resp = raw(
        r.addr(),
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_router_page(&resp);
}

#[tokio::test]
async fn the_routers_pages_are_marked_and_an_app_cannot_pass_for_one() {
    let r = start_router(|_| {}).await;
    // 404: no app has the name.
    let resp = raw(r.addr(), &get("nope.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert_router_page(&resp);
    assert!(
        resp.contains("No BytePort app answers to <code>nope.localhost</code>"),
        "{resp}"
    );
    // 502: the app exists, nothing serves it.
    r.table.mark_down("sleepy", &[], "it is starting");
    let resp = raw(r.addr(), &get("sleepy.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(
        resp.contains("not answering right now: it is starting"),
        "{resp}"
    );
    assert_router_page(&resp);
    // 502: routed, but the VM's port refuses connections.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    r.table.try_switch("crashed", &[], dead, 3).unwrap();
    let resp = raw(r.addr(), &get("crashed.localhost", "/")).await;
    assert!(
        resp.starts_with("HTTP/1.1 502") && resp.contains("did not answer"),
        "{resp}"
    );
    assert_router_page(&resp);
    let logged = r
        .records
        .wait_for(|l| l.app.as_deref() == Some("crashed"))
        .await;
    assert_eq!(logged.router_page, Some("upstream-error"));

    // An app's own header of that name is removed: only the router's pages
    // carry it.
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), &get("a.localhost", "/spoof")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(header(&resp, "x-byteport-router"), None, "{resp}");
}

#[tokio::test]
async fn a_domain_hijack_is_refused_by_the_route_table() {
    let r = start_router(|_| {}).await;
    let victim = App::start("victim").await;
    let evil = App::start("evil").await;
    r.table
        .try_switch("victim", &["shop.test".into()], victim.addr, 1)
        .unwrap();
    for stolen in ["shop.test", "victim.localhost", "login.victim.localhost"] {
        let e = r
            .table
            .try_switch("evil", &[stolen.into()], evil.addr, 1)
            .unwrap_err();
        assert!(
            matches!(
                e,
                RouteError::DomainTaken { .. } | RouteError::OtherAppsName { .. }
            ),
            "{stolen}: {e}"
        );
        assert!(e.to_string().contains("victim"), "names the owner: {e}");
    }
    // The lenient switch (the platform's call) and evil's own unmapping
    // leave the victim's routes alone.
    r.table.switch(
        "evil",
        &["shop.test".into(), "victim.localhost".into()],
        evil.addr,
        1,
    );
    r.table
        .mark_down("evil", &["shop.test".into()], "it is starting");
    r.table.forget("evil");
    for host in ["shop.test", "victim.localhost"] {
        let resp = raw(r.addr(), &get(host, "/")).await;
        assert!(resp.contains("victim path=/"), "{host}: {resp}");
    }
    assert_eq!(evil.seen.requests(), 0);
    // Once the victim lets go, the name is free.
    r.table.try_switch("victim", &[], victim.addr, 2).unwrap();
    r.table
        .try_switch("evil", &["shop.test".into()], evil.addr, 2)
        .expect("a released domain can be claimed");
}
