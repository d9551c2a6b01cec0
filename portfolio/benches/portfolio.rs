//! `cargo bench -p portfolio`: figures, not pass/fail.
//!
//! 1. live → draft ready, per phase, for the examples' static site served
//!    on loopback (cold browser, then warm), through `Portfolio::refresh`
//!    with the offline drafter and a SQLite store;
//! 2. Chromium's encoders for the same desktop view: PNG vs WebP qualities
//!    (size and capture time);
//! 3. export of a 100-project site: time, bytes, index page weight;
//! 4. Chromium's peak memory (PSS, browser and all its children) during 1–2.
//!
//! `PORTFOLIO_BENCH_EXPORT=DIR` also writes the 100-project site to DIR.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use base64::Engine;
use headless_chrome::protocol::cdp::Page;
use portfolio::capture::{CaptureOutcome, ImageStore};
use portfolio::review::Review;
use portfolio::{Portfolio, PortfolioConfig, RefreshRequest};

fn ms(d: Duration) -> String {
    format!("{:>8.1} ms", d.as_secs_f64() * 1000.0)
}

/// Proportional set size (KiB; shared pages split between the processes
/// sharing them, so the sum is not inflated) of every process below `root`
/// whose name mentions chrom.
fn chromium_rss_kib(root: u32) -> u64 {
    let mut parent_of = std::collections::HashMap::new();
    let mut rss = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l[k.len()..].trim().to_string())
        };
        let ppid: u32 = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
        parent_of.insert(pid, ppid);
        if field("Name:").is_some_and(|n| n.contains("chrom")) {
            let rollup =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            let kib = rollup
                .lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0u64);
            rss.insert(pid, kib);
        }
    }
    rss.iter()
        .filter(|(pid, _)| {
            let mut p = **pid;
            for _ in 0..64 {
                match parent_of.get(&p) {
                    Some(&pp) if pp == root => return true,
                    Some(&pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .map(|(_, kib)| kib)
        .sum()
}

fn static_site_router() -> axum::Router {
    let dir = support::static_site_dir();
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let css = std::fs::read_to_string(dir.join("style.css")).unwrap();
    axum::Router::new()
        .route("/", get(move || async move { Html(index) }))
        .route(
            "/style.css",
            get(move || async move { ([(header::CONTENT_TYPE, "text/css")], css) }),
        )
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let addr = support::serve(static_site_router()).await;

    // The example's repository, as pushed.
    let example = support::static_site_dir().join("..");
    let mut files = Vec::new();
    for rel in [
        "Byteport",
        "README.md",
        "public/index.html",
        "public/style.css",
        "public/healthz.txt",
    ] {
        files.push((rel, std::fs::read(example.join(rel)).unwrap()));
    }
    let (repo, commit) = support::bare_repo(
        dir.path(),
        &[("alice@example.invalid", 1_767_225_600, files)],
    );

    let store = support::SqliteStore::open(&dir.path().join("state.db")).await;
    let mut config = PortfolioConfig::new(dir.path().join("images"));
    config.scratch_dir = Some(dir.path().join("scratch"));
    let portfolio = Portfolio::new(config, store).unwrap();

    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        let me = std::process::id();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(chromium_rss_kib(me), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    println!("== live → draft ready: examples/static-site on loopback (offline drafter) ==");
    println!(
        "{:<6} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "run", "facts", "browser", "page load", "captures", "encode", "draft", "store", "total"
    );
    for run in 1..=4 {
        let started = Instant::now();
        let out = portfolio
            .refresh(RefreshRequest {
                app: "static-site".into(),
                repo_path: repo.clone(),
                commit: commit.clone(),
                live_url: Some(format!("http://{addr}")),
                repository_url: None,
                deploy: Some(run),
            })
            .await
            .unwrap();
        let total = started.elapsed();
        let t = out.timings;
        let v = out.version.unwrap();
        assert!(
            matches!(v.capture, CaptureOutcome::Captured { .. }),
            "{:?}",
            v.capture
        );
        println!(
            "{:<6} {} {} {} {} {} {} {} {}",
            if run == 1 { "cold" } else { "warm" },
            ms(t.facts),
            ms(t.browser_start),
            ms(t.page_load),
            ms(t.captures),
            ms(t.encode_store),
            ms(t.draft),
            ms(t.store),
            ms(total)
        );
        if run == 1 {
            let s = v.capture.shots().unwrap();
            println!(
                "   images (WebP from Chromium): desktop {} B, mobile {} B, full page {} B, og {} B, thumbnail {} B",
                s.desktop.bytes, s.mobile.bytes, s.full_page.bytes, s.open_graph.bytes, s.thumbnail.bytes
            );
        }
    }
    println!("   (page load includes the manifest's `wait 1s`)");

    println!("\n== Chromium's encoders, desktop 1280×800 of the same page ==");
    let shooter = portfolio.screenshotter().unwrap();
    let (browser, _) = shooter.host().browser().unwrap();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&format!("http://{addr}/"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    let formats: [(&str, Page::CaptureScreenshotFormatOption, Option<u32>); 5] = [
        ("png", Page::CaptureScreenshotFormatOption::Png, None),
        (
            "webp q60",
            Page::CaptureScreenshotFormatOption::Webp,
            Some(60),
        ),
        (
            "webp q80",
            Page::CaptureScreenshotFormatOption::Webp,
            Some(80),
        ),
        (
            "webp q100",
            Page::CaptureScreenshotFormatOption::Webp,
            Some(100),
        ),
        (
            "jpeg q80",
            Page::CaptureScreenshotFormatOption::Jpeg,
            Some(80),
        ),
    ];
    for (name, format, quality) in formats {
        let started = Instant::now();
        let data = tab
            .call_method(Page::CaptureScreenshot {
                format: Some(format),
                quality,
                clip: None,
                from_surface: Some(true),
                capture_beyond_viewport: Some(false),
                optimize_for_speed: None,
            })
            .unwrap()
            .data;
        let took = started.elapsed();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap()
            .len();
        println!("{name:<10} {bytes:>8} B  {}", ms(took));
    }
    let _ = tab.close(false);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    println!(
        "\n== Chromium peak memory: PSS of the browser and all its children ==\n{} MiB",
        peak.load(Ordering::Relaxed) / 1024
    );

    println!("\n== export of a 100-project site ==");
    let review: &Review<_> = portfolio.review();
    let base = review.show("static-site").await.unwrap().remove(0);
    let images = ImageStore::new(dir.path().join("images")).unwrap();
    let store2 = support::SqliteStore::open(&dir.path().join("many.db")).await;
    let many = Review::new(store2);
    for i in 0..100 {
        let mut facts = base.facts.clone();
        facts.app = format!("project-{i:03}");
        facts.manifest.title = format!("Project {i}");
        let drafted = portfolio::draft::OfflineDrafter.draft_sync(&facts);
        many.record_draft(facts, drafted, base.capture.clone(), None)
            .await
            .unwrap();
        many.approve(&format!("project-{i:03}"), "alice", None)
            .await
            .unwrap();
    }
    let published = many.published().await.unwrap();
    let profile = portfolio::site::Profile {
        name: "Alice Example".into(),
        bio: "I build small web apps.".into(),
        links: vec![],
        site_url: "https://alice.example.invalid/".into(),
        site_title: None,
    };
    let started = Instant::now();
    let site = portfolio::site::build(&profile, &published, &images).unwrap();
    let built = started.elapsed();
    let out = dir.path().join("export");
    let started = Instant::now();
    let stats = site.export(&out).unwrap();
    let exported = started.elapsed();
    if let Some(keep) = std::env::var_os("PORTFOLIO_BENCH_EXPORT") {
        // To look at the 100-project site afterwards.
        site.export(std::path::Path::new(&keep)).unwrap();
        println!("also exported to {}", std::path::Path::new(&keep).display());
    }
    let index = std::fs::metadata(out.join("index.html")).unwrap().len();
    let css = std::fs::metadata(out.join("style.css")).unwrap().len();
    let thumb = base.capture.shots().unwrap().thumbnail.bytes;
    let cards = portfolio::site::PROJECTS_PER_PAGE as u64;
    println!(
        "build {}  export {}  files {}  bytes {} ({} KiB)",
        ms(built),
        ms(exported),
        stats.files,
        stats.bytes,
        stats.bytes / 1024
    );
    println!(
        "index page weight: html {index} B + css {css} B + {cards} thumbnails × {thumb} B = {} KiB (goal ≤ 200 KB; {} cards per page, {} pages)",
        (index + css + cards * thumb) / 1024,
        cards,
        100usize.div_ceil(portfolio::site::PROJECTS_PER_PAGE)
    );
}
