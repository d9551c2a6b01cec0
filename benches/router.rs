//! Router benchmark: throughput and p50/p99 latency through BytePort's router vs
//! a direct connection to the app, vs nginx as the reverse proxy in front of
//! the same app — one run, side by side, with ratios. Both proxies log every
//! request to a file, buffered and flushed every 500 ms (the router through
//! the app log, nginx's `access_log ... buffer=16k flush=500ms`).
//!
//! 1. **App in a microVM** (what the goals are about): `byteport up` with
//!    `examples/static-site` pushed to it; "direct" is the VM's forwarded
//!    port, the router is the daemon's own, nginx proxies to the same port.
//! 2. **Proxy overhead**: a trivial in-process app on the host (≈100k
//!    req/s), so the proxies' own cost per request dominates; on two cores
//!    shared by wrk, the app and the proxy, no proxy gets near "direct".
//!
//! Needs `wrk` and `nginx` (Debian packages; scripts/install-deps.sh).
//! Run: `cargo bench --bench router`. Settings: BENCH_SECONDS (default 10),
//! BENCH_CONNECTIONS (default 32), BENCH_ROUNDS (default 3; each path is
//! measured once per round, alternating, and the median is shown),
//! BENCH_SCENARIOS (`vm` or `host`; default both). BENCH_SAVE=FILE writes
//! the figures as a table; BENCH_BASELINE=FILE (one written so earlier, e.g.
//! before a change) prints them side by side with this run's.

#[path = "router/cpu.rs"]
mod cpu;
#[path = "router/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

// The allocator `byteport` itself runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cpu::CpuOf;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use router::{OnRequest, RequestRecord, RouteTable, Router, RouterConfig};

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
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
    /// CPU time the proxy (or, for "direct", nobody) spent per request, µs.
    cpu_us_per_req: Option<f64>,
}

/// The run with the median throughput, its CPU per request replaced by
/// the median CPU per request over the runs.
fn median(mut runs: Vec<WrkResult>) -> WrkResult {
    let mut cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us_per_req).collect();
    cpu.sort_by(f64::total_cmp);
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs.len() / 2;
    let mut m = runs.swap_remove(mid);
    m.cpu_us_per_req = cpu.get(cpu.len() / 2).copied();
    m
}

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

fn wrk(wrk_bin: &str, url: &str, host: &str, cpu: CpuOf) -> WrkResult {
    let (secs, conns) = settings();
    let cpu_before = cpu.secs();
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
    let percentile = |p: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(parse_latency)
            .unwrap_or(f64::NAN)
    };
    let (p50, p99) = (percentile("50%"), percentile("99%"));
    let errors = text
        .lines()
        .filter(|l| l.contains("errors") || l.contains("Non-2xx"))
        .collect::<Vec<_>>()
        .join("; ");
    let requests = rps * secs as f64;
    let cpu_us_per_req = match cpu {
        CpuOf::Nobody => None,
        _ if requests > 0.0 => Some((cpu.secs() - cpu_before) * 1e6 / requests),
        _ => None,
    };
    WrkResult {
        rps,
        p50_ms: p50,
        p99_ms: p99,
        errors,
        cpu_us_per_req,
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
http {{\n access_log {d}/access.log combined buffer=16k flush=500ms;\n client_body_temp_path {d};\n proxy_temp_path {d};\n fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n\
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

use testvm::free_port;

struct Scenario {
    /// A short name for saved figures: `vm` or `host`.
    key: &'static str,
    name: &'static str,
    direct: WrkResult,
    router: WrkResult,
    nginx: WrkResult,
}

/// wrk against `app` directly, through `router` (Host header picks the
/// app; its CPU time read from `router_cpu`) and through a fresh nginx in
/// front of `app`.
fn measure(
    (key, name): (&'static str, &'static str),
    bins: &(String, String),
    app: SocketAddr,
    (router, router_cpu): (SocketAddr, CpuOf),
    host: &str,
    path: &str,
) -> Scenario {
    let (wrk_bin, nginx) = bins;
    let nginx_port = free_port();
    let (mut nginx_child, _dir) = start_nginx(nginx, nginx_port, app);
    let nginx_pid = nginx_child.id();
    // Alternate the three paths, several rounds, and keep the median of
    // each: this machine's load moves under every single run.
    let rounds = rounds();
    let (mut direct, mut routed, mut proxied) = (vec![], vec![], vec![]);
    for round in 1..=rounds {
        eprintln!("router bench: {name}: round {round}/{rounds}");
        direct.push(wrk(
            wrk_bin,
            &format!("http://{app}{path}"),
            host,
            CpuOf::Nobody,
        ));
        routed.push(wrk(
            wrk_bin,
            &format!("http://{router}{path}"),
            host,
            router_cpu.clone(),
        ));
        proxied.push(wrk(
            wrk_bin,
            &format!("http://127.0.0.1:{nginx_port}{path}"),
            host,
            CpuOf::ProcessTree(nginx_pid),
        ));
    }
    let (direct, routed, proxied) = (median(direct), median(routed), median(proxied));
    // SIGTERM (not SIGKILL) so the nginx master takes its workers down too.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(nginx_child.id() as i32, libc::SIGTERM) };
    let _ = nginx_child.wait();
    Scenario {
        key,
        name,
        direct,
        router: routed,
        nginx: proxied,
    }
}

fn settings() -> (u64, u32) {
    let secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let conns = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    (secs, conns)
}

/// Scenario 1: the static-site example in a VM behind `byteport up`.
fn vm_app(bins: &(String, String)) -> Scenario {
    let d = support::daemon::Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "bench");
    let work = tmp.path().join("site");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/static-site");
    std::fs::create_dir_all(work.join("public")).unwrap();
    std::fs::copy(example.join("Byteport"), work.join("Byteport")).unwrap();
    for f in std::fs::read_dir(example.join("public")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), work.join("public").join(f.file_name())).unwrap();
    }
    let git = |args: &[&str], ssh: Option<&str>| support::daemon::git(&work, args, ssh);
    git(&["init", "-q"], None);
    git(&["add", "-A"], None);
    git(&["commit", "-qm", "site"], None);
    let out = git(
        &["push", "-q", &d.remote("site"), "main"],
        Some(&d.ssh_command(&key)),
    );
    assert!(
        out.status.success(),
        "push failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let ps = String::from_utf8_lossy(&d.cli(&["ps", "site"]).stdout).to_string();
    let upstream: SocketAddr = ps
        .split_whitespace()
        .skip_while(|w| *w != "upstream")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no upstream in `byteport ps`: {ps}"));
    let router = SocketAddr::from(([127, 0, 0, 1], d.router_port));
    measure(
        ("vm", "app in a microVM (static-site, busybox httpd, QEMU)"),
        bins,
        upstream,
        (router, CpuOf::Process(d.pid())),
        "site.localhost",
        "/index.html",
    )
}

/// Scenario 2: an in-process app, the router in-process with the daemon's
/// request logging (a line per request into the app log file).
fn host_app(bins: &(String, String)) -> Scenario {
    // The app gets its own runtime thread, as a VM would have its own CPU;
    // the router runs on another, as in `byteport up`.
    let app_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = app_rt.block_on(app_server());
    let logs_dir = tempfile::tempdir().unwrap();
    let events = platform::Events::new(platform::events::EventSettings {
        dir: logs_dir.path().to_path_buf(),
        journal: Default::default(),
    });
    let flusher = events.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The router on a thread of its own, as `byteport up` runs it.
    std::thread::Builder::new()
        .name("bp-router".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let table = RouteTable::new("localhost");
                table.try_switch("bench", &[], app, 1).unwrap();
                flusher.spawn_flusher();
                // What the daemon does with each record: its line into the
                // app's event stream.
                let on_request: OnRequest = Arc::new(move |r: &RequestRecord<'_>| {
                    if let Some(app) = r.app {
                        events.emit(
                            app,
                            Some(1),
                            None,
                            platform::EventKind::Request {
                                line: r.to_string(),
                            },
                        );
                    }
                });
                let config = RouterConfig::new("127.0.0.1:0".parse().unwrap());
                let router = Router::serve(config, table, on_request).await.unwrap();
                tx.send(router.local_addr).unwrap();
                std::future::pending::<()>().await;
            });
        })
        .unwrap();
    let router_addr = rx.recv().unwrap();
    let s = measure(
        (
            "host",
            "proxy overhead (trivial in-process app on the host)",
        ),
        bins,
        app,
        (router_addr, CpuOf::ThreadsNamed("bp-router")),
        "bench.localhost",
        "/",
    );
    drop(logs_dir);
    s
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; only run when benching.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bins = (need("wrk", "wrk"), need("nginx", "nginx-light"));
    let (secs, conns) = settings();
    // BENCH_SCENARIOS=vm or =host runs one of the two.
    let only = std::env::var("BENCH_SCENARIOS").unwrap_or_default();
    let mut scenarios = Vec::new();
    if only.is_empty() || only == "vm" {
        scenarios.push(vm_app(&bins));
    }
    if only.is_empty() || only == "host" {
        scenarios.push(host_app(&bins));
    }
    println!(
        "router benchmark: wrk -t1 -c{conns} -d{secs}s, median of {} alternating rounds, every request logged to a file by each proxy",
        rounds()
    );
    let mut rows = Vec::new();
    for s in &scenarios {
        println!("\n{}", s.name);
        println!(
            "  {:<16} {:>10} {:>9} {:>9} {:>14}  errors",
            "path", "req/s", "p50 ms", "p99 ms", "proxy CPU/req"
        );
        for (name, r) in [
            ("direct", &s.direct),
            ("byteport router", &s.router),
            ("nginx", &s.nginx),
        ] {
            let cpu = r
                .cpu_us_per_req
                .map(|us| format!("{us:.1} us"))
                .unwrap_or_else(|| "-".into());
            println!(
                "  {name:<16} {:>10.0} {:>9.2} {:>9.2} {cpu:>14}  {}",
                r.rps, r.p50_ms, r.p99_ms, r.errors
            );
            rows.push(report::Row {
                scenario: s.key.to_string(),
                path: name.to_string(),
                rps: r.rps,
                p50_ms: r.p50_ms,
                p99_ms: r.p99_ms,
                cpu_us: r.cpu_us_per_req,
            });
        }
        println!(
            "  ratios: router/direct {:.2}x (goal >= 0.9x), router/nginx {:.2}x (goal >= 1.0x), p99 router/nginx {:.2}x",
            s.router.rps / s.direct.rps,
            s.router.rps / s.nginx.rps,
            s.router.p99_ms / s.nginx.p99_ms
        );
        if let (Some(r), Some(n)) = (s.router.cpu_us_per_req, s.nginx.cpu_us_per_req) {
            println!(
                "  CPU per request router/nginx {:.2}x (lower is better)",
                r / n
            );
        }
    }
    if let Ok(path) = std::env::var("BENCH_SAVE") {
        report::save(std::path::Path::new(&path), &rows)
            .unwrap_or_else(|e| panic!("BENCH_SAVE={path}: {e}"));
        println!("\nfigures saved to {path}");
    }
    if let Ok(path) = std::env::var("BENCH_BASELINE") {
        let before = report::load(std::path::Path::new(&path))
            .unwrap_or_else(|e| panic!("BENCH_BASELINE={path}: {e}"));
        println!("\nbefore ({path}) vs this run");
        report::print_comparison(&before, &rows);
    }
}
