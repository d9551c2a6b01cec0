//! What the router's integration tests share: real upstream apps on
//! loopback, a router started with test settings, raw TCP clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use router::{Outcome, RequestRecord, RouteTable, Router, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The longest any test waits for something that should happen at once
/// or after a sub-second deadline; only a hang reaches it.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// What an upstream app has seen.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    /// Request bodies read to their end.
    pub whole_bodies: AtomicUsize,
    /// Bytes read from the router's connections, heads and bodies alike.
    pub bytes_in: AtomicUsize,
    /// Connections over (closed by either side).
    pub ended: AtomicUsize,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn whole_bodies(&self) -> usize {
        self.whole_bodies.load(Ordering::SeqCst)
    }
    pub fn bytes_in(&self) -> usize {
        self.bytes_in.load(Ordering::SeqCst)
    }
    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

/// The app's side of a connection, counting the bytes it reads.
struct Counted {
    stream: TcpStream,
    seen: Arc<Seen>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.seen.bytes_in.fetch_add(n, Ordering::SeqCst);
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A real HTTP/1.1 app on loopback. It answers with what it received:
/// `<name> path=... host=... xff=... xri=... xfp=... xfh=... fwd=...
/// hop=... body=<bytes>`; `/ws` upgrades to an echo, `/slow` waits 400 ms,
/// `/slower` 1.2 s,
/// `/hang` never answers, `/big` sends 4 MiB, `/spoof` sends the router's
/// marker header. With `close`, every response says `Connection: close`.
/// [`App::kill`] stops it the way a VM dies: listener and connections gone.
pub struct App {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    killed: tokio::sync::watch::Sender<bool>,
}

impl App {
    pub async fn start(name: &'static str) -> App {
        App::start_with(name, false).await
    }

    pub async fn start_with(name: &'static str, close: bool) -> App {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        let (killed, alive) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let mut kill = alive.clone();
                let (s, _) = tokio::select! {
                    accepted = l.accept() => accepted.unwrap(),
                    _ = kill.wait_for(|k| *k) => return,
                };
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                let s = Counted {
                    stream: s,
                    seen: counts.clone(),
                };
                let ended = counts.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let counts = counts.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                answer(name, close, req, &counts).await,
                            )
                        }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = served => {}
                        _ = kill.wait_for(|k| *k) => {}
                    }
                    ended.ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        App { addr, seen, killed }
    }

    /// Closes the listener (connects are refused from now on) and every
    /// connection, answered or not, like a VM being killed.
    pub fn kill(&self) {
        self.killed.send_replace(true);
    }
}

async fn answer(
    name: &str,
    close: bool,
    mut req: Request<hyper::body::Incoming>,
    seen: &Seen,
) -> Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if path == "/ws" {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(up.await.unwrap());
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0
                    || io.write_all(b"echo:").await.is_err()
                    || io.write_all(&buf[..n]).await.is_err()
                {
                    break;
                }
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    match path.as_str() {
        "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
        "/slower" => tokio::time::sleep(Duration::from_millis(1200)).await,
        "/hang" => tokio::time::sleep(Duration::from_secs(3600)).await,
        _ => {}
    }
    let h = |n: &str| {
        let v: Vec<&str> = req
            .headers()
            .get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join("|")
        }
    };
    let head = format!(
        "{name} path={} host={} xff={} xri={} xfp={} xfh={} fwd={} hop={}",
        req.uri(),
        h("host"),
        h("x-forwarded-for"),
        h("x-real-ip"),
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
        h("forwarded"),
        h("x-hop"),
    );
    let body = match req.into_body().collect().await {
        Ok(b) => {
            seen.whole_bodies.fetch_add(1, Ordering::SeqCst);
            b.to_bytes().len().to_string()
        }
        Err(_) => "broken".to_string(),
    };
    let text = match path.as_str() {
        "/big" => Bytes::from(vec![b'x'; 4 << 20]),
        _ => Bytes::from(format!("{head} body={body}")),
    };
    let mut r = Response::new(Full::new(text));
    if close {
        r.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    if path == "/spoof" {
        r.headers_mut().insert(
            "x-byteport-router",
            hyper::header::HeaderValue::from_static("app-down"),
        );
    }
    r
}

/// A [`RequestRecord`] kept after the callback.
#[derive(Debug, Clone)]
pub struct Logged {
    pub app: Option<String>,
    pub line: String,
    pub status: u16,
    pub outcome: Outcome,
    pub router_page: Option<&'static str>,
    pub body_bytes: u64,
    pub client: std::net::IpAddr,
    pub upstream: Option<SocketAddr>,
}

#[derive(Clone, Default)]
pub struct Records(Arc<Mutex<Vec<Logged>>>);

impl Records {
    pub fn all(&self) -> Vec<Logged> {
        self.0.lock().unwrap().clone()
    }

    /// Drops every record kept so far (and the memory they hold).
    pub fn forget_all(&self) {
        *self.0.lock().unwrap() = Vec::new();
    }

    /// Waits (up to the hang guard) for a record matching `want`.
    pub async fn wait_for(&self, want: impl Fn(&Logged) -> bool) -> Logged {
        let found = tokio::time::timeout(HANG_GUARD, async {
            loop {
                if let Some(r) = self.all().into_iter().find(|r| want(r)) {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no such request record; have {:#?}", self.all()))
    }
}

pub struct Started {
    pub router: Router,
    pub table: RouteTable,
    pub records: Records,
}

impl Started {
    pub fn addr(&self) -> SocketAddr {
        self.router.local_addr
    }
}

/// A router on a free loopback port with the defaults changed by `tune`.
pub async fn start_router(tune: impl FnOnce(&mut RouterConfig)) -> Started {
    let mut config = RouterConfig::new("127.0.0.1:0".parse().unwrap());
    tune(&mut config);
    let table = RouteTable::new("localhost");
    let records = Records::default();
    let sink = records.clone();
    let router = Router::serve(
        config,
        table.clone(),
        Arc::new(move |r: &RequestRecord<'_>| {
            sink.0.lock().unwrap().push(Logged {
                app: r.app.map(String::from),
                line: r.to_string(),
                status: r.status,
                outcome: r.outcome,
                router_page: r.router_page,
                body_bytes: r.body_bytes,
                client: r.client,
                upstream: r.upstream,
            })
        }),
    )
    .await
    .unwrap();
    Started {
        router,
        table,
        records,
    }
}

/// A TCP connection to `to` from the loopback address `from` (any of
/// 127.0.0.0/8 works on Linux, so tests can be several clients).
pub async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends one raw request and returns everything until the router closes
/// the connection (the hang guard ends a connection that stays open).
pub async fn raw(router: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(router).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = vec![];
    let _ = tokio::time::timeout(HANG_GUARD, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET path` for `host`, closing after the response.
pub fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Reads until the peer closes the connection. `Ok(bytes read)` once it
/// has (a reset counts as closed); `Err` if it was still open at the hang
/// guard.
pub async fn until_closed(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    match closed {
        Ok(()) => Ok(out),
        Err(_) => Err(format!(
            "still open after {HANG_GUARD:?}; read {:?}",
            String::from_utf8_lossy(&out)
        )),
    }
}

/// Reads one response with a Content-Length body from a kept-alive
/// connection: (head, body).
pub async fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut data = vec![];
    let mut buf = [0u8; 4096];
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&data[end + 4..end + 4 + len]).to_string();
                    return (head, body);
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&data)
            );
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a whole response")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in a response head, if present.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Asserts that `resp` is one of the router's own pages: the header the
/// portfolio's screenshotter looks for, and the same marker in the HTML.
pub fn assert_router_page(resp: &str) {
    assert_eq!(
        header(resp, "x-byteport-router"),
        Some("error"),
        "not marked as the router's: {resp}"
    );
    assert!(
        resp.contains(r#"<meta name="byteport-router" content="error">"#),
        "no marker in the page: {resp}"
    );
}

/// Waits until the router counts `n` open connections.
pub async fn wait_for_open(r: &Started, n: u64) {
    tokio::time::timeout(HANG_GUARD, async {
        while r.router.stats().open_connections != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {n} open: {:?}", r.router.stats()));
}

/// Waits until `f` holds (it reads counters the router or an app keeps).
pub async fn wait_until(what: &str, f: impl Fn() -> bool) {
    tokio::time::timeout(HANG_GUARD, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}
