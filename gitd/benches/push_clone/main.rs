//! Push and clone benchmark: gitd (BytePort's in-process SSH git server)
//! against OpenSSH `sshd` running `git-receive-pack` / `git-upload-pack`
//! (how Dokku and Piku serve git), same client (stock git + OpenSSH ssh),
//! same machine, one run, side by side, with ratios and the servers' peak
//! memory during the push.
//!
//! Repositories: a generated history (`GITD_BENCH_COMMITS`, default 5000
//! commits with realistic deltas), this project's own history, and any
//! real repositories listed in `GITD_BENCH_REPOS` (colon-separated paths,
//! e.g. a mirror of serde-rs/serde). `GITD_BENCH_RUNS` (default 5) timed
//! runs per case, alternating between the servers, median reported. `GITD_BENCH_KEEP=1` keeps the work
//! directory (repositories, server homes) for profiling.
//!
//! Run: `cargo bench -p gitd --bench push_clone`.

mod rss;
mod servers;
mod synth;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use servers::Server;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use testvm::git::git;

fn ok(o: std::process::Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Key exchange and cipher, the same for both servers so the comparison
/// is about the servers (OpenSSH 9's default post-quantum key exchange
/// costs about 0.1 s of CPU per connection here; russh does not offer it).
const CRYPTO: &str = "-o KexAlgorithms=curve25519-sha256 -o Ciphers=chacha20-poly1305@openssh.com";

fn ssh_command(key: &Path, port: u16) -> String {
    format!(
        "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR {CRYPTO} -i {} -p {port}",
        key.display()
    )
}

/// One server's figures for one repository.
#[derive(Default, Clone, Copy)]
struct Figures {
    push: Duration,
    clone: Duration,
    push_peak: rss::Peak,
    push_hwm_kib: Option<u64>,
    idle_kib: u64,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn refs(dir: &Path) -> String {
    ok(
        git(
            dir,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/heads",
                "refs/tags",
            ],
            None,
        ),
        "for-each-ref",
    )
}

fn same_refs(a: &Path, b: &Path, what: &str) {
    let (ra, rb) = (refs(a), refs(b));
    if ra != rb {
        let first = ra.lines().zip(rb.lines()).find(|(x, y)| x != y);
        panic!(
            "{what}: refs differ ({} vs {} refs; first difference {first:?})",
            ra.lines().count(),
            rb.lines().count()
        );
    }
}

/// Pushes `source` (all branches and tags) to a fresh repository `name`.
fn push(server: &Server, ssh: &str, source: &Path, name: &str) -> Duration {
    let url = server.url(name);
    let started = Instant::now();
    ok(
        git(
            source,
            &[
                "push",
                "-q",
                &url,
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
            Some(ssh),
        ),
        "push",
    );
    let took = started.elapsed();
    same_refs(&server.repo_dir(name), source, "push");
    took
}

fn clone(server: &Server, ssh: &str, name: &str, into: &Path, source: &Path) -> Duration {
    let _ = std::fs::remove_dir_all(into);
    let started = Instant::now();
    ok(
        git(
            into.parent().unwrap(),
            &[
                "clone",
                "-q",
                "--bare",
                &server.url(name),
                into.to_str().unwrap(),
            ],
            Some(ssh),
        ),
        "clone",
    );
    let took = started.elapsed();
    same_refs(into, source, "clone");
    took
}

/// Measures both servers on one repository. Runs alternate between the
/// servers, so load from elsewhere on the machine hits both alike.
fn measure_pair(
    servers: [&Server; 2],
    key: &Path,
    source: &Path,
    runs: usize,
    tag: &str,
    work: &Path,
) -> [Figures; 2] {
    let ssh = servers.map(|s| ssh_command(key, s.port));
    let mut pushes = [vec![], vec![]];
    let mut clones = [vec![], vec![]];
    for k in 0..2 {
        // Warm-up: page cache, first connection.
        push(servers[k], &ssh[k], source, &format!("{tag}-warm"));
    }
    for i in 0..runs {
        for k in 0..2 {
            pushes[k].push(push(servers[k], &ssh[k], source, &format!("{tag}-{i}")));
        }
    }
    // Memory: one more push each, sampled (apart from the timed runs so
    // sampling costs do not touch them), before any clone has run.
    let mut peaks = [0, 1].map(|k| {
        let pid = servers[k].child.id();
        let idle = rss::tree_kib(pid);
        rss::reset_hwm(pid);
        let sampler = rss::Sampler::start(pid);
        push(servers[k], &ssh[k], source, &format!("{tag}-mem"));
        (sampler.stop(), rss::hwm_kib(pid), idle)
    });
    for _ in 0..runs {
        for k in 0..2 {
            let into = work.join(format!("clone-{tag}-{k}"));
            clones[k].push(clone(
                servers[k],
                &ssh[k],
                &format!("{tag}-0"),
                &into,
                source,
            ));
        }
    }
    [0, 1].map(|k| Figures {
        push: median(std::mem::take(&mut pushes[k])),
        clone: median(std::mem::take(&mut clones[k])),
        push_peak: peaks[k].0,
        push_hwm_kib: peaks[k].1.take(),
        idle_kib: peaks[k].2,
    })
}

fn describe(repo: &Path) -> String {
    let commits = ok(
        git(repo, &["rev-list", "--all", "--count"], None),
        "rev-list",
    );
    let objects = ok(git(repo, &["count-objects", "-v"], None), "count-objects");
    let get = |k: &str| {
        objects
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{} commits, {} objects, pack {:.1} MiB",
        commits.trim(),
        get("in-pack:"),
        get("size-pack:").parse::<f64>().unwrap_or(0.0) / 1024.0
    )
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(servers::SERVE_ARG) {
        return servers::serve_gitd(&args[1..]);
    }
    let runs = env_usize("GITD_BENCH_RUNS", 5).max(1);
    let commits = env_usize("GITD_BENCH_COMMITS", 5000);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    if std::env::var_os("GITD_BENCH_KEEP").is_some() {
        eprintln!("keeping {} (GITD_BENCH_KEEP)", w.display());
    }

    let mut repos: Vec<(String, PathBuf)> = vec![];
    let started = Instant::now();
    let synthetic = synth::generate(w, commits);
    eprintln!(
        "generated {} in {:.1} s",
        synthetic.display(),
        started.elapsed().as_secs_f64()
    );
    repos.push((format!("synthetic {commits}"), synthetic));
    // This project's own history (a non-bare clone so refs/heads exist).
    let own = w.join("byteport");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    if git(
        w,
        &[
            "clone",
            "-q",
            "--mirror",
            root.to_str().unwrap(),
            own.to_str().unwrap(),
        ],
        None,
    )
    .status
    .success()
    {
        repos.push(("byteport (own)".into(), own));
    } else {
        eprintln!(
            "note: {} is not a git checkout; skipping its history",
            root.display()
        );
    }
    for p in std::env::var("GITD_BENCH_REPOS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
    {
        let dest = w.join(format!("real-{}", repos.len()));
        ok(
            git(
                w,
                &["clone", "-q", "--mirror", p, dest.to_str().unwrap()],
                None,
            ),
            "mirror clone",
        );
        let name = Path::new(p)
            .components()
            .rev()
            .find(|c| !matches!(c.as_os_str().to_str(), Some("repo" | ".git")))
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .unwrap_or_else(|| p.to_string());
        repos.push((name, dest));
    }

    let key = w.join("client_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let fp = ok(
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap(),
        "ssh-keygen -l",
    );
    let fingerprint = fp.split_whitespace().nth(1).unwrap().to_string();
    let gitd = servers::start_gitd(w, &fingerprint);
    let sshd = servers::start_sshd(w, &key.with_extension("pub"));
    let git_version = ok(git(w, &["--version"], None), "git --version");

    println!(
        "gitd vs sshd + git ({}), {runs} runs each, median; client: stock git + OpenSSH ({CRYPTO})",
        git_version.trim()
    );
    for (i, (name, repo)) in repos.iter().enumerate() {
        println!("\n== {name}: {}", describe(repo));
        let [g, s] = measure_pair([&gitd, &sshd], &key, repo, runs, &format!("r{i}"), w);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!("{:<8} {:>12} {:>12} {:>8}", "", "gitd", "sshd+git", "ratio");
        println!(
            "{:<8} {:>12} {:>12} {:>7.2}x",
            "push",
            secs(g.push),
            secs(s.push),
            ratio(g.push, s.push)
        );
        println!(
            "{:<8} {:>12} {:>12} {:>7.2}x",
            "clone",
            secs(g.clone),
            secs(s.clone),
            ratio(g.clone, s.clone)
        );
        println!(
            "peak RSS during push: gitd {} (kernel VmHWM {}; idle before: {}), \
sshd+git {} (git processes alone {}; idle before: {})",
            mib(g.push_peak.total_kib),
            g.push_hwm_kib.map(mib).unwrap_or_else(|| "n/a".into()),
            mib(g.idle_kib),
            mib(s.push_peak.total_kib),
            mib(s.push_peak.git_kib),
            mib(s.idle_kib),
        );
    }
    drop(gitd);
    drop(sshd);
    if std::env::var_os("GITD_BENCH_KEEP").is_some() {
        let _ = work.keep();
    }
}
