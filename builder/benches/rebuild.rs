//! Rebuild benchmark on the workspace's Python and Node examples
//! (`examples/python-flask`, `examples/node-web`, both `debian:bookworm`):
//! wall time of a cold build (empty base cache, build cache and artifact
//! store), a rebuild of the same commit, and a rebuild after a one-line app
//! change (base and build cache warm: npm's downloads are reused), with
//! ratios to cold, in one run. Goal: one-line change ≤ 10% of cold; unchanged ≤ 1 s.
//!
//! Run: `cargo bench -p builder --bench rebuild` (as root; needs the Debian
//! mirror and, for node-web's `npm ci`, the npm registry; mmdebstrap,
//! e2fsprogs and git installed).

#[path = "../tests/common/mod.rs"]
mod common;

use builder::{BuildRequest, NullSink};
use std::path::Path;
use std::time::{Duration, Instant};

/// (example directory, file that gets the one-line change, comment marker)
const APPS: &[(&str, &str, &str)] = &[
    ("python-flask", "app.py", "#"),
    ("node-web", "server.js", "//"),
];

fn timed(home: &Path, cache: &Path, repo: &common::Repo) -> (Duration, builder::BuildOutcome) {
    let mut req = BuildRequest::new(home, repo.source(), &NullSink);
    req.base_cache = Some(cache.to_path_buf());
    let start = Instant::now();
    let out = builder::build(&req).unwrap_or_else(|e| panic!("{}: {e}", repo.path().display()));
    (start.elapsed(), out)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    println!(
        "{:<14} {:>9} {:>12} {:>9} {:>10} {:>9} {:>10}",
        "app", "cold s", "unchanged s", "ratio", "1-line s", "ratio", "image MiB"
    );
    for (name, file, comment) in APPS {
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
    }
    println!("goals: one-line change <= 10% of cold, unchanged <= 1 s");
}
