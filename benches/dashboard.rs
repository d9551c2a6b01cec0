//! Dashboard benchmark: many Server-Sent Events followers of one loud app,
//! side by side with the same number of `ssh … logs -f` followers, and
//! page latency with 50 apps.
//!
//! The daemon is `byteport up`'s own `daemon::start` (git server, router,
//! dashboard, platform) in a child process — this binary run again with
//! `BENCH_DASHBOARD_CHILD=1` — plus a task that writes the app's log lines
//! (`seq=N t=MICROS`) into its event stream at a fixed rate, exactly as a
//! VM's output arrives. The parent runs the followers and reads the
//! child's CPU time and RSS from /proc. No VM is booted. Both kinds of
//! follower are external C clients (`curl -N` for SSE, OpenSSH's `ssh`
//! for `logs -f`), each read line by line by a thread of this process.
//!
//! Run: `cargo bench --bench dashboard`. `BENCH_FOLLOWERS` (200),
//! `BENCH_RATE` lines/s (1000), `BENCH_SECS` per path (30).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

use testvm::free_port;

// ---------------------------------------------------------------- child --

fn child_main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = byteport::config::Config::from_env(None).unwrap();
        let services = byteport::daemon::start(&config).await.unwrap();
        let store = services.store.clone();
        let platform = services.platform.clone();
        store
            .add_user("alice", Some("bench-password"))
            .await
            .unwrap();
        let pubkey = std::fs::read_to_string(std::env::var("BENCH_PUBKEY").unwrap()).unwrap();
        store.add_key("alice", &pubkey).await.unwrap();
        store.create_app("loud", "alice").await.unwrap();
        // 50 apps with some history for the page latency.
        for i in 0..50 {
            let app = format!("app-{i:02}");
            store.create_app(&app, "alice").await.unwrap();
            for n in 0..5 {
                let d = store
                    .start_deploy(
                        &app,
                        &format!("{n:040}"),
                        "refs/heads/main",
                        Some("alice"),
                        None,
                    )
                    .await
                    .unwrap();
                store
                    .set_deploy_artifact(&app, d.number, "digest")
                    .await
                    .unwrap();
                store.mark_live(&app, d.number).await.unwrap();
            }
            for k in 0..300 {
                platform.events.emit(
                    &app,
                    Some(5),
                    None,
                    platform::EventKind::App {
                        process: "web".into(),
                        stream: platform::events::OutputStream::Out,
                        text: format!("\u{1b}[32mline {k}\u{1b}[0m of {app} <b>html</b>"),
                    },
                );
            }
        }
        let (_, token) = store
            .create_token("alice", "bench", platform::store::TokenScope::Api)
            .await
            .unwrap();
        let session = store
            .create_session("alice", 3_600_000, None)
            .await
            .unwrap();
        println!(
            "READY {} {} {} {}",
            services.dashboard.local_addr().port(),
            config.ssh_addr.port(),
            token,
            session.token
        );
        std::io::stdout().flush().unwrap();
        let rate = env_num("BENCH_RATE", 1000);
        let emitting = Arc::new(AtomicBool::new(false));
        let flag = emitting.clone();
        let events = platform.events.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq = 0u64;
            loop {
                tick.tick().await;
                if !flag.load(Ordering::Relaxed) {
                    continue;
                }
                seq += 1;
                events.emit(
                    "loud",
                    Some(1),
                    None,
                    platform::EventKind::App {
                        process: "web".into(),
                        stream: platform::events::OutputStream::Out,
                        text: format!("seq={seq} t={}", now_micros()),
                    },
                );
            }
        });
        // Commands from the parent on stdin: `emit`, `pause`, `exit`.
        let mut lines =
            tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                "emit" => emitting.store(true, Ordering::Relaxed),
                "pause" => emitting.store(false, Ordering::Relaxed),
                _ => break,
            }
        }
        services.dashboard.shutdown().await;
    });
}

// --------------------------------------------------------------- parent --

struct Server {
    child: Child,
    http: u16,
    ssh: u16,
    token: String,
    session: String,
}

impl Server {
    fn say(&mut self, what: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
    }

    /// CPU seconds (user + system) the daemon used so far.
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
}

/// What one follower saw.
#[derive(Default, Clone)]
struct Seen {
    first: Option<u64>,
    last: u64,
    lines: u64,
    skipped: u64,
    /// Delivery delays, µs (kept per follower: a shared lock would be
    /// the bottleneck at 200 × 1000 lines/s).
    delays: Vec<u32>,
}

impl Seen {
    fn line(&mut self, text: &str) {
        let Some(seq) = field(text, "seq=") else {
            return;
        };
        let Some(t) = field(text, "t=") else { return };
        self.first.get_or_insert(seq);
        self.last = seq;
        self.lines += 1;
        let delay = now_micros().saturating_sub(t);
        self.delays.push(delay.min(u32::MAX as u64) as u32);
    }

    /// Hands the delays over and records the follower.
    fn finish(mut self, seen: &Mutex<Vec<Seen>>, delays: &Mutex<Vec<u32>>) {
        delays.lock().unwrap().append(&mut self.delays);
        seen.lock().unwrap().push(self);
    }
}

fn field(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Where followers report: a stop flag, what each saw, every delay (µs).
struct Sinks {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    delays: Arc<Mutex<Vec<u32>>>,
}

/// Waits for the followers to end.
type Finish<'a> = Box<dyn FnOnce() + 'a>;

struct Outcome {
    followers: Vec<Seen>,
    delays: Vec<u32>,
    cpu_cores: f64,
    rss_max_mib: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs `followers` for `secs` while the daemon emits, measuring it.
fn measure<'a>(server: &mut Server, secs: u64, run: impl FnOnce(Sinks) -> Finish<'a>) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let delays = Arc::new(Mutex::new(Vec::with_capacity(8_000_000)));
    let finish = run(Sinks {
        stop: stop.clone(),
        seen: seen.clone(),
        delays: delays.clone(),
    });
    let cpu0 = server.cpu_secs();
    let t0 = Instant::now();
    server.say("emit");
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(secs) {
        rss_max = rss_max.max(server.rss_mib());
        std::thread::sleep(Duration::from_millis(250));
    }
    server.say("pause");
    let cpu = (server.cpu_secs() - cpu0) / t0.elapsed().as_secs_f64();
    // Let the followers drain what is in flight.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    finish();
    let mut delays = std::mem::take(&mut *delays.lock().unwrap());
    delays.sort_unstable();
    let followers = seen.lock().unwrap().clone();
    Outcome {
        followers,
        delays,
        cpu_cores: cpu,
        rss_max_mib: rss_max,
    }
}

/// `n` follower processes (`make` builds each command line), each read
/// line by line on a thread of its own; `skipped` recognises the line that
/// says how many lines the daemon dropped for a slow reader.
fn process_followers(
    n: usize,
    make: impl Fn() -> Command,
    skipped: fn(&str) -> Option<u64>,
) -> impl FnOnce(Sinks) -> Finish<'static> {
    move |Sinks { stop, seen, delays }| {
        let mut children = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..n {
            let mut c = make()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("follower process");
            let out = c.stdout.take().unwrap();
            children.push(c);
            let (stop, seen, delays) = (stop.clone(), seen.clone(), delays.clone());
            readers.push(std::thread::spawn(move || {
                let mut s = Seen::default();
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match skipped(&line) {
                        Some(k) => s.skipped += k,
                        None => s.line(&line),
                    }
                }
                s.finish(&seen, &delays);
            }));
        }
        Box::new(move || {
            for mut c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
            for r in readers {
                let _ = r.join();
            }
        })
    }
}

/// SSE followers: `curl -N` on the API's event stream (one JSON event per
/// message; `event: skipped` + `data: {"skipped":N}` when the daemon drops).
fn sse_followers(http: u16, token: String, n: usize) -> impl FnOnce(Sinks) -> Finish<'static> {
    let url = format!("http://127.0.0.1:{http}/api/v1/apps/loud/events");
    process_followers(
        n,
        move || {
            let mut c = Command::new("curl");
            c.args(["-sN", "-H", &format!("Authorization: Bearer {token}"), &url]);
            c
        },
        |line| {
            line.contains("\"skipped\":")
                .then(|| field(line, "\"skipped\":").unwrap_or(0))
        },
    )
}

/// `ssh … logs loud -n 0 -f` followers (stock OpenSSH against gitd).
fn ssh_followers(
    port: u16,
    key: std::path::PathBuf,
    n: usize,
) -> impl FnOnce(Sinks) -> Finish<'static> {
    process_followers(
        n,
        move || {
            let mut c = Command::new("ssh");
            c.args([
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-i",
            ])
            .arg(&key)
            .args([
                "-p",
                &port.to_string(),
                "git@127.0.0.1",
                "logs loud -n 0 -f",
            ]);
            c
        },
        |line| {
            line.contains("lines skipped").then(|| {
                line.split_whitespace()
                    .find_map(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
            })
        },
    )
}

fn report(name: &str, o: &Outcome, rate: u64) {
    let n = o.followers.len();
    let complete = o
        .followers
        .iter()
        .filter(|s| s.first.is_some_and(|f| s.lines + s.skipped > s.last - f))
        .count();
    let delivered: u64 = o.followers.iter().map(|s| s.lines).sum();
    let expected: u64 = o
        .followers
        .iter()
        .map(|s| s.first.map_or(0, |f| s.last - f + 1))
        .sum();
    let skipped: u64 = o.followers.iter().map(|s| s.skipped).sum();
    let unaccounted = expected.saturating_sub(delivered + skipped);
    println!(
        "{name:<14} followers {n:>4}  lines {delivered:>9} of {expected:>9} ({:>6.2}%)  skipped (told) {skipped:>8}  lost silently {unaccounted:>6}  complete-or-told {complete}/{n}  delay p50 {:>8.1} ms  p99 {:>8.1} ms  daemon CPU {:>5.2} cores  RSS max {:>6.1} MiB  ({rate} lines/s)",
        if expected > 0 { delivered as f64 * 100.0 / expected as f64 } else { 0.0 },
        percentile(&o.delays, 0.5),
        percentile(&o.delays, 0.99),
        o.cpu_cores,
        o.rss_max_mib,
    );
}

fn page_latency(rt: &tokio::runtime::Runtime, server: &Server) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    for path in [
        "/apps",
        "/apps/app-17",
        "/api/v1/apps",
        "/api/v1/apps/app-17",
    ] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let req = hyper::Request::get(format!("http://127.0.0.1:{}{path}", server.http))
                .header("cookie", format!("bp_session={}", server.session))
                .body(Empty::new())
                .unwrap();
            let t = Instant::now();
            let body = rt.block_on(async {
                let res = client.request(req).await.unwrap();
                assert!(res.status().is_success(), "{path}: {}", res.status());
                res.into_body().collect().await.unwrap().to_bytes()
            });
            times.push(t.elapsed().as_micros() as u32);
            assert!(!body.is_empty());
        }
        times.sort_unstable();
        println!(
            "page {path:<22} 50 apps  p50 {:>7.2} ms  p99 {:>7.2} ms  (200 sequential requests)",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}

fn main() {
    if std::env::var_os("BENCH_DASHBOARD_CHILD").is_some() {
        return child_main();
    }
    // `cargo bench` passes --bench; nothing else to parse.
    let followers = env_num("BENCH_FOLLOWERS", 200) as usize;
    let rate = env_num("BENCH_RATE", 1000);
    let secs = env_num("BENCH_SECS", 30);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    support::assets::guest_assets();
    let cached = support::assets::cache_dir().join("home");
    std::os::unix::fs::symlink(cached.join("kernels"), home.join("kernels")).unwrap();
    std::os::unix::fs::symlink(cached.join("assets"), home.join("assets")).unwrap();
    let key = support::daemon::keygen(dir.path(), "bench");
    let n = (followers + 50).to_string();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_DASHBOARD_CHILD", "1")
        .env("BENCH_PUBKEY", key.with_extension("pub"))
        .env("BYTEPORT_HOME", &home)
        .env("BYTEPORT_SSH_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("BYTEPORT_ROUTER_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("BYTEPORT_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("BYTEPORT_DRIVER", "qemu")
        .env("BYTEPORT_SSH_MAX_CONNECTIONS", &n)
        .env("BYTEPORT_SSH_MAX_STARTUPS", format!("{n}:100:{n}"))
        .env("BYTEPORT_SSH_MAX_STARTUPS_PER_SOURCE", &n)
        .env("BYTEPORT_SSH_HANDSHAKE_TIMEOUT_SECS", "120")
        .env("BYTEPORT_SSH_LOGIN_TIMEOUT_SECS", "120")
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let w: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"READY"), "child said: {ready}");
    let mut server = Server {
        http: w[1].parse().unwrap(),
        ssh: w[2].parse().unwrap(),
        token: w[3].to_string(),
        session: w[4].to_string(),
        child,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("dashboard bench: {followers} followers of one app at {rate} lines/s for {secs} s per path; RSS idle {:.1} MiB", server.rss_mib());
    page_latency(&rt, &server);
    let run = sse_followers(server.http, server.token.clone(), followers);
    let sse = measure(&mut server, secs, run);
    report("SSE (API)", &sse, rate);
    std::thread::sleep(Duration::from_secs(2));
    let run = ssh_followers(server.ssh, key.clone(), followers);
    let ssh = measure(&mut server, secs, run);
    report("ssh logs -f", &ssh, rate);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "ratio SSE / ssh: delay p99 {:.2}x, daemon CPU {:.2}x",
        ratio(percentile(&sse.delays, 0.99), percentile(&ssh.delays, 0.99)),
        ratio(sse.cpu_cores, ssh.cpu_cores)
    );
    server.say("exit");
    let _ = server.child.wait();
}
