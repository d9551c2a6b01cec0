//! The edge router against real TCP upstreams and raw/real HTTP clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use router::{RequestLog, Route, RouteTable, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream app that reports what it received.
async fn upstream(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |mut req: Request<hyper::body::Incoming>| async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        if req.uri().path() == "/ws" {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(up.await.unwrap());
                                let mut buf = [0u8; 64];
                                let n = io.read(&mut buf).await.unwrap();
                                io.write_all(b"echo:").await.unwrap();
                                io.write_all(&buf[..n]).await.unwrap();
                            });
                            return Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(101)
                                    .header("connection", "upgrade")
                                    .header("upgrade", "echo")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            );
                        }
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(400)).await;
                        }
                        let body = format!(
                            "{name} path={} host={} xff={} xfp={} xfh={} conn={}",
                            req.uri(),
                            h("host"),
                            h("x-forwarded-for"),
                            h("x-forwarded-proto"),
                            h("x-forwarded-host"),
                            h("x-hop"),
                        );
                        Ok(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends one raw HTTP/1.1 request and returns the whole response text.
async fn raw(router: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(router).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close, x-hop\r\nX-Hop: secret\r\n\r\n"
    )
}

async fn start() -> (Router, RouteTable, Arc<Mutex<Vec<(String, String)>>>) {
    let table = RouteTable::new("localhost");
    let lines = Arc::new(Mutex::new(vec![]));
    let sink = lines.clone();
    let log: RequestLog = Arc::new(move |app: &str, line: &str| {
        sink.lock()
            .unwrap()
            .push((app.to_string(), line.to_string()))
    });
    let router = Router::bind("127.0.0.1:0".parse().unwrap(), table.clone(), log)
        .await
        .unwrap();
    (router, table, lines)
}

#[tokio::test]
async fn routes_by_host_and_sets_forwarded_headers() {
    let (router, table, lines) = start().await;
    let a = upstream("app-a").await;
    let b = upstream("app-b").await;
    table.switch("a", &["www.example.test".into()], a, 1);
    table.switch("b", &[], b, 1);

    let r = raw(router.local_addr, &get("a.localhost:8000", "/x?y=1")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("app-a path=/x?y=1"), "{r}");
    assert!(
        r.contains("xff=127.0.0.1 xfp=http xfh=a.localhost:8000"),
        "{r}"
    );
    assert!(
        r.contains("conn=-"),
        "hop-by-hop headers named in Connection are dropped: {r}"
    );
    let r = raw(router.local_addr, &get("WWW.Example.Test", "/")).await;
    assert!(r.contains("app-a"), "{r}");
    let r = raw(router.local_addr, &get("b.localhost", "/")).await;
    assert!(r.contains("app-b"), "{r}");
    // An existing X-Forwarded-For is appended to.
    let r = raw(
        router.local_addr,
        "GET / HTTP/1.1\r\nHost: b.localhost\r\nX-Forwarded-For: 10.9.8.7\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.contains("xff=10.9.8.7, 127.0.0.1"), "{r}");

    let logged = lines.lock().unwrap().clone();
    assert!(
        logged
            .iter()
            .any(|(app, l)| app == "a" && l.starts_with("GET /x?y=1 200")),
        "{logged:?}"
    );
}

#[tokio::test]
async fn unknown_host_is_404_and_down_app_is_502() {
    let (router, table, _) = start().await;
    let r = raw(router.local_addr, &get("nope.localhost", "/")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(
        r.contains("No BytePort app answers to <code>nope.localhost</code>"),
        "{r}"
    );

    table.mark_down("sleepy", &[], "it is starting");
    let r = raw(router.local_addr, &get("sleepy.localhost", "/")).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("not answering right now: it is starting"),
        "{r}"
    );

    // Routed, but the VM's port refuses connections.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    table.switch("crashed", &[], dead, 3);
    let r = raw(router.local_addr, &get("crashed.localhost", "/")).await;
    assert!(
        r.starts_with("HTTP/1.1 502") && r.contains("did not answer"),
        "{r}"
    );
}

#[tokio::test]
async fn malformed_requests_get_errors_not_hangs() {
    let (router, table, _) = start().await;
    table.switch("a", &[], upstream("a").await, 1);
    let r = raw(
        router.local_addr,
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "no Host header: {r}");
    let r = raw(router.local_addr, "BLAH\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400") || r.is_empty(), "{r}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Big: {}\r\n\r\n",
        "x".repeat(1 << 20)
    );
    let r = raw(router.local_addr, &huge).await;
    assert!(
        r.starts_with("HTTP/1.1 431") || r.is_empty(),
        "oversized headers refused: {r}"
    );
    // The router still serves afterwards.
    let r = raw(router.local_addr, &get("a.localhost", "/")).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test]
async fn upgrades_pass_through() {
    let (router, table, _) = start().await;
    table.switch("ws", &[], upstream("ws").await, 1);
    let mut s = TcpStream::connect(router.local_addr).await.unwrap();
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
    let mut got = vec![];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert_eq!(String::from_utf8_lossy(&got), "echo:ping");
}

#[tokio::test]
async fn switch_drains_the_old_upstream_without_failing_requests() {
    let (router, table, _) = start().await;
    let old = upstream("old").await;
    let new = upstream("new").await;
    table.switch("app", &[], old, 1);
    let addr = router.local_addr;
    let slow = tokio::spawn(async move { raw(addr, &get("app.localhost", "/slow")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let previous = table.switch("app", &[], new, 2).unwrap();
    assert_eq!(
        previous.inflight(),
        1,
        "the slow request is still in flight on the old VM"
    );
    let r = raw(addr, &get("app.localhost", "/")).await;
    assert!(
        r.contains("new "),
        "new requests go to the new upstream: {r}"
    );
    assert_eq!(previous.drain(Duration::from_secs(5)).await, 0);
    let r = slow.await.unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("old path=/slow"),
        "{r}"
    );
    assert!(matches!(table.lookup("app.localhost"), Some(Route::Up(u)) if u.deploy == 2));
}

/// An upstream that counts the connections it accepts; `close` makes it
/// answer `Connection: close` (like busybox httpd), and `/big` sends a
/// large body.
async fn counting_upstream(close: bool) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = if req.uri().path() == "/big" {
                            Bytes::from(vec![b'x'; 4 << 20])
                        } else {
                            Bytes::from_static(b"ok")
                        };
                        let mut r = Response::new(Full::new(body));
                        if close {
                            r.headers_mut().insert(
                                "connection",
                                hyper::header::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    use std::sync::atomic::Ordering;
    let (router, table, _) = start().await;
    let (addr, accepted) = counting_upstream(false).await;
    table.switch("k", &[], addr, 1);
    // 30 requests, one new client connection each: the router reuses its
    // upstream connection once each response has been read.
    for i in 0..30 {
        let r = raw(router.local_addr, &get("k.localhost", &format!("/{i}"))).await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );

    // A client that leaves in the middle of a large body: that upstream
    // connection is not reused half-read, and later requests still work.
    {
        let mut s = TcpStream::connect(router.local_addr).await.unwrap();
        s.write_all(get("k.localhost", "/big").as_bytes())
            .await
            .unwrap();
        let mut first = [0u8; 1024];
        let _ = s.read(&mut first).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let r = raw(router.local_addr, &get("k.localhost", "/")).await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    }
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&n),
        "the half-read connection was replaced, not reused: {n}"
    );
}

#[tokio::test]
async fn upstreams_that_close_every_connection_still_work() {
    use std::sync::atomic::Ordering;
    let (router, table, _) = start().await;
    let (addr, accepted) = counting_upstream(true).await;
    table.switch("c", &[], addr, 1);
    for i in 0..10 {
        let r = raw(router.local_addr, &get("c.localhost", &format!("/{i}"))).await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}
