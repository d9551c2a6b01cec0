//! The router forwarding real requests to real upstream apps on loopback:
//! routing, headers, upgrades, drains, the upstream pool, the request
//! records and the router's own pages.

mod support;

use std::time::Duration;

use router::{Outcome, Route, RouteError};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn get_with_hop(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close, x-hop\r\nX-Hop: secret\r\n\r\n"
    )
}

#[tokio::test]
async fn routes_by_host_and_sets_forwarding_headers() {
    let r = start_router(|_| {}).await;
    let a = App::start("app-a").await;
    let b = App::start("app-b").await;
    r.table
        .try_switch("a", &["www.example.test".into()], a.addr, 1)
        .unwrap();
    r.table.try_switch("b", &[], b.addr, 1).unwrap();

    let resp = raw(r.addr(), &get_with_hop("a.localhost:8000", "/x?y=1")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("app-a path=/x?y=1"), "{resp}");
    assert!(
        resp.contains("xff=127.0.0.1 xri=127.0.0.1 xfp=http xfh=a.localhost:8000"),
        "{resp}"
    );
    assert!(
        resp.contains("hop=-"),
        "hop-by-hop headers named in Connection are dropped: {resp}"
    );
    assert!(header(&resp, "x-byteport-router").is_none(), "{resp}");
    let resp = raw(r.addr(), &get("WWW.Example.Test", "/")).await;
    assert!(resp.contains("app-a"), "{resp}");
    let resp = raw(r.addr(), &get("b.localhost", "/")).await;
    assert!(resp.contains("app-b"), "{resp}");

    let logged = r
        .records
        .wait_for(|l| l.app.as_deref() == Some("a") && l.line.starts_with("GET /x?y=1 200"))
        .await;
    assert_eq!(logged.outcome, Outcome::Completed);
    assert_eq!(logged.router_page, None);
    assert!(logged.body_bytes > 0, "{logged:?}");
    assert!(logged.line.contains(" from 127.0.0.1:"), "{logged:?}");
}

#[tokio::test]
async fn client_forwarding_headers_are_replaced_not_trusted() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(
        r.addr(),
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: bank.example\r\nForwarded: for=6.6.6.6\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.contains("xff=127.0.0.1 xri=127.0.0.1 xfp=http xfh=a.localhost fwd=-"),
        "the app sees the router's view of the client only: {resp}"
    );
    assert!(!resp.contains("6.6.6.6"), "{resp}");
    let logged = r.records.wait_for(|l| l.app.is_some()).await;
    assert_eq!(logged.client.to_string(), "127.0.0.1");
}

#[tokio::test]
async fn a_trusted_proxy_may_say_who_the_client_is() {
    let r = start_router(|c| {
        c.trusted_proxies = router::parse_trusted_proxies("127.0.0.2").unwrap();
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let request = "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Forwarded-For: 6.6.6.6\r\n\
                   X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n";

    let mut proxy = connect_from("127.0.0.2", r.addr()).await;
    proxy.write_all(request.as_bytes()).await.unwrap();
    let resp = String::from_utf8(until_closed(&mut proxy).await.unwrap()).unwrap();
    assert!(
        resp.contains("xff=6.6.6.6, 127.0.0.2 xri=6.6.6.6 xfp=https"),
        "{resp}"
    );
    let logged = r.records.wait_for(|l| l.app.is_some()).await;
    assert_eq!(logged.client.to_string(), "6.6.6.6");
    assert!(
        logged.line.contains("from 6.6.6.6 via 127.0.0.2:"),
        "{logged:?}"
    );

    // The same headers from an address that is not the proxy are dropped.
    let mut other = connect_from("127.0.0.3", r.addr()).await;
    other.write_all(request.as_bytes()).await.unwrap();
    let resp = String::from_utf8(until_closed(&mut other).await.unwrap()).unwrap();
    assert!(
        resp.contains("xff=127.0.0.3 xri=127.0.0.3 xfp=http"),
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
        resp.contains("app-a path=/x?q=1 host=a.localhost:8000"),
        "RFC 9112 §3.2.2: the target's authority is the host, also for the app: {resp}"
    );
    // Two Host headers are ambiguous: refused.
    let resp = raw(
        r.addr(),
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(header(&resp, "x-byteport-router"), Some("bad-request"));
}

#[tokio::test]
async fn unknown_host_is_404_and_down_app_is_502_each_marked() {
    let r = start_router(|_| {}).await;
    let resp = raw(r.addr(), &get("nope.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert_eq!(header(&resp, "x-byteport-router"), Some("unknown-host"));
    assert!(
        resp.contains("No BytePort app answers to <code>nope.localhost</code>"),
        "{resp}"
    );

    r.table.mark_down("sleepy", &[], "it is starting");
    let resp = raw(r.addr(), &get("sleepy.localhost", "/")).await;
    assert!(
        resp.starts_with("HTTP/1.1 502")
            && resp.contains("not answering right now: it is starting"),
        "{resp}"
    );
    assert_eq!(header(&resp, "x-byteport-router"), Some("app-down"));

    // Routed, but the VM's port refuses connections.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    r.table.try_switch("crashed", &[], dead, 3).unwrap();
    let resp = raw(r.addr(), &get("crashed.localhost", "/")).await;
    assert!(
        resp.starts_with("HTTP/1.1 502") && resp.contains("did not answer"),
        "{resp}"
    );
    assert_eq!(header(&resp, "x-byteport-router"), Some("upstream-error"));
    let logged = r
        .records
        .wait_for(|l| l.app.as_deref() == Some("crashed"))
        .await;
    assert_eq!(
        (logged.status, logged.outcome),
        (502, Outcome::UpstreamError)
    );
}

#[tokio::test]
async fn an_app_cannot_pass_for_the_router() {
    let r = start_router(|_| {}).await;
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
    }
    // The lenient switch (the platform's current call) and evil's own
    // unmapping leave the victim's routes alone.
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
}

#[tokio::test]
async fn malformed_requests_get_errors_not_hangs() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "no Host header: {resp}");
    let resp = raw(r.addr(), "BLAH\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 400") || resp.is_empty(),
        "{resp}"
    );
    // The router still serves afterwards.
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn upgrades_pass_through() {
    let r = start_router(|_| {}).await;
    let ws = App::start("ws").await;
    r.table.try_switch("ws", &[], ws.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 9];
    tokio::time::timeout(HANG_GUARD, s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"echo:ping");
}

#[tokio::test]
async fn switch_drains_the_old_upstream_without_failing_requests() {
    let r = start_router(|_| {}).await;
    let old = App::start("old").await;
    let new = App::start("new").await;
    r.table.try_switch("app", &[], old.addr, 1).unwrap();
    let addr = r.addr();
    let slow = tokio::spawn(async move { raw(addr, &get("app.localhost", "/slow")).await });
    tokio::time::timeout(HANG_GUARD, async {
        while old.seen.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let previous = r
        .table
        .try_switch("app", &[], new.addr, 2)
        .unwrap()
        .unwrap();
    assert_eq!(
        previous.inflight(),
        1,
        "the slow request is still in flight on the old VM"
    );
    let resp = raw(addr, &get("app.localhost", "/")).await;
    assert!(
        resp.contains("new "),
        "new requests go to the new upstream: {resp}"
    );
    assert_eq!(previous.drain(HANG_GUARD).await, 0);
    let resp = slow.await.unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("old path=/slow"),
        "{resp}"
    );
    assert!(matches!(r.table.lookup("app.localhost"), Some(Route::Up(u)) if u.deploy == 2));
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let r = start_router(|_| {}).await;
    let app = App::start("k").await;
    r.table.try_switch("k", &[], app.addr, 1).unwrap();
    // 30 requests, one new client connection each: the router reuses its
    // upstream connection once each response has been read.
    for i in 0..30 {
        let resp = raw(r.addr(), &get("k.localhost", &format!("/{i}"))).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    assert_eq!(app.seen.connections(), 1, "one upstream connection");

    // A client that leaves in the middle of a large body: that upstream
    // connection is not reused half-read, and later requests still work.
    {
        let mut s = TcpStream::connect(r.addr()).await.unwrap();
        s.write_all(get("k.localhost", "/big").as_bytes())
            .await
            .unwrap();
        let mut first = [0u8; 1024];
        let _ = s.read(&mut first).await.unwrap();
    }
    let abandoned = r.records.wait_for(|l| l.line.starts_with("GET /big")).await;
    assert_eq!(
        (abandoned.status, abandoned.outcome),
        (200, Outcome::ClientAbandoned),
        "a client leaving mid-body is logged as such"
    );
    for _ in 0..5 {
        let resp = raw(r.addr(), &get("k.localhost", "/")).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    let n = app.seen.connections();
    assert!(
        (2..=3).contains(&n),
        "the half-read connection was replaced, not reused: {n}"
    );
}

#[tokio::test]
async fn upstreams_that_close_every_connection_still_work() {
    let r = start_router(|_| {}).await;
    let app = App::start_with("c", true).await;
    r.table.try_switch("c", &[], app.addr, 1).unwrap();
    for i in 0..10 {
        let resp = raw(r.addr(), &get("c.localhost", &format!("/{i}"))).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    assert_eq!(app.seen.connections(), 10);
}

#[tokio::test]
async fn the_old_line_callback_still_gets_lines() {
    let table = router::RouteTable::new("localhost");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let sink = lines.clone();
    let log: router::RequestLog = std::sync::Arc::new(move |app: &str, line: &str| {
        sink.lock().unwrap().push((app.into(), line.into()))
    });
    let router = router::Router::bind("127.0.0.1:0".parse().unwrap(), table.clone(), log)
        .await
        .unwrap();
    let a = App::start("a").await;
    table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(router.local_addr, &get("a.localhost", "/hi")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    raw(router.local_addr, &get("nobody.localhost", "/")).await;
    tokio::time::timeout(HANG_GUARD, async {
        while lines.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "unknown hosts have no app log: {lines:?}");
    assert_eq!(lines[0].0, "a");
    assert!(lines[0].1.starts_with("GET /hi 200 "), "{lines:?}");
}
