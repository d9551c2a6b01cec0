//! Request bodies: over the limit, malformed, or abandoned halfway.
//!
//! Measured before: a 50 MB body was forwarded with no limit; a malformed
//! chunked body was answered 502 "app not running" (blaming the app); a
//! request the client abandoned was never logged.

use std::time::Duration;

use router::Outcome;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

const LIMIT: u64 = 1024 * 1024;

#[tokio::test]
async fn an_announced_body_over_the_limit_is_413_and_never_reaches_the_app() {
    let r = start_router(|c| c.max_body_bytes = LIMIT).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 52428800\r\n\r\n")
        .await
        .unwrap();
    // Some of the 50 MB; the router answers without waiting for the rest.
    let _ = s.write_all(&vec![b'x'; 64 * 1024]).await;
    let resp = String::from_utf8_lossy(&until_closed(&mut s).await.unwrap()).to_string();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_router_page(&resp);
    assert!(resp.contains("at most 1048576 bytes (1.0 MiB)"), "{resp}");
    let logged = r.records.wait_for(|l| l.status == 413).await;
    assert_eq!(logged.router_page, Some("body-too-large"));
    assert_eq!(logged.app.as_deref(), Some("a"));
    assert_eq!(
        (a.seen.connections(), a.seen.bytes_in()),
        (0, 0),
        "not one byte reached the app"
    );

    // Under the limit it goes through whole.
    let body = "y".repeat(1000);
    let resp = raw(
        r.addr(),
        &format!(
            "POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(resp.contains("body=1000"), "{resp}");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_off_with_413() {
    const SMALL: u64 = 4096;
    let r = start_router(|c| c.max_body_bytes = SMALL).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut request =
        b"POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..64 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b'z'; 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    let _ = s.write_all(&request).await;
    let resp = String::from_utf8_lossy(&until_closed(&mut s).await.unwrap()).to_string();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_router_page(&resp);
    // Its length was not announced, so the start of it was on its way to
    // the app when the limit was crossed; the app never got a whole
    // request, and never more than the limit (plus the head and chunk
    // framing of what it got).
    wait_until("the app's connection ended", || {
        a.seen.ended() == a.seen.connections()
    })
    .await;
    assert_eq!(a.seen.whole_bodies(), 0, "the app never got the whole body");
    let got = a.seen.bytes_in() as u64;
    assert!(got < SMALL + 1024, "the app read {got} bytes");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_400_not_the_apps_502() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(
        r.addr(),
        "POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_router_page(&resp);
    assert!(resp.contains("request body is malformed"), "{resp}");
    let logged = r.records.wait_for(|l| l.status == 400).await;
    assert_eq!(logged.outcome, Outcome::Completed);
    assert_eq!(logged.router_page, Some("bad-request"));
    assert_eq!(logged.app.as_deref(), Some("a"));
    assert_eq!(a.seen.whole_bodies(), 0);
}

#[tokio::test]
async fn a_request_the_client_abandons_is_logged_as_499() {
    let r = start_router(|_| {}).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await
        .unwrap();
    wait_until("the app got the request", || a.seen.requests() == 1).await;
    drop(s);
    let logged = r
        .records
        .wait_for(|l| l.line.starts_with("GET /hang"))
        .await;
    assert_eq!(
        (logged.status, logged.outcome),
        (499, Outcome::ClientAbandoned)
    );
    assert_eq!(logged.app.as_deref(), Some("a"));
    assert!(logged.line.contains("GET /hang 499 "), "{logged:?}");
    assert!(logged.line.ends_with("(client left)"), "{logged:?}");
    // Gone from the in-flight count too (a drain does not wait for it).
    let up = match r.table.lookup("a.localhost") {
        Some(router::Route::Up(set)) => set.upstreams()[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(up.drain(Duration::from_secs(5)).await, 0);
}
