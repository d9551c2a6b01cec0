//! Limits, each with the message a real client shows: the connection
//! limit, the idle timeout (during a git exchange and with no command),
//! and the maximum pack size. Real OpenSSH and git against gitd.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn over_the_connection_limit_the_client_is_told_so() {
    let s = Server::start(|c| c.max_connections = 1);
    let ssh = s.ssh();
    // One connection busy with a slow command holds the only slot.
    let mut busy = Command::new("sh")
        .arg("-c")
        .arg(format!("{ssh} git@127.0.0.1 'sleep 4'"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let work = tempfile::tempdir().unwrap();
    let out = git(work.path(), &["clone", &s.url("app"), "c"], &ssh);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("byteport: the server is at its connection limit (1 connections); try again in a moment"),
        "{t}"
    );
    let out = s.exec("apps", b"", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("connection limit"), "{}", text(&out));

    // Once the busy one is gone, the slot is free again.
    let busy_out = busy.wait().unwrap();
    assert!(busy_out.success());
    let _ = busy.stdout.take();
    let out = s.exec("apps", b"", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ran apps"));
}

#[test]
fn a_stalled_git_exchange_ends_with_the_idle_message() {
    let s = Server::start(|c| c.idle_timeout = Duration::from_secs(2));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "a", "a\n", "a");
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());

    // upload-pack advertises, then the client says nothing (stdin open).
    let started = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} git@127.0.0.1 \"git-upload-pack 'app.git'\"",
            s.ssh()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    drop(stdin);
    let t = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("byteport: nothing received from the client for 2 s: closing the connection (idle timeout)"),
        "{t}"
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");

    // Same for receive-pack, mid-push: commands sent, pack never comes.
    let head = git_ok(w, &["rev-parse", "HEAD"], "");
    let cmd = format!(
        "{} {head} refs/heads/other\0report-status side-band-64k",
        "0".repeat(40)
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} git@127.0.0.1 \"git-receive-pack 'app.git'\"",
            s.ssh()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    write!(stdin, "{:04x}{cmd}0000PACK", cmd.len() + 4).unwrap();
    stdin.flush().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let t = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("(idle timeout)"), "{t}");
    assert!(
        git_ok(&s.repo("app"), &["for-each-ref"], "")
            .lines()
            .count()
            == 1,
        "no ref from the stalled push"
    );
}

#[test]
fn a_connection_that_runs_nothing_is_disconnected_with_a_reason() {
    let s = Server::start(|c| c.idle_timeout = Duration::from_secs(2));
    // `ssh -N`: authenticated, no command. OpenSSH prints the server's
    // disconnect reason at its default log level.
    let ssh = s.ssh().replace("LogLevel=ERROR", "LogLevel=INFO");
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{ssh} -N git@127.0.0.1"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        t.contains("byteport: no command for 2 s: closing the connection (idle timeout)"),
        "{t}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?} {t}",
        started.elapsed()
    );
}

#[test]
fn a_pack_over_the_limit_is_refused_with_its_size() {
    let s = Server::start(|c| c.max_pack_bytes = 1 << 20);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "small", "small\n", "small");
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    // 3 MiB that does not compress.
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(w.join("big.bin"), &noise).unwrap();
    git_ok(w, &["add", "-A"], "");
    git_ok(w, &["commit", "-qm", "big"], "");
    let before = git_ok(&s.repo("app"), &["for-each-ref"], "");
    let out = git(w, &["push", &s.url("app"), "main"], &s.ssh());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("remote: error: the pack is larger than this server accepts (1 MiB; the `max_pack_size` setting)")
            && t.contains("main -> main (unpacker error)")
            && !t.contains("protocol:"),
        "{t}"
    );
    assert_eq!(git_ok(&s.repo("app"), &["for-each-ref"], ""), before);
    let out = Command::new("git")
        .args(["fsck", "--full"])
        .current_dir(s.repo("app"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
