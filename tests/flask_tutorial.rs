//! Flask's own tutorial app (flaskr, `examples/flask-tutorial`), an app
//! nobody here wrote, pushed through `byteport up` as a user would: its
//! release command makes the schema on the volume, and a user's account
//! and post survive a redeploy, a restart, a crash of the VM and a restart
//! of `byteport up`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{git, Daemon};

const APP: &str = "flask-tutorial";
const ALICE: &str = "username=alice&password=correct-horse";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The index page once flaskr answers, within `secs`.
fn index_when_up(d: &Daemon, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, _, body) = d.request(APP, "GET", "/", None, "");
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_post_kept(d: &Daemon, when: &str) {
    let index = index_when_up(d, &format!("flaskr never came back {when}"), 300);
    assert!(
        index.contains("Kept across everything") && index.contains("by alice"),
        "the post is gone {when}:\n{index}\n{}",
        d.log()
    );
    let (status, head, _) = d.request(APP, "POST", "/auth/login", None, ALICE);
    assert_eq!(status, 302, "alice cannot log in {when}: {head}");
}

#[test]
fn flaskr_keeps_its_users_and_posts_through_redeploys_restarts_and_crashes() {
    let mut d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("flask-tutorial");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flask-tutorial"),
        &work,
    );
    git(&work, &["init", "-q", "-b", "main"], None);
    git(&work, &["add", "-A"], None);
    git(&work, &["commit", "-qm", "flaskr"], None);
    let push = |d: &Daemon| {
        let out = git(
            &work,
            &["push", "-q", &d.remote(APP), "HEAD:main"],
            Some(&ssh),
        );
        (out.status.success(), testvm::git::text(&out))
    };

    let (ok, out) = push(&d);
    assert!(ok, "{out}\n{}", d.log());
    assert!(
        out.contains("Running release command") && out.contains("Initialized the database."),
        "the release command made the schema: {out}"
    );
    let (status, head, body) = d.request(APP, "POST", "/auth/register", None, ALICE);
    assert_eq!(
        status,
        302,
        "registering failed:\n{head}\n{body}\n{}",
        d.log()
    );
    let (status, head, _) = d.request(APP, "POST", "/auth/login", None, ALICE);
    assert_eq!(status, 302, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Set-Cookie: ")
                .or(l.strip_prefix("set-cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in:\n{head}"))
        .to_string();
    let post = "title=Kept+across+everything&body=written+on+the+first+deploy";
    let (status, head, body) = d.request(APP, "POST", "/create", Some(&cookie), post);
    assert_eq!(status, 302, "{head}\n{body}");
    assert_post_kept(&d, "right after it was written");

    // A redeploy: the release command runs again and leaves the data be.
    git(
        &work,
        &["commit", "-q", "--allow-empty", "-m", "redeploy"],
        None,
    );
    let (ok, out) = push(&d);
    assert!(ok, "{out}\n{}", d.log());
    assert!(
        out.contains("Running release command") && !out.contains("Initialized the database."),
        "init-db ran over the existing database: {out}"
    );
    assert_post_kept(&d, "after a redeploy");

    let out = d.ssh(&key, &format!("restart {APP}"));
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    assert_post_kept(&d, "after a restart");

    // Killed, not stopped: what flaskr committed survives a crash.
    let pids = d.recorded_vm_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill(2) on the VM process this test's daemon started.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(300);
    while d.recorded_vm_pids().first().is_none_or(|p| *p == pids[0]) {
        assert!(
            Instant::now() < deadline,
            "no VM after the crash\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_post_kept(&d, "after its VM was killed");

    d.restart();
    assert_post_kept(&d, "after byteport up restarted");
}
