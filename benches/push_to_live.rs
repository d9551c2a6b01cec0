//! Push-to-live benchmark: `git push` of each example to `byteport up`
//! (stock git over OpenSSH, real builds, real VMs), first push and then a
//! one-line change, with the time of every phase the deploy records
//! (manifest, build, boot, health, switch) and the rest of the push
//! (SSH, pack transfer, refs) — all from one run, with the driver named.
//!
//! Run: `cargo bench --bench push_to_live` (root, as the tests; Debian
//! bases are cached in $BYTEPORT_TEST_CACHE/bases, so only the very first
//! run pays for mmdebstrap). `BENCH_EXAMPLES=static-site,worker` picks
//! examples.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Instant;

use support::daemon::{git, Daemon};

/// (example, file changed by one line, the line).
const EXAMPLES: [(&str, &str, &str); 4] = [
    (
        "static-site",
        "public/index.html",
        "<!-- one-line change -->",
    ),
    ("python-flask", "app.py", "# one-line change"),
    ("node-web", "server.js", "// one-line change"),
    ("worker", "heartbeat.sh", "# one-line change"),
];

const PHASES: [&str; 5] = ["manifest", "build", "boot", "health", "switch"];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "node_modules" {
                copy_dir(&e.path(), &target);
            }
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

struct Row {
    example: String,
    push: &'static str,
    wall_s: f64,
    phases_ms: Vec<Option<i64>>,
}

fn push(d: &Daemon, work: &Path, ssh: &str, app: &str, which: &'static str) -> Row {
    let started = Instant::now();
    let out = git(work, &["push", "-q", "byteport", "main"], Some(ssh));
    let wall_s = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "push of {app} failed:\n{}{}\n--- daemon ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let json = d.cli(&["deploys", app, "--limit", "1", "--json"]);
    let deploys: serde_json::Value = serde_json::from_slice(&json.stdout).expect("deploys --json");
    let timings = &deploys[0]["timings"];
    Row {
        example: app.to_string(),
        push: which,
        wall_s,
        phases_ms: PHASES.iter().map(|p| timings[*p].as_i64()).collect(),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let wanted: Option<Vec<String>> = std::env::var("BENCH_EXAMPLES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    // The daemon shares the Debian base cache with the tests.
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "bench");
    let ssh = d.ssh_command(&key);
    let driver = String::from_utf8_lossy(&d.cli(&["doctor"]).stdout)
        .lines()
        .find(|l| l.starts_with("runtime driver:"))
        .unwrap_or("runtime driver: unknown")
        .trim()
        .to_string();
    let examples_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut rows = Vec::new();
    for (example, file, line) in EXAMPLES {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|x| x == example))
        {
            continue;
        }
        let work = tmp.path().join(example);
        copy_dir(&examples_dir.join(example), &work);
        git(&work, &["init", "-q"], None);
        git(&work, &["add", "-A"], None);
        git(&work, &["commit", "-qm", "first"], None);
        git(
            &work,
            &["remote", "add", "byteport", &d.remote(example)],
            None,
        );
        eprintln!("push-to-live: {example} (first push) ...");
        rows.push(push(&d, &work, &ssh, example, "first"));
        let path = work.join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\n{line}\n"));
        std::fs::write(&path, text).unwrap();
        git(&work, &["commit", "-qam", "one-line change"], None);
        eprintln!("push-to-live: {example} (one-line change) ...");
        rows.push(push(&d, &work, &ssh, example, "one-line"));
    }

    println!("push-to-live benchmark, {driver}");
    print!("{:<14} {:<9} {:>8}", "example", "push", "wall s");
    for p in PHASES {
        print!(" {p:>9}");
    }
    println!(" {:>10}  {:>9}", "ssh+pack", "build %");
    for r in &rows {
        print!("{:<14} {:<9} {:>8.1}", r.example, r.push, r.wall_s);
        for ms in &r.phases_ms {
            match ms {
                Some(ms) => print!(" {:>8.1}s", *ms as f64 / 1000.0),
                None => print!(" {:>9}", "-"),
            }
        }
        let phases: i64 = r.phases_ms.iter().flatten().sum();
        let rest = r.wall_s - phases as f64 / 1000.0;
        let build = r.phases_ms[1].unwrap_or(0) as f64 / 1000.0;
        println!(" {rest:>9.1}s  {:>8.0}%", 100.0 * build / r.wall_s);
    }
    for pair in rows.chunks(2) {
        if let [first, second] = pair {
            println!(
                "{}: one-line change pushes live in {:.2}x the first push's time",
                first.example,
                second.wall_s / first.wall_s
            );
        }
    }
}
