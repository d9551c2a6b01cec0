//! Rebuild benchmark on the workspace's Python and Node examples
//! (`examples/python-flask`, `examples/node-web`, both `debian:bookworm`):
//! wall time of a cold build (empty base cache and artifact store), a rebuild
//! of the same commit, and a rebuild after a one-line app change, with ratios
//! to cold, in one run. Goal: one-line change ≤ 10% of cold; unchanged ≤ 1 s.
//!
//! Run: `cargo bench -p builder --bench rebuild` (as root; needs the Debian
//! mirror and, for node-web's `npm ci`, the npm registry; mmdebstrap,
//! e2fsprogs and git installed).

use builder::{BuildRequest, NullSink, Source};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (example directory, file that gets the one-line change, comment marker)
const APPS: &[(&str, &str, &str)] = &[
    ("python-flask", "app.py", "#"),
    ("node-web", "server.js", "//"),
];

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?} failed");
}

fn timed(home: &Path, cache: &Path, repo: &Path) -> (Duration, builder::BuildOutcome) {
    let mut req = BuildRequest::new(
        home,
        Source::Git {
            repo: repo.to_path_buf(),
            rev: "HEAD".into(),
        },
        &NullSink,
    );
    req.base_cache = Some(cache.to_path_buf());
    let start = Instant::now();
    let out = builder::build(&req).unwrap_or_else(|e| panic!("{}: {e}", repo.display()));
    (start.elapsed(), out)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    println!(
        "{:<14} {:>9} {:>12} {:>9} {:>10} {:>9} {:>10}",
        "app", "cold s", "unchanged s", "ratio", "1-line s", "ratio", "image MiB"
    );
    for (name, file, comment) in APPS {
        let src = examples.join(name);
        assert!(
            src.join("Byteport").is_file(),
            "{} must exist (the example apps)",
            src.display()
        );
        let work = tempfile::tempdir().expect("temp dir");
        let (home, cache, repo) = (
            work.path().join("home"),
            work.path().join("bases"),
            work.path().join("repo"),
        );
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&repo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(copied, "copying {}", src.display());
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);

        let (cold, first) = timed(&home, &cache, &repo);
        let (unchanged, second) = timed(&home, &cache, &repo);
        assert!(second.cache_hit && second.digest == first.digest);
        let path = repo.join(file);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(&format!("{comment} one more line\n"));
        std::fs::write(&path, text).expect("write");
        git(&repo, &["commit", "-qam", "one line"]);
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
