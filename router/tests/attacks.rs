//! Attacks on the router, performed with raw TCP clients on loopback
//! against a real upstream app, each shown refused: slow and silent
//! request heads, header floods, idle connections, connection floods,
//! oversized and malformed bodies, an app that never answers, a client
//! that walks away. Deadlines are set short here; the tests assert what
//! happened (closed, status, record), never how long it took.

mod support;

use std::time::Duration;

use router::Outcome;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_header_timeout() {
    let r = start_router(|c| c.header_read_timeout = SHORT).await;
    let mut silent = TcpStream::connect(r.addr()).await.unwrap();
    let read = until_closed(&mut silent)
        .await
        .expect("closed by the router");
    assert!(read.is_empty(), "nothing is sent to a silent client");
    assert_eq!(r.router.stats().closed_slow_head, 1);
}

#[tokio::test]
async fn a_slowloris_head_is_closed_even_while_bytes_trickle_in() {
    let r = start_router(|c| c.header_read_timeout = SHORT).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut slow = TcpStream::connect(r.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n")
        .await
        .unwrap();
    // One more header byte every 50 ms: each keeps the socket busy, none
    // completes the head.
    let trickle = async {
        for _ in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if slow.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let closed = tokio::time::timeout(HANG_GUARD, trickle).await;
    assert!(closed.is_ok(), "the trickling connection was never closed");
    assert_eq!(a.seen.requests(), 0);
    assert_eq!(r.router.stats().closed_slow_head, 1);
}

#[tokio::test]
async fn a_partial_head_on_a_kept_alive_connection_is_closed() {
    // A long idle timeout: only the header timeout can close it.
    let r = start_router(|c| {
        c.header_read_timeout = SHORT;
        c.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: a.loc")
        .await
        .unwrap();
    until_closed(&mut s).await.expect("closed by the router");
    assert_eq!(a.seen.requests(), 1);
    assert_eq!(r.router.stats().closed_slow_head, 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_reaped() {
    // A long header timeout: only the idle timeout can close it.
    let r = start_router(|c| {
        c.idle_timeout = SHORT;
        c.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    until_closed(&mut s).await.expect("closed by the router");
    let stats = r.router.stats();
    assert_eq!(
        (stats.closed_idle, stats.closed_slow_head),
        (1, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_in_use_is_not_reaped() {
    let r = start_router(|c| c.idle_timeout = SHORT).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    // /slow takes 400 ms upstream — as long as the idle timeout — and the
    // client is silent meanwhile: waiting for the app is not idleness.
    for path in ["/slow", "/slow", "/"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a.localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.contains(&format!("path={path}")), "{body}");
    }
    assert_eq!(r.router.stats().closed_idle, 0);
}

#[tokio::test]
async fn a_quiet_websocket_is_closed_after_the_idle_timeout() {
    let r = start_router(|c| c.idle_timeout = SHORT).await;
    let ws = App::start("ws").await;
    r.table.try_switch("ws", &[], ws.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    until_closed(&mut s).await.expect("closed by the router");
    assert_eq!(r.router.stats().closed_idle, 1);
}

#[tokio::test]
async fn header_floods_are_refused_and_the_router_keeps_serving() {
    let r = start_router(|c| {
        c.max_header_bytes = 16 * 1024;
        c.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    // One huge header, whole.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Big: {}\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    let resp = raw(r.addr(), &huge).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    // Many small headers.
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        r.addr(),
        &format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{many}\r\n"),
    )
    .await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    // A head that never ends but keeps growing: cut off at the size limit,
    // long before its (hour-long) header timeout.
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n")
        .await;
    let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
    let fed = tokio::time::timeout(HANG_GUARD, async {
        for _ in 0..1000 {
            if s.write_all(line.as_bytes()).await.is_err() {
                return true;
            }
        }
        false
    })
    .await;
    let refused = matches!(fed, Ok(true)) || until_closed(&mut s).await.is_ok();
    assert!(refused, "an endless head was not cut off");
    assert_eq!(a.seen.requests(), 0);
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn connections_are_capped_per_client_address() {
    let r = start_router(|c| {
        c.max_connections_per_ip = 3;
        c.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", r.addr()).await);
    }
    wait_for_open(&r, 3).await;
    let mut over = connect_from("127.0.0.2", r.addr()).await;
    let answer =
        String::from_utf8_lossy(&until_closed(&mut over).await.expect("closed")).to_string();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    if !answer.is_empty() {
        assert_eq!(
            header(&answer, "x-byteport-router"),
            Some("too-many-connections")
        );
    }
    assert_eq!(r.router.stats().refused_per_client, 1);
    // Another address is still served.
    let mut other = connect_from("127.0.0.3", r.addr()).await;
    other
        .write_all(get("a.localhost", "/").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut other).await.unwrap()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // A closed connection gives its place back.
    drop(held.pop());
    wait_for_open(&r, 2).await;
    let mut again = connect_from("127.0.0.2", r.addr()).await;
    again
        .write_all(get("a.localhost", "/").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut again).await.unwrap()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn connections_are_capped_globally() {
    let r = start_router(|c| {
        c.max_connections = 4;
        c.max_connections_per_ip = 2;
        c.header_read_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut held = Vec::new();
    for from in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
        held.push(connect_from(from, r.addr()).await);
    }
    wait_for_open(&r, 4).await;
    let mut over = connect_from("127.0.0.4", r.addr()).await;
    let answer =
        String::from_utf8_lossy(&until_closed(&mut over).await.expect("closed")).to_string();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );
    let stats = r.router.stats();
    assert_eq!(
        (
            stats.refused_at_capacity,
            stats.refused_per_client,
            stats.open_connections
        ),
        (1, 0, 4),
        "{stats:?}"
    );
}

/// Waits until the router counts `n` open connections.
async fn wait_for_open(r: &Started, n: u64) {
    tokio::time::timeout(HANG_GUARD, async {
        while r.router.stats().open_connections != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {n} open: {:?}", r.router.stats()));
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_413_before_reaching_the_app() {
    let r = start_router(|c| c.max_body_bytes = 1024 * 1024).await;
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
    assert_eq!(header(&resp, "x-byteport-router"), Some("body-too-large"));
    assert_eq!(a.seen.connections(), 0, "nothing reached the app");
    let logged = r.records.wait_for(|l| l.status == 413).await;
    assert_eq!(logged.router_page, Some("body-too-large"));
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
    let r = start_router(|c| c.max_body_bytes = 4096).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut request =
        b"POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..8 {
        request.extend_from_slice(b"400\r\n");
        request.extend_from_slice(&[b'z'; 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    let _ = s.write_all(&request).await;
    let resp = String::from_utf8_lossy(&until_closed(&mut s).await.unwrap()).to_string();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(header(&resp, "x-byteport-router"), Some("body-too-large"));
    assert_eq!(a.seen.whole_bodies(), 0, "the app never got the whole body");
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
    assert_eq!(header(&resp, "x-byteport-router"), Some("bad-request"));
    let logged = r.records.wait_for(|l| l.status == 400).await;
    assert_eq!(logged.outcome, Outcome::Completed);
    assert_eq!(logged.app.as_deref(), Some("a"));
}

#[tokio::test]
async fn a_stalled_upload_is_closed_as_the_clients_fault() {
    let r = start_router(|c| {
        c.idle_timeout = SHORT;
        c.upstream_response_timeout = Duration::from_secs(3600);
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = until_closed(&mut s).await.expect("closed by the router");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    let logged = r.records.wait_for(|l| l.line.starts_with("POST /")).await;
    assert_eq!(
        (logged.status, logged.outcome),
        (499, Outcome::ClientAbandoned)
    );
    assert_eq!(r.router.stats().closed_idle, 1);
}

#[tokio::test]
async fn an_app_that_never_answers_gets_the_routers_504() {
    let r = start_router(|c| c.upstream_response_timeout = SHORT).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), &get("a.localhost", "/hang")).await;
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    assert_eq!(header(&resp, "x-byteport-router"), Some("upstream-timeout"));
    assert!(resp.contains("did not start answering"), "{resp}");
    let logged = r.records.wait_for(|l| l.status == 504).await;
    assert_eq!(logged.outcome, Outcome::UpstreamTimeout);
    // A slow answer inside the limit is not cut.
    let r = start_router(|c| c.upstream_response_timeout = Duration::from_secs(30)).await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), &get("a.localhost", "/slow")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
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
    tokio::time::timeout(HANG_GUARD, async {
        while a.seen.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    drop(s);
    let logged = r
        .records
        .wait_for(|l| l.line.starts_with("GET /hang"))
        .await;
    assert_eq!(
        (logged.status, logged.outcome),
        (499, Outcome::ClientAbandoned)
    );
    assert!(logged.line.contains("GET /hang 499 "), "{logged:?}");
    assert!(logged.line.ends_with("(client left)"), "{logged:?}");
}
