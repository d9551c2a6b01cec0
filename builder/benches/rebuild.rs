//! Rebuild benchmark on the workspace's Python and Node examples
//! (`examples/python-flask`, `examples/node-web`, both `debian:bookworm`):
//! wall time of a cold build (empty base cache, build cache and artifact
//! store), a rebuild of the same commit, and a rebuild after a one-line app
//! change (base and build cache warm: npm's downloads are reused), with
//! ratios to cold, in one run. Goal: one-line change ≤ 10% of cold; unchanged ≤ 1 s.
//! Plus the cost of isolation itself: 20 `run true` steps on busybox, per step.
//!
//! `BUILDER_BENCH_ONLY=steps` measures only the per-step cost.
//!
//! Before/after: `BUILDER_BENCH_OUT=FILE` writes the figures as JSON;
//! `BUILDER_BENCH_BASELINE=FILE` (figures of an earlier build of the builder,
//! same machine) prints them side by side with ratios. The unprivileged
//! sandbox replaced the old one, so the old figures can only be a recording.
//!
//! Run: `cargo bench -p builder --bench rebuild` (as root; needs the Debian
//! mirror and, for node-web's `npm ci`, the npm registry; mmdebstrap,
//! e2fsprogs and git installed).

#[path = "../tests/common/mod.rs"]
mod common;

use builder::{BaseSpec, BuildPlan, BuildRequest, NullSink, Step};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// (example directory, file that gets the one-line change, comment marker)
const APPS: &[(&str, &str, &str)] = &[
    ("python-flask", "app.py", "#"),
    ("node-web", "server.js", "//"),
];

/// `run true` steps timed for the per-step cost.
const TRIVIAL_STEPS: usize = 20;

fn timed(home: &Path, cache: &Path, repo: &common::Repo) -> (Duration, builder::BuildOutcome) {
    let mut req = BuildRequest::new(home, repo.source(), &NullSink);
    req.base_cache = Some(cache.to_path_buf());
    let start = Instant::now();
    let out = builder::build(&req).unwrap_or_else(|e| panic!("{}: {e}", repo.path().display()));
    (start.elapsed(), out)
}

fn phase(o: &builder::BuildOutcome, name: &str) -> f64 {
    o.phases
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0.0, |(_, d)| d.as_secs_f64())
}

/// Seconds per `run true` step (busybox base, warm base cache).
fn per_step(cache: &Path) -> f64 {
    let work = tempfile::tempdir().expect("temp dir");
    let repo = common::Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("steps", BaseSpec::Busybox);
    plan.steps = (0..TRIVIAL_STEPS)
        .map(|i| Step::Run {
            command: format!("true {i}"),
        })
        .collect();
    let busybox = builder::setup::ensure_busybox(&common::test_cache().join("home"), false)
        .expect("busybox-static");
    let dest = work.path().join("assets/busybox");
    std::fs::create_dir_all(&dest).expect("assets dir");
    std::fs::copy(busybox, dest.join("busybox")).expect("busybox copy");
    let mut req = BuildRequest::new(work.path(), repo.source(), &NullSink);
    req.base_cache = Some(cache.to_path_buf());
    let out = builder::build_plan(&req, plan).unwrap_or_else(|e| panic!("trivial steps: {e}"));
    phase(&out, "steps") / TRIVIAL_STEPS as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    let baseline: BTreeMap<String, f64> = std::env::var("BUILDER_BENCH_BASELINE")
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut figures: BTreeMap<String, f64> = BTreeMap::new();
    println!(
        "{:<14} {:>9} {:>12} {:>9} {:>10} {:>9} {:>10}",
        "app", "cold s", "unchanged s", "ratio", "1-line s", "ratio", "image MiB"
    );
    let only_steps = std::env::var("BUILDER_BENCH_ONLY").is_ok_and(|v| v == "steps");
    for (name, file, comment) in APPS.iter().filter(|_| !only_steps) {
        // Cold: empty base cache, build cache and artifact store.
        let work = tempfile::tempdir().expect("temp dir");
        let (home, cache) = (work.path().join("home"), work.path().join("bases"));
        let repo = common::Repo::example(name);
        let (cold, first) = timed(&home, &cache, &repo);
        let (unchanged, second) = timed(&home, &cache, &repo);
        assert!(second.cache_hit && second.digest == first.digest);
        let path = repo.path().join(file);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(&format!("{comment} one more line\n"));
        common::write_files(repo.path(), &[(file, &text, 0o644)]);
        common::git(repo.path(), &["commit", "-qam", "one line"]);
        let (changed, third) = timed(&home, &cache, &repo);
        assert!(!third.cache_hit && third.digest != first.digest);
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / cold.as_secs_f64();
        println!(
            "{:<14} {:>9.2} {:>12.3} {:>8.2}% {:>10.2} {:>8.2}% {:>10}",
            name,
            cold.as_secs_f64(),
            unchanged.as_secs_f64(),
            pct(unchanged),
            changed.as_secs_f64(),
            pct(changed),
            third.image_bytes >> 20
        );
        let phases = |o: &builder::BuildOutcome| {
            o.phases
                .iter()
                .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("{:<14} cold phases: {}", "", phases(&first));
        println!("{:<14} 1-line phases: {}", "", phases(&third));
        figures.insert(format!("{name} cold"), cold.as_secs_f64());
        figures.insert(
            format!("{name} cold without base"),
            cold.as_secs_f64() - phase(&first, "base"),
        );
        figures.insert(format!("{name} cold steps"), phase(&first, "steps"));
        figures.insert(format!("{name} 1-line"), changed.as_secs_f64());
        figures.insert(format!("{name} 1-line steps"), phase(&third, "steps"));
        println!("{:<14} digest {}", "", first.digest);
    }
    let work = tempfile::tempdir().expect("temp dir");
    let step = per_step(&work.path().join("bases"));
    println!(
        "busybox        one `run true` step: {:.1} ms",
        step * 1000.0
    );
    figures.insert("per run step".into(), step);
    println!("goals: one-line change <= 10% of cold, unchanged <= 1 s");

    if !baseline.is_empty() {
        println!(
            "\n{:<32} {:>10} {:>10} {:>8}",
            "figure (s)", "before", "after", "ratio"
        );
        for (k, after) in &figures {
            if let Some(before) = baseline.get(k) {
                println!(
                    "{k:<32} {before:>10.3} {after:>10.3} {:>7.2}x",
                    after / before
                );
            }
        }
    }
    if let Ok(out) = std::env::var("BUILDER_BENCH_OUT") {
        let json = serde_json::to_vec_pretty(&figures).expect("json");
        std::fs::write(&out, json).unwrap_or_else(|e| panic!("{out}: {e}"));
    }
}
