//! Balancing benchmark: an app on one instance vs the same app on two,
//! through the router, with wrk — one run, side by side, with the ratio.
//!
//! Two kinds of app, each instance on its own runtime thread (as a VM has
//! its own CPU), the router on another:
//! - **trivial**: answers at once, so the figures show what picking an
//!   instance costs the router per request (two should match one);
//! - **serial**: one request at a time, 5 ms each (≈200 req/s per
//!   instance, like a single-worker app in a small VM), so the figures
//!   show what a second instance buys (two should reach about twice one).
//!
//! Beside wrk's figures, the router thread's CPU time per request (from
//! /proc; the root crate's router bench reads it the same way).
//!
//! Needs `wrk` (Debian package `wrk`). Run: `cargo bench -p router --bench
//! balance`. Settings: BENCH_SECONDS (default 10), BENCH_CONNECTIONS
//! (default 32), BENCH_ROUNDS (default 3; one and two alternate, the
//! median of each is shown), BENCH_SCENARIOS (`trivial` or `serial`;
//! default both).

#[allow(dead_code)]
#[path = "../../benches/router/cpu.rs"]
mod cpu;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use router::{RequestRecord, RouteTable, Router, RouterConfig};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An app instance on a runtime thread of its own; `serial` makes it
/// answer one request at a time, each after 5 ms.
fn start_app(serial: bool) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let one_at_a_time = Arc::new(tokio::sync::Semaphore::new(1));
            let page = Bytes::from("hello ".repeat(150));
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                let (page, one_at_a_time) = (page.clone(), one_at_a_time.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let (page, one_at_a_time) = (page.clone(), one_at_a_time.clone());
                        async move {
                            if serial {
                                let _turn = one_at_a_time.acquire().await.unwrap();
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(page)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// The router on a thread of its own, `one.localhost` on `instances[0]`,
/// `two.localhost` on both.
fn start_router(instances: [SocketAddr; 2]) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name(ROUTER_THREAD.into());
    thread
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let table = RouteTable::new("localhost");
                table.try_switch("one", &[], instances[0], 1).unwrap();
                table
                    .try_switch_instances("two", &[], &instances, 1)
                    .unwrap();
                let config = RouterConfig::new("127.0.0.1:0".parse().unwrap());
                let on_request = Arc::new(|r: &RequestRecord<'_>| {
                    std::hint::black_box(r.status);
                });
                let router = Router::serve(config, table, on_request).await.unwrap();
                tx.send(router.local_addr).unwrap();
                std::future::pending::<()>().await;
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

const ROUTER_THREAD: &str = "bp-router";

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
    /// The router thread's CPU time per request, µs.
    cpu_us: f64,
}

fn wrk(router: SocketAddr, host: &str) -> Figures {
    let secs: u64 = env_or("BENCH_SECONDS", 10);
    let conns: u32 = env_or("BENCH_CONNECTIONS", 32);
    let router_cpu = cpu::CpuOf::ThreadsNamed(ROUTER_THREAD);
    let cpu_before = router_cpu.secs();
    let out = Command::new("wrk")
        .args(["-t1", "-c", &conns.to_string(), "-d", &format!("{secs}s")])
        .args(["--latency", "-H", &format!("Host: {host}")])
        .arg(format!("http://{router}/"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrk ({e}): apt-get install wrk"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(String::from)
            .unwrap_or_default()
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap_or(0.0);
    let cpu_us = (router_cpu.secs() - cpu_before) * 1e6 / (rps * secs as f64);
    Figures {
        rps,
        cpu_us,
        p50_ms: millis(&field("50%")),
        p99_ms: millis(&field("99%")),
        errors: text
            .lines()
            .filter(|l| l.contains("errors") || l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn millis(v: &str) -> f64 {
    let at = v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len());
    let n: f64 = v[..at].parse().unwrap_or(f64::NAN);
    match &v[at..] {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// The run with the median throughput, with the median CPU per request.
fn median(mut runs: Vec<Figures>) -> Figures {
    let mut cpu: Vec<f64> = runs.iter().map(|r| r.cpu_us).collect();
    cpu.sort_by(f64::total_cmp);
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs.len() / 2;
    let mut m = runs.swap_remove(mid);
    m.cpu_us = cpu[mid];
    m
}

fn main() {
    // `cargo test --benches` runs this too; only measure when benching.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 3).max(1);
    println!(
        "balance benchmark: wrk -t1 -c{} -d{}s through the router, median of {rounds} alternating rounds",
        env_or("BENCH_CONNECTIONS", 32u32),
        env_or("BENCH_SECONDS", 10u64)
    );
    let only = std::env::var("BENCH_SCENARIOS").unwrap_or_default();
    for (key, name, serial) in [
        ("trivial", "trivial app (what picking costs)", false),
        (
            "serial",
            "serial app, 5 ms per request (what a second instance buys)",
            true,
        ),
    ] {
        if !only.is_empty() && only != key {
            continue;
        }
        let router = start_router([start_app(serial), start_app(serial)]);
        let (mut one, mut two) = (vec![], vec![]);
        for round in 1..=rounds {
            eprintln!("balance bench: {name}: round {round}/{rounds}");
            one.push(wrk(router, "one.localhost"));
            two.push(wrk(router, "two.localhost"));
        }
        let (one, two) = (median(one), median(two));
        println!("\n{name}");
        println!(
            "  {:<12} {:>10} {:>9} {:>9} {:>16}  errors",
            "instances", "req/s", "p50 ms", "p99 ms", "router CPU/req"
        );
        for (label, f) in [("1", &one), ("2", &two)] {
            println!(
                "  {label:<12} {:>10.0} {:>9.2} {:>9.2} {:>13.1} us  {}",
                f.rps, f.p50_ms, f.p99_ms, f.cpu_us, f.errors
            );
        }
        println!(
            "  ratio 2/1: {:.2}x req/s, {:.2}x router CPU per request",
            two.rps / one.rps,
            two.cpu_us / one.cpu_us
        );
    }
}
