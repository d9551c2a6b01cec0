//! Floods: request heads too large or with too many headers, and more
//! connections than one client (or everyone together) may hold. Each is
//! refused while everyone else is still served.
//!
//! Measured before: 2 000 open connections cost 36 MB and only the
//! open-file limit stopped more; a head could grow to hyper's 400 KB
//! buffer.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;
use crate::NEVER;

const HEAD_LIMIT: usize = 16 * 1024;

#[tokio::test]
async fn too_many_headers_are_refused_with_431() {
    let r = start_router(|c| c.header_read_timeout = NEVER).await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        r.addr(),
        &format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{many}\r\n"),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert_eq!(a.seen.bytes_in(), 0, "nothing reached the app");
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "still serving: {resp}");
}

#[tokio::test]
async fn a_head_over_the_size_limit_is_refused_with_431_long_before_its_deadline() {
    let r = start_router(|c| {
        c.max_header_bytes = HEAD_LIMIT;
        c.header_read_timeout = NEVER;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    // A head that never ends and keeps growing, exactly up to the limit
    // (so the router has read every byte when it answers, and its close
    // is clean: the 431 is not lost to a reset).
    let start = "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Pad: ";
    let endless = format!("{start}{}", "p".repeat(HEAD_LIMIT - start.len()));
    let mut s = TcpStream::connect(r.addr()).await.unwrap();
    s.write_all(endless.as_bytes()).await.unwrap();
    let resp = String::from_utf8_lossy(&until_closed(&mut s).await.expect("closed")).to_string();
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

    // One whole head with a huge header: refused too (its tail may be
    // unread when the router closes, so the 431 may come with a reset).
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Big: {}\r\n\r\n",
        "x".repeat(4 * HEAD_LIMIT)
    );
    let resp = raw(r.addr(), &huge).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
        "{resp}"
    );
    assert_eq!(a.seen.bytes_in(), 0, "nothing reached the app");
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "still serving: {resp}");
}

#[tokio::test]
async fn one_address_flooding_is_capped_while_others_are_served() {
    const PER_CLIENT: usize = 4;
    const FLOOD: usize = 40;
    let r = start_router(|c| {
        c.max_connections_per_client = PER_CLIENT;
        c.header_read_timeout = NEVER;
        c.idle_timeout = NEVER;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut held = Vec::new();
    for _ in 0..PER_CLIENT {
        held.push(connect_from("127.0.0.2", r.addr()).await);
    }
    wait_for_open(&r, PER_CLIENT as u64).await;
    // The flood: every further connection from that address is answered
    // 503 (when the socket takes it) and closed at once.
    for _ in PER_CLIENT..FLOOD {
        let mut over = connect_from("127.0.0.2", r.addr()).await;
        let answer = until_closed(&mut over).await.expect("closed at once");
        let answer = String::from_utf8_lossy(&answer).to_string();
        if !answer.is_empty() {
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert_router_page(&answer);
        }
    }
    let stats = r.router.stats();
    assert_eq!(
        (stats.refused_per_client, stats.open_connections),
        ((FLOOD - PER_CLIENT) as u64, PER_CLIENT as u64),
        "{stats:?}"
    );
    // Another client is served, while the flooder holds its share.
    let mut other = connect_from("127.0.0.3", r.addr()).await;
    other
        .write_all(get("a.localhost", "/").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut other).await.unwrap()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // The flooder's held connections are served too: capped, not banned.
    let mut first = held.remove(0);
    first
        .write_all(get("a.localhost", "/held").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut first).await.unwrap()).unwrap();
    assert!(resp.contains("path=/held"), "{resp}");
    // A closed connection gives its place back.
    wait_for_open(&r, PER_CLIENT as u64 - 1).await;
    let mut again = connect_from("127.0.0.2", r.addr()).await;
    again
        .write_all(get("a.localhost", "/again").as_bytes())
        .await
        .unwrap();
    let resp = String::from_utf8(until_closed(&mut again).await.unwrap()).unwrap();
    assert!(resp.contains("path=/again"), "{resp}");
}

#[tokio::test]
async fn connections_are_capped_overall() {
    let r = start_router(|c| {
        c.max_connections = 4;
        c.max_connections_per_client = 2;
        c.header_read_timeout = NEVER;
        c.idle_timeout = NEVER;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    let mut held = Vec::new();
    for from in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
        held.push(connect_from(from, r.addr()).await);
    }
    wait_for_open(&r, 4).await;
    let mut over = connect_from("127.0.0.4", r.addr()).await;
    let answer =
        String::from_utf8_lossy(&until_closed(&mut over).await.expect("closed")).to_string();
    if !answer.is_empty() {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert_router_page(&answer);
    }
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
    // The connections inside the cap are served.
    for s in &mut held {
        s.write_all(get("a.localhost", "/").as_bytes())
            .await
            .unwrap();
        let resp = String::from_utf8(until_closed(s).await.unwrap()).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    }
    wait_for_open(&r, 0).await;
}
