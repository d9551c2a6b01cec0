//! Connections that hold a slot without making progress: each is closed
//! by its phase's deadline, and a connection that is making progress (or
//! waiting for the app) is not.
//!
//! Measured before: a silent socket, a partial header and an idle
//! keep-alive connection were all still open after 300 s; an app that
//! accepted and never answered held the client for ever.

use std::time::Duration;

use router::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;
use crate::{NEVER, SHORT};

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_header_timeout() {
    let r = start_router(|c| {
        c.header_read_timeout = SHORT;
        c.idle_timeout = NEVER;
    })
    .await;
    let mut silent = TcpStream::connect(r.addr()).await.unwrap();
    let read = until_closed(&mut silent)
        .await
        .expect("closed by the router");
    assert!(read.is_empty(), "nothing is sent to a silent client");
    let stats = r.router.stats();
    assert_eq!(
        (stats.closed_slow_head, stats.open_connections),
        (1, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_slowloris_head_is_closed_even_while_bytes_trickle_in() {
    let r = start_router(|c| {
        c.header_read_timeout = SHORT;
        c.idle_timeout = NEVER;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut slow = TcpStream::connect(r.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n")
        .await
        .unwrap();
    // One more header byte every 50 ms: each keeps the socket busy, none
    // completes the head.
    let trickle = async {
        loop {
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
    let r = start_router(|c| {
        // The first, whole request must get in under it too: a margin for
        // a loaded machine.
        c.header_read_timeout = 5 * SHORT;
        c.idle_timeout = NEVER;
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
    let r = start_router(|c| {
        c.idle_timeout = SHORT;
        c.header_read_timeout = NEVER;
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
        (
            stats.closed_idle,
            stats.closed_slow_head,
            stats.open_connections
        ),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_in_use_is_not_reaped() {
    let r = start_router(|c| c.idle_timeout = SHORT).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    // /slower takes three idle timeouts upstream and the client is silent
    // meanwhile: waiting for the app is not idleness. Pipelined, so no
    // gap between requests depends on how fast this test runs.
    let paths = ["/slower", "/slower", "/"];
    let requests: String = paths
        .iter()
        .map(|p| format!("GET {p} HTTP/1.1\r\nHost: a.localhost\r\n\r\n"))
        .collect();
    s.write_all(requests.as_bytes()).await.unwrap();
    for path in paths {
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.contains(&format!("path={path} ")), "{body}");
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
    wait_for_open(&r, 0).await;
}

#[tokio::test]
async fn a_stalled_upload_is_closed_as_the_clients_fault() {
    let r = start_router(|c| {
        c.idle_timeout = SHORT;
        c.upstream_response_timeout = NEVER;
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
    assert_eq!(a.seen.whole_bodies(), 0);
}

#[tokio::test]
async fn an_app_that_never_answers_gets_the_routers_504() {
    let r = start_router(|c| {
        c.upstream_response_timeout = SHORT;
        c.idle_timeout = NEVER;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), &get("a.localhost", "/hang")).await;
    assert!(resp.starts_with("HTTP/1.1 504"), "{resp}");
    assert_router_page(&resp);
    assert!(
        resp.contains("The app <code>a</code> did not start answering"),
        "{resp}"
    );
    let logged = r.records.wait_for(|l| l.status == 504).await;
    assert_eq!(logged.outcome, Outcome::UpstreamTimeout);
    assert_eq!(logged.router_page, Some("upstream-timeout"));
    assert_eq!(logged.app.as_deref(), Some("a"));

    // A slow answer inside the limit is not cut.
    let r = start_router(|c| c.upstream_response_timeout = NEVER).await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let resp = raw(r.addr(), &get("a.localhost", "/slow")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
