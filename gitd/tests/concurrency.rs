//! Pushes at the same time, and a client that leaves mid-deploy, with the
//! real `git` client: ref updates stay serialized per ref without a lock
//! held across the deploy, no push loses another's update, and a client
//! that leaves while its deploy runs leaves the ref where it was, frees
//! its connection and the ref, never has its ref moved afterwards, and its
//! deploy is not cut in the middle.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

const GUARD: Duration = Duration::from_secs(60);

/// A clone of `app` with one new commit on `main` touching `file`.
fn clone_with_commit(s: &Server, app: &str, file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    git_ok(w, &["clone", "-q", &s.url(app), "c"], &s.ssh());
    commit(&w.join("c"), file, file, file);
    dir
}

fn push_child(s: &Server, w: &Path, refspec: &str) -> Child {
    let mut c = Command::new("git");
    c.args(["push", &s.url("app"), refspec])
        .current_dir(w)
        .env("GIT_SSH_COMMAND", s.ssh())
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the test can Ctrl-C git and ssh as a
        // terminal would.
        .process_group(0);
    c.spawn().unwrap()
}

fn head(w: &Path) -> String {
    git_ok(w, &["rev-parse", "HEAD"], "")
}

fn server_ref(s: &Server, name: &str) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "-q", name])
        .current_dir(s.repo("app"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn seeded() -> (Server, String) {
    let s = Server::start(|_| {});
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "base", "base\n", "base");
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    let base = head(w);
    (s, base)
}

#[test]
fn a_second_push_to_a_ref_being_deployed_is_told_at_once() {
    let (s, base) = seeded();
    let a = clone_with_commit(&s, "app", "a");
    let b = clone_with_commit(&s, "app", "b");
    let (wa, wb) = (a.path().join("c"), b.path().join("c"));
    s.hook.hold();
    let first = push_child(&s, &wa, "main");
    s.hook.wait_started(2, GUARD); // the seed push was the first deploy
                                   // While A's deploy runs, B's push to the same ref is turned away...
    let out = git(&wb, &["push", &s.url("app"), "main"], &s.ssh());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("main -> main (another push to this ref is still in progress; wait for it, fetch, and push again)"),
        "{t}"
    );
    assert_eq!(s.hook.started.load(Ordering::SeqCst), 2, "B never deployed");
    // ...and a push to another ref of the same repository goes through:
    // no lock on the app is held across A's deploy.
    git_ok(
        &wb,
        &["push", "-q", &s.url("app"), "HEAD:refs/heads/feature"],
        &s.ssh(),
    );
    assert_eq!(server_ref(&s, "refs/heads/feature"), head(&wb));
    assert_eq!(server_ref(&s, "refs/heads/main"), base);
    s.hook.release();
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server_ref(&s, "refs/heads/main"), head(&wa));
    assert_eq!(server_ref(&s, "refs/heads/feature"), head(&wb));
}

#[test]
fn racing_pushes_to_one_ref_never_lose_an_update() {
    let (s, _) = seeded();
    for round in 0..5 {
        let a = clone_with_commit(&s, "app", &format!("a{round}"));
        let b = clone_with_commit(&s, "app", &format!("b{round}"));
        let (wa, wb) = (a.path().join("c"), b.path().join("c"));
        // A non-deploy ref: nothing slows either push down.
        let pa = push_child(&s, &wa, "HEAD:refs/heads/race");
        let pb = push_child(&s, &wb, "HEAD:refs/heads/race");
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        let won: Vec<&Path> = [(&oa, &wa), (&ob, &wb)]
            .into_iter()
            .filter(|(o, _)| o.status.success())
            .map(|(_, w)| w.as_path())
            .collect();
        // The second push of a round is stale relative to the first, so
        // exactly one wins, and the ref is the winner's commit.
        assert_eq!(won.len(), 1, "round {round}: {}\n{}", text(&oa), text(&ob));
        assert_eq!(
            server_ref(&s, "refs/heads/race"),
            head(won[0]),
            "round {round}"
        );
        // Next round builds on the winner.
        let out = Command::new("git")
            .args(["update-ref", "-d", "refs/heads/race"])
            .current_dir(s.repo("app"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let out = Command::new("git")
        .args(["fsck", "--full", "--no-dangling"])
        .current_dir(s.repo("app"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_client_that_leaves_mid_deploy_leaves_the_ref_and_its_slot() {
    let (s, base) = seeded();
    let a = clone_with_commit(&s, "app", "a");
    let b = clone_with_commit(&s, "app", "b");
    let (wa, wb) = (a.path().join("c"), b.path().join("c"));
    s.hook.hold();
    let child = push_child(&s, &wa, "main");
    s.hook.wait_started(2, GUARD);
    assert_eq!(s.stats().authenticated, 1);
    // Ctrl-C: SIGINT to git and its ssh.
    // SAFETY: killpg sends a signal to the process group the test made.
    assert_eq!(unsafe { libc::killpg(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    // gitd stops waiting while A's deploy is still held: the connection's
    // slot is freed...
    s.wait_stats(GUARD, |st| st.authenticated == 0 && st.handshakes == 0);
    assert_eq!(
        server_ref(&s, "refs/heads/main"),
        base,
        "the ref did not move"
    );
    // ...and so is the ref's claim: B's push to main starts its deploy
    // (rather than being told another push is in progress).
    let second = push_child(&s, &wb, "main");
    s.hook.wait_started(3, GUARD);
    assert_eq!(s.hook.pushes.lock().unwrap().len(), 1, "A is still held");
    // Both deploys finish. A's was driven to its end (never cut in the
    // middle), but A's ref update never happens: B's push, which expects
    // main at the base commit, succeeds.
    s.hook.release();
    let out = second.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(server_ref(&s, "refs/heads/main"), head(&wb));
    let until = std::time::Instant::now() + GUARD;
    while s.hook.pushes.lock().unwrap().len() < 3 {
        assert!(
            std::time::Instant::now() < until,
            "hang guard: A's deploy never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        s.hook.dropped.load(Ordering::SeqCst),
        0,
        "no deploy was cut"
    );
    assert_eq!(server_ref(&s, "refs/heads/main"), head(&wb));
}

#[test]
fn a_rejected_deploy_says_why_and_keeps_the_ref() {
    let (s, base) = seeded();
    let a = clone_with_commit(&s, "app", "a");
    let wa = a.path().join("c");
    *s.hook.reject.lock().unwrap() = Some("invalid Byteport manifest: Byteport:1:1: empty".into());
    let out = git(&wa, &["push", &s.url("app"), "main"], &s.ssh());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("! [remote rejected] main -> main (deploy failed: invalid Byteport manifest: Byteport:1:1: empty)"),
        "{t}"
    );
    assert_eq!(server_ref(&s, "refs/heads/main"), base);
}
