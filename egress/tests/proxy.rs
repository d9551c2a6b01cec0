//! The proxy over real sockets: tunnels and forwards to a destination the
//! test allows explicitly (its own servers on 127.0.0.1), refuses the same
//! servers without the exception — in every spelling, by name, through
//! both request forms — and enforces its limits. The test's servers count
//! every connection they get, so "refused" means nothing reached them.

use egress::{Allow, BackgroundProxy, Policy, ProxyConfig, Refusal};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server that answers every request on every connection with `hello
/// from <path>` and counts connections.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn upstream() -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, s) = (connections.clone(), seen.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    s.lock().unwrap().push(head);
                    let body = format!("hello from {path}");
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    Upstream {
        addr,
        connections,
        seen,
    }
}

struct Running {
    _proxy: BackgroundProxy,
    _serving: egress::Serving,
    addr: SocketAddr,
    refusals: Arc<Mutex<Vec<String>>>,
}

fn proxy(policy: Policy, tweak: impl FnOnce(&mut ProxyConfig)) -> Running {
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let r = refusals.clone();
    let mut config = ProxyConfig {
        policy,
        on_refusal: Some(Arc::new(move |x: &Refusal| {
            r.lock().unwrap().push(x.to_string())
        })),
        ..ProxyConfig::default()
    };
    tweak(&mut config);
    let proxy = BackgroundProxy::start(config).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let serving = proxy.serve_tcp(l).unwrap();
    Running {
        _proxy: proxy,
        _serving: serving,
        addr,
        refusals,
    }
}

/// Send `request` to the proxy and read until the response head ends (and
/// `body_len` more bytes).
fn ask(proxy: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn body(s: &mut TcpStream, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).unwrap();
    String::from_utf8(b).unwrap()
}

#[test]
fn connect_tunnels_to_an_allowed_destination_and_plain_http_is_forwarded() {
    let up = upstream();
    let p = proxy(
        Policy::internet_only().allowing(Allow::Addr(up.addr)),
        |_| {},
    );
    let (mut s, head) = ask(
        p.addr,
        &format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", up.addr),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"GET /through-the-tunnel HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (mut inner, inner_head) = (s.try_clone().unwrap(), {
        let mut h = Vec::new();
        let mut byte = [0u8; 1];
        while !h.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            h.push(byte[0]);
        }
        String::from_utf8(h).unwrap()
    });
    assert_eq!(
        body(&mut inner, &inner_head),
        "hello from /through-the-tunnel"
    );

    let (mut s, head) = ask(
        p.addr,
        &format!(
            "GET http://{}/plain?x=1 HTTP/1.1\r\nHost: ignored\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n",
            up.addr
        ),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body(&mut s, &head), "hello from /plain?x=1");
    let seen = up.seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        seen.starts_with("GET /plain?x=1 HTTP/1.1\r\n"),
        "origin form upstream: {seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("proxy-"),
        "proxy headers leaked: {seen}"
    );
    assert!(p.refusals.lock().unwrap().is_empty());
}

#[test]
fn the_host_is_refused_in_every_spelling_by_name_and_in_both_forms() {
    let up = upstream();
    let port = up.addr.port();
    let p = proxy(Policy::internet_only(), |_| {});
    let hostname = {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned()
    };
    let resolves = std::net::ToSocketAddrs::to_socket_addrs(&(hostname.as_str(), port)).is_ok();
    let mut hosts: Vec<String> = [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "0.0.0.0",
        "localhost",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    if resolves {
        // A real DNS name answering with an address of this host.
        hosts.push(hostname.clone());
    } else {
        eprintln!("NOTE: this host's name {hostname:?} does not resolve; no DNS-name case ran");
    }
    for host in &hosts {
        for request in [
            format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"),
            format!("GET http://{host}:{port}/secret HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        ] {
            let (mut s, head) = ask(p.addr, &request);
            assert!(head.starts_with("HTTP/1.1 403"), "{request:?} -> {head}");
            let text = body(&mut s, &head);
            assert!(text.contains("refused"), "{text}");
            assert!(
                text.contains(&format!(":{port}")),
                "the refusal names the destination: {text}"
            );
        }
    }
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        0,
        "a refused request reached the server"
    );
    let refusals = p.refusals.lock().unwrap();
    assert_eq!(refusals.len(), hosts.len() * 2, "{refusals:#?}");
    assert!(
        refusals[0].contains("loopback (127.0.0.0/8)"),
        "{refusals:#?}"
    );
}

#[test]
fn limits_connections_header_size_and_idle_time() {
    let up = upstream();
    let p = proxy(
        Policy::internet_only().allowing(Allow::Addr(up.addr)),
        |c| {
            c.max_connections = 1;
            c.idle_timeout = Duration::from_millis(500);
            c.max_header_bytes = 8192;
        },
    );
    // An idle connection is closed by the proxy.
    let mut first = TcpStream::connect(p.addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = first.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "an idle connection is closed without a response");

    // One connection at a time: a second one, while the first is open, gets 503.
    let (mut held, head) = ask(
        p.addr,
        &format!("GET http://{}/a HTTP/1.1\r\nHost: x\r\n\r\n", up.addr),
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = body(&mut held, &head);
    let (_, second) = ask(p.addr, "GET http://x/ HTTP/1.1\r\n\r\n");
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));

    // A request head past the limit is refused with 431.
    let big = format!(
        "GET http://{}/b HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        up.addr,
        "a".repeat(20_000)
    );
    let (_, head) = ask(p.addr, &big);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

#[test]
fn serves_a_unix_socket_too() {
    let up = upstream();
    let dir = std::env::temp_dir().join(format!("egress-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.sock");
    let _ = std::fs::remove_file(&path);
    let proxy = BackgroundProxy::start(ProxyConfig {
        policy: Policy::internet_only().allowing(Allow::Addr(up.addr)),
        ..ProxyConfig::default()
    })
    .unwrap();
    let serving = proxy
        .serve_unix(std::os::unix::net::UnixListener::bind(&path).unwrap())
        .unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    write!(
        s,
        "GET http://{}/unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        up.addr
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(
        all.starts_with("HTTP/1.1 200") && all.ends_with("hello from /unix"),
        "{all}"
    );
    drop(serving);
    std::thread::sleep(Duration::from_millis(200));
    // The listener is closed with its Serving handle: no connection, or
    // one that is never answered.
    if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&path) {
        let _ = write!(s, "GET http://{}/after HTTP/1.1\r\n\r\n", up.addr);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut after = String::new();
        let _ = s.read_to_string(&mut after);
        assert!(
            after.is_empty(),
            "served after its Serving handle was dropped: {after}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
