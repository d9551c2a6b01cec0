//! The router forwarding real requests to real upstream apps on loopback:
//! routing, headers, upgrades, drains, the upstream pool, the request
//! records and the router's own pages.

mod support;

use std::time::Duration;

use router::{Outcome, Route};
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
async fn malformed_requests_get_errors_not_hangs() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), "GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "no Host header: {resp}");
    assert_router_page(&resp);
    assert!(resp.contains("no Host header"), "{resp}");
    let resp = raw(r.addr(), "BLAH\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 400") || resp.is_empty(),
        "{resp}"
    );
    // Not a forward proxy: CONNECT reaches no app, whatever it names.
    let resp = raw(
        r.addr(),
        "CONNECT a.localhost:80 HTTP/1.1\r\nHost: a.localhost:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    assert_router_page(&resp);
    assert_eq!(a.seen.requests(), 0);
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
    assert!(matches!(r.table.lookup("app.localhost"), Some(Route::Up(u)) if u.deploy() == 2));
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
