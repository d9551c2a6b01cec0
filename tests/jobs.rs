//! The deploy queue end to end, against `byteport up` with stock `git`
//! and OpenSSH and real QEMU VMs: jobs of one app run one after another
//! and each requester hears about its own; `kill -9` of the daemon in the
//! middle of a deploy leaves no VM behind, marks the job interrupted and
//! keeps the old version serving; a cancelled or killed build leaves no
//! build process behind.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::{git, Daemon};

/// A busybox site whose build takes a few seconds (so jobs overlap).
fn manifest(build_secs: u32) -> String {
    format!(
        "app queue\nfrom busybox\n\nbuild {{\n  copy public /srv\n  run sleep {build_secs}\n}}\n\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET /index.html every 1s timeout 1s\n}}\n"
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn commit(work: &Path, page: &str, build_secs: u32) {
    std::fs::create_dir_all(work.join("public")).unwrap();
    std::fs::write(work.join("Byteport"), manifest(build_secs)).unwrap();
    std::fs::write(work.join("public/index.html"), page).unwrap();
    git(work, &["add", "-A"], None);
    assert!(git(work, &["commit", "-qm", page], None).status.success());
}

#[allow(clippy::type_complexity)]
fn setup(app: &str) -> (Daemon, tempfile::TempDir, String, PathBuf) {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(git(&work, &["init", "-q"], None).status.success());
    git(&work, &["remote", "add", "byteport", &d.remote(app)], None);
    (d, tmp, ssh, key)
}

/// A `git push` whose output is collected line by line while it runs.
struct LivePush {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl LivePush {
    fn start(work: &Path, ssh: &str, refspec: &str) -> LivePush {
        let mut child = Command::new("git")
            .args(["push", "byteport", refspec])
            .current_dir(work)
            .env("GIT_SSH_COMMAND", ssh)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output: Arc<Mutex<String>> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&String::from_utf8_lossy(&line));
                    o.push('\n');
                }
            })
        };
        LivePush {
            child,
            output,
            reader,
        }
    }

    fn wait_for_line(&self, d: &Daemon, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.output.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the push's output:\n{}\n--- daemon ---\n{}",
                self.output.lock().unwrap(),
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn finish(mut self) -> (bool, String) {
        let ok = self.child.wait().unwrap().success();
        self.reader.join().unwrap();
        let out = self.output.lock().unwrap().clone();
        (ok, out)
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is as good as dead: it holds no resources of a VM.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

#[test]
fn pushes_a_restart_and_a_rollback_on_one_app_run_one_after_another() {
    let (d, tmp, ssh, key) = setup("queue");
    let work = tmp.path().join("work");
    commit(&work, "version one", 0);
    let out = git(&work, &["push", "-q", "byteport", "main"], Some(&ssh));
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());

    // Deploy #2 from main (a slow build), then while it runs: deploy #3
    // from master, a restart and a rollback to #1 — all queued behind it.
    commit(&work, "version two", 8);
    let first = LivePush::start(&work, &ssh, "main");
    first.wait_for_line(&d, "Building rootfs", 120);
    commit(&work, "version three", 0);
    let second = LivePush::start(&work, &ssh, "HEAD:master");
    second.wait_for_line(&d, "waiting for deploy #2 of queue", 60);
    let cli = |args: &'static [&'static str]| {
        let home = d.home.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_byteport"))
                .args(args)
                .env("BYTEPORT_HOME", &home)
                .output()
                .unwrap()
        })
    };
    let restart = cli(&["restart", "queue"]);
    // Queue the rollback after the restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text(&d.cli(&["deploys", "queue"])).contains("restart") {
        assert!(Instant::now() < deadline, "the restart was never queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rollback = cli(&["rollback", "queue", "1"]);

    let (ok, out1) = first.finish();
    assert!(ok, "{out1}\n{}", d.log());
    assert!(
        out1.contains("Live at") && out1.contains("deploy #2"),
        "{out1}"
    );
    let (ok, out2) = second.finish();
    assert!(ok, "{out2}\n{}", d.log());
    assert!(out2.contains("deploy #3"), "{out2}");
    let restart = restart.join().unwrap();
    assert!(restart.status.success(), "{}", text(&restart));
    assert!(text(&restart).contains("restarted"), "{}", text(&restart));
    let rollback = rollback.join().unwrap();
    assert!(rollback.status.success(), "{}", text(&rollback));
    assert!(
        text(&rollback).contains("Rolling queue back to deploy #1"),
        "{}",
        text(&rollback)
    );

    // The last job wins: deploy #1's artifact serves again.
    assert!(d.get("queue").unwrap().contains("version one"));
    // One after another, in the order they were asked for.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(platform::store::Store::open(
            &format!("sqlite://{}/state.db", d.home.display()),
            &d.home,
        ))
        .unwrap();
    let mut jobs = rt.block_on(store.list_jobs("queue", 100)).unwrap();
    jobs.reverse();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, ["deploy", "deploy", "deploy", "restart", "rollback"]);
    for pair in jobs.windows(2) {
        assert!(
            pair[1].started_at.unwrap() >= pair[0].finished_at.unwrap(),
            "job {} started before job {} ended",
            pair[1].id,
            pair[0].id
        );
    }
    assert!(jobs
        .iter()
        .all(|j| j.state == "succeeded" && j.attempts == 1));

    // A config change restarts a running app, as a job of its own.
    let out = d.ssh(&key, "config queue set GREETING=hi");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("restarting it to apply them") && t.contains("queue restarted in"),
        "{t}"
    );
    let jobs = rt.block_on(store.list_jobs("queue", 1)).unwrap();
    assert_eq!(jobs[0].kind, "restart");
}

#[test]
fn kill_9_of_the_daemon_mid_deploy_leaves_no_vm_and_the_old_version_serves() {
    let (mut d, tmp, ssh, _key) = setup("queue");
    let work = tmp.path().join("work");
    commit(&work, "version one", 0);
    let out = git(&work, &["push", "-q", "byteport", "main"], Some(&ssh));
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());

    // Killed while the new VM boots, then right after it turned healthy
    // (the switch).
    for (round, moment) in ["Booting microVM", "Healthy in"].iter().enumerate() {
        commit(&work, &format!("version {}", round + 2), 0);
        let push = LivePush::start(&work, &ssh, "main");
        push.wait_for_line(&d, moment, 240);
        // The new VM's process exists once its record does.
        let deadline = Instant::now() + Duration::from_secs(60);
        let pids = loop {
            let pids = d.recorded_vm_pids();
            if pids.len() >= 2 {
                break pids;
            }
            assert!(
                Instant::now() < deadline,
                "the new VM never started: {pids:?}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        d.kill9();
        let (pushed, out) = push.finish();
        // Killed while booting, the push cannot succeed; killed after the
        // health check it may have been accepted just before the kill, and
        // then the new version must be the one that comes back.
        assert!(
            !pushed || *moment == "Healthy in",
            "the push cannot succeed once its server died while booting: {out}"
        );
        // Every VM process died with the daemon (PR_SET_PDEATHSIG).
        let deadline = Instant::now() + Duration::from_secs(20);
        while pids.iter().any(|p| alive(*p)) {
            assert!(
                Instant::now() < deadline,
                "VM processes outlived the daemon: {:?}",
                pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        d.start_again();
        // Whatever the moment, nothing is half-written: either the old
        // deploy is live and the killed one is failed (interrupted), or —
        // killed after its switch was committed — the new one is live and
        // its job succeeded. Killed while booting, it must be the former.
        let deadline = Instant::now() + Duration::from_secs(240);
        let page = loop {
            if let Ok(page) = d.get("queue") {
                break page;
            }
            assert!(
                Instant::now() < deadline,
                "no version came back:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        let deploys = text(&d.cli(&["deploys", "queue"]));
        let killed = deploys
            .lines()
            .find(|l| l.starts_with(&format!("#{} ", round + 2)))
            .unwrap_or_else(|| panic!("{deploys}"))
            .to_string();
        let live_number = if page.contains("version one") {
            assert!(
                !pushed,
                "the push was accepted, yet the old version serves: {out}"
            );
            assert!(
                killed.contains("failed") && killed.contains("interrupted"),
                "{deploys}"
            );
            1
        } else {
            assert_eq!(
                *moment, "Healthy in",
                "killed while booting, yet live: {deploys}"
            );
            assert!(page.contains(&format!("version {}", round + 2)), "{page}");
            assert!(killed.contains("live"), "{deploys}");
            eprintln!("the kill landed after the switch was committed: the new version is live");
            round + 2
        };
        let ps = text(&d.cli(&["ps", "queue"]));
        assert!(
            ps.contains(&format!("deploy #{live_number} ")),
            "only the live version runs: {ps}"
        );
        assert_eq!(
            d.recorded_vm_pids().len(),
            1,
            "one VM (the restored one) is recorded"
        );
        if live_number != 1 {
            break;
        }
    }
}

/// Processes whose command line is `sleep <secs>` (a build step's marker).
fn sleepers(secs: u32) -> Vec<u32> {
    let want = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
                && alive(*pid)
        })
        .collect()
}

fn wait_until(what: &str, secs: u64, d: &Daemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_cancelled_or_killed_build_leaves_no_build_process_and_the_old_version_serves() {
    let (mut d, tmp, ssh, key) = setup("queue");
    let work = tmp.path().join("work");
    commit(&work, "version one", 0);
    let out = git(&work, &["push", "-q", "byteport", "main"], Some(&ssh));
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());

    // `deploys cancel` while a build step runs: the step's whole process
    // tree is killed, the push is refused, nothing boots.
    commit(&work, "version two", 3171);
    let push = LivePush::start(&work, &ssh, "main");
    push.wait_for_line(&d, "run sleep 3171", 240);
    wait_until("the build step never started", 60, &d, || {
        !sleepers(3171).is_empty()
    });
    let out = d.ssh(&key, "deploys cancel queue");
    assert!(out.status.success(), "{}", text(&out));
    let (pushed, out) = push.finish();
    assert!(!pushed, "a cancelled deploy was accepted: {out}");
    assert!(out.contains("cancel"), "{out}");
    assert!(
        sleepers(3171).is_empty(),
        "the cancelled step's processes outlived its job: {:?}",
        sleepers(3171)
    );
    assert!(d.get("queue").unwrap().contains("version one"));
    assert_eq!(d.recorded_vm_pids().len(), 1, "only the live VM runs");
    let deploys = text(&d.cli(&["deploys", "queue"]));
    assert!(
        deploys
            .lines()
            .any(|l| l.starts_with("#2 ") && l.contains("cancel")),
        "{deploys}"
    );

    // kill -9 of `byteport up` while a build step runs: the step dies with
    // it, and after a restart the job is interrupted, the old version
    // serves.
    commit(&work, "version three", 3172);
    let push = LivePush::start(&work, &ssh, "main");
    push.wait_for_line(&d, "run sleep 3172", 240);
    wait_until("the build step never started", 60, &d, || {
        !sleepers(3172).is_empty()
    });
    d.kill9();
    let (pushed, _) = push.finish();
    assert!(!pushed);
    wait_until("a build step outlived the daemon", 20, &d, || {
        sleepers(3172).is_empty()
    });
    d.start_again();
    wait_until("the old version never came back", 240, &d, || {
        d.get("queue").is_ok_and(|p| p.contains("version one"))
    });
    let deploys = text(&d.cli(&["deploys", "queue"]));
    assert!(
        deploys
            .lines()
            .any(|l| l.starts_with("#3 ") && l.contains("interrupted")),
        "{deploys}"
    );
}
