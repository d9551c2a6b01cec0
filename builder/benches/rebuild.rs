//! Rebuild benchmark: for a Python (Flask) and a Node app on `debian:bookworm`,
//! the wall time of a cold build (empty base cache and store), a rebuild of
//! the same commit, and a rebuild after a one-line app change, with ratios.
//! Goal: one-line change ≤ 10% of cold; unchanged ≤ 1 s.
//!
//! Run: `cargo bench -p builder --bench rebuild` (as root; needs network for
//! the cold Debian base, mmdebstrap, e2fsprogs, git).

use builder::{BaseSpec, BuildPlan, BuildRequest, NullSink, Source, Step};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct App {
    name: &'static str,
    packages: &'static [&'static str],
    files: &'static [(&'static str, &'static str)],
    check: &'static str,
    changed_file: &'static str,
    run: &'static str,
}

const APPS: &[App] = &[
    App {
        name: "python-flask",
        packages: &["python3", "python3-flask"],
        files: &[
            ("app.py", "from flask import Flask\napp = Flask(__name__)\n\n@app.get('/')\ndef index():\n    return 'hello'\n\nif __name__ == '__main__':\n    app.run(host='0.0.0.0', port=8080)\n"),
            ("requirements.txt", "flask\n"),
        ],
        check: "python3 -m compileall -q .",
        changed_file: "app.py",
        run: "python3 app.py",
    },
    App {
        name: "node",
        packages: &["nodejs"],
        files: &[(
            "server.js",
            "const http = require('http');\nhttp.createServer((req, res) => res.end('hello')).listen(8080);\n",
        )],
        check: "node --check server.js",
        changed_file: "server.js",
        run: "node server.js",
    },
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

fn plan(app: &App) -> BuildPlan {
    let mut p = BuildPlan::new(
        app.name,
        BaseSpec::Debian {
            suite: "bookworm".into(),
        },
    );
    p.packages = app.packages.iter().map(|s| s.to_string()).collect();
    p.steps = vec![
        Step::Copy {
            from: ".".into(),
            to: "/app".into(),
        },
        Step::Workdir {
            path: "/app".into(),
        },
        Step::Run {
            command: app.check.into(),
        },
    ];
    p.web = Some(builder::plan::Process {
        name: "web".into(),
        run: app.run.into(),
    });
    p.port = Some(8080);
    p
}

fn timed(home: &Path, cache: &Path, repo: &Path, app: &App) -> (Duration, builder::BuildOutcome) {
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
    let out = builder::build_plan(&req, plan(app)).unwrap_or_else(|e| panic!("{}: {e}", app.name));
    (start.elapsed(), out)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probing
    }
    println!(
        "{:<14} {:>10} {:>12} {:>10} {:>12} {:>10} {:>12}",
        "app", "cold s", "unchanged s", "ratio", "1-line s", "ratio", "image MiB"
    );
    for app in APPS {
        let work = tempfile::tempdir().expect("temp dir");
        let (home, cache, repo) = (
            work.path().join("home"),
            work.path().join("bases"),
            work.path().join("repo"),
        );
        std::fs::create_dir_all(&repo).expect("repo dir");
        git(&repo, &["init", "-q", "-b", "main"]);
        for (name, content) in app.files {
            std::fs::write(repo.join(name), content).expect("write");
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "init"]);

        let (cold, first) = timed(&home, &cache, &repo, app);
        let (unchanged, second) = timed(&home, &cache, &repo, app);
        assert!(second.cache_hit && second.digest == first.digest);
        let path = repo.join(app.changed_file);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(
            "// one more line\n"
                .replace(
                    "//",
                    if app.name.starts_with("python") {
                        "#"
                    } else {
                        "//"
                    },
                )
                .as_str(),
        );
        std::fs::write(&path, text).expect("write");
        git(&repo, &["commit", "-qam", "one line"]);
        let (changed, third) = timed(&home, &cache, &repo, app);
        assert!(!third.cache_hit && third.digest != first.digest);
        println!(
            "{:<14} {:>10.2} {:>12.3} {:>9.2}% {:>12.2} {:>9.2}% {:>12}",
            app.name,
            cold.as_secs_f64(),
            unchanged.as_secs_f64(),
            100.0 * unchanged.as_secs_f64() / cold.as_secs_f64(),
            changed.as_secs_f64(),
            100.0 * changed.as_secs_f64() / cold.as_secs_f64(),
            third.image_bytes >> 20
        );
        let phases: Vec<String> = third
            .phases
            .iter()
            .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
            .collect();
        println!("{:<14} one-line rebuild phases: {}", "", phases.join(", "));
    }
    println!("goals: one-line change <= 10% of cold, unchanged <= 1 s");
}
