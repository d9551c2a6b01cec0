//! Router benchmark: throughput and p99 latency through BytePort's router vs
//! a direct connection to the app, vs nginx as the reverse proxy in front of
//! the same app — one run, side by side, with ratios.
//!
//! Needs `wrk` and `nginx` (Debian packages). Run: `cargo bench --bench router`.
//! Settings: BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use byteport::router::{RequestLog, RouteTable, Router};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;

fn need(bin: &str, package: &str) -> String {
    byteport::doctor::which(bin)
        .unwrap_or_else(|| panic!("`{bin}` is missing: apt-get install {package}"))
        .display()
        .to_string()
}

async fn app_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let page = Bytes::from(format!(
        "<html><body>{}</body></html>",
        "hello ".repeat(150)
    ));
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let page = page.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let page = page.clone();
                    async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(page))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

struct WrkResult {
    rps: f64,
    p99_ms: f64,
    errors: String,
}

fn wrk(wrk_bin: &str, url: &str, host: &str, secs: u64, conns: u32) -> WrkResult {
    let out = Command::new(wrk_bin)
        .args([
            "-t",
            "1",
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(parse_latency)
        .unwrap_or(f64::NAN);
    let errors = text
        .lines()
        .filter(|l| l.contains("errors") || l.contains("Non-2xx"))
        .collect::<Vec<_>>()
        .join("; ");
    WrkResult {
        rps,
        p99_ms: p99,
        errors,
    }
}

fn parse_latency(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => n,
    }
}

fn start_nginx(
    nginx: &str,
    listen: u16,
    upstream: SocketAddr,
) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
events {{ worker_connections 1024; }}\n\
http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
 upstream app {{ server {upstream}; keepalive 64; }}\n\
 server {{\n  listen 127.0.0.1:{listen};\n  location / {{\n   proxy_pass http://app;\n   proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n   proxy_set_header Host $host;\n   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n   proxy_set_header X-Forwarded-Proto $scheme;\n   proxy_set_header X-Forwarded-Host $host;\n  }}\n }}\n}}\n",
        d = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    std::thread::sleep(Duration::from_millis(500));
    (child, dir)
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; only run when benching.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let wrk_bin = need("wrk", "wrk");
    let nginx = need("nginx", "nginx-light");
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let conns: u32 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);

    // The app gets its own runtime thread, as a VM would have its own CPU;
    // the router runs on another, as in `byteport up`.
    let app_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = app_rt.block_on(app_server());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let router = rt.block_on(async {
        let table = RouteTable::new("localhost");
        table.switch("bench", &[], app, 1);
        let log: RequestLog = Arc::new(|_: &str, _: &str| {});
        Router::bind("127.0.0.1:0".parse().unwrap(), table, log)
            .await
            .unwrap()
    });
    let nginx_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut nginx_child, _dir) = start_nginx(&nginx, nginx_port, app);

    println!(
        "router benchmark: wrk -t1 -c{conns} -d{secs}s, 1 KiB page, same app behind each path"
    );
    let host = "bench.localhost";
    let direct = wrk(&wrk_bin, &format!("http://{app}/"), host, secs, conns);
    let routed = wrk(
        &wrk_bin,
        &format!("http://{}/", router.local_addr),
        host,
        secs,
        conns,
    );
    let proxied = wrk(
        &wrk_bin,
        &format!("http://127.0.0.1:{nginx_port}/"),
        host,
        secs,
        conns,
    );
    // SIGTERM (not SIGKILL) so the nginx master takes its workers down too.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(nginx_child.id() as i32, libc::SIGTERM) };
    let _ = nginx_child.wait();

    println!("{:<16} {:>12} {:>10}  errors", "path", "req/s", "p99 ms");
    for (name, r) in [
        ("direct", &direct),
        ("byteport router", &routed),
        ("nginx", &proxied),
    ] {
        println!(
            "{name:<16} {:>12.0} {:>10.2}  {}",
            r.rps, r.p99_ms, r.errors
        );
    }
    println!(
        "ratios: router/direct throughput {:.2}x (goal >= 0.9x), router/nginx throughput {:.2}x (goal >= 1.0x), p99 router/nginx {:.2}x",
        routed.rps / direct.rps,
        routed.rps / proxied.rps,
        routed.p99_ms / proxied.p99_ms
    );
    drop(router);
}
