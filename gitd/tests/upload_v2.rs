//! Protocol v2 upload-pack with the stock git client over OpenSSH.

mod support;

use support::*;

fn trace_env(file: &std::path::Path) -> [(&'static str, String); 1] {
    [("GIT_TRACE_PACKET", file.display().to_string())]
}

#[test]
fn v2_clone_and_fetch_speak_v2() {
    let s = Server::start(|_| {});
    let ssh = s.ssh();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("w");
    std::fs::create_dir_all(&w).unwrap();
    git_ok(&w, &["init", "-q"], &ssh);
    for i in 0..20 {
        commit(
            &w,
            "src/lib.rs",
            &format!("fn f{i}() {{}}\n").repeat(20 + i),
            &format!("c{i}"),
        );
    }
    git_ok(&w, &["tag", "-a", "v1", "-m", "v1"], &ssh);
    git_ok(&w, &["push", "-q", &s.url("app"), "main", "v1"], &ssh);

    let trace = work.path().join("trace");
    let env = trace_env(&trace);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let clone = work.path().join("clone");
    let out = git_env(
        work.path(),
        &[
            "-c",
            "protocol.version=2",
            "clone",
            &s.url("app"),
            clone.to_str().unwrap(),
        ],
        &ssh,
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(t.contains("< version 2"), "{t}");
    assert!(
        t.contains("> command=ls-refs") && t.contains("> command=fetch"),
        "{t}"
    );
    assert_eq!(
        git_ok(&clone, &["rev-parse", "HEAD"], &ssh),
        git_ok(&w, &["rev-parse", "HEAD"], &ssh)
    );
    git_ok(&clone, &["fsck", "--full"], &ssh);

    // An incremental fetch, also v2, brings exactly the new commit.
    commit(&w, "src/lib.rs", "fn changed() {}\n", "c20");
    git_ok(&w, &["tag", "v2"], "");
    git_ok(&w, &["push", "-q", &s.url("app"), "main", "v2"], &ssh);
    std::fs::remove_file(&trace).unwrap();
    let out = git_env(
        &clone,
        &["-c", "protocol.version=2", "fetch", "origin"],
        &ssh,
        &env,
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(
        t.contains("fetch< version 2") && t.contains("fetch> have "),
        "{t}"
    );
    assert_eq!(
        git_ok(&clone, &["rev-parse", "origin/main"], &ssh),
        git_ok(&w, &["rev-parse", "HEAD"], &ssh)
    );
    assert_eq!(
        git_ok(&clone, &["rev-parse", "v2"], ""),
        git_ok(&w, &["rev-parse", "v2"], "")
    );
    git_ok(&clone, &["fsck", "--full"], &ssh);
}

fn v2<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["-c", "protocol.version=2"];
    v.extend_from_slice(args);
    v
}

/// A pushed history of 12 commits, a day apart, on main.
fn pushed(s: &Server, work: &std::path::Path) -> std::path::PathBuf {
    let w = work.join("w");
    std::fs::create_dir_all(&w).unwrap();
    git_ok(&w, &["init", "-q"], "");
    for i in 0..12 {
        commit(
            &w,
            &format!("f{}", i % 3),
            &format!("{i}\n"),
            &format!("c{i}"),
        );
    }
    git_ok(&w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    w
}

#[test]
fn v2_shallow_clone_deepen_and_unshallow() {
    let s = Server::start(|_| {});
    let ssh = s.ssh();
    let work = tempfile::tempdir().unwrap();
    let w = pushed(&s, work.path());
    let c = work.path().join("c");
    let out = git(
        work.path(),
        &v2(&[
            "clone",
            "-q",
            "--depth",
            "2",
            &s.url("app"),
            c.to_str().unwrap(),
        ]),
        &ssh,
    );
    assert!(out.status.success(), "{}", text(&out));
    let count = |dir: &std::path::Path| git_ok(dir, &["rev-list", "--count", "HEAD"], "");
    assert_eq!(count(&c), "2");
    assert_eq!(
        std::fs::read_to_string(c.join(".git/shallow"))
            .unwrap()
            .trim(),
        git_ok(&w, &["rev-parse", "HEAD~1"], "")
    );
    git_ok(&c, &["fsck"], "");
    assert!(git(&c, &v2(&["fetch", "-q", "--deepen", "3"]), &ssh)
        .status
        .success());
    assert_eq!(count(&c), "5");
    git_ok(&c, &["fsck"], "");
    let out = git(&c, &v2(&["fetch", "-q", "--unshallow"]), &ssh);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(count(&c), "12");
    assert!(!c.join(".git/shallow").exists());
    git_ok(&c, &["fsck", "--full"], "");

    // A new commit upstream reaches a shallow clone with a plain fetch.
    let c2 = work.path().join("c2");
    git_ok(
        work.path(),
        &v2(&[
            "clone",
            "-q",
            "--depth",
            "1",
            &s.url("app"),
            c2.to_str().unwrap(),
        ]),
        &ssh,
    );
    commit(&w, "f0", "new\n", "new");
    git_ok(&w, &["push", "-q", &s.url("app"), "main"], &ssh);
    git_ok(&c2, &v2(&["fetch", "-q"]), &ssh);
    assert_eq!(
        git_ok(&c2, &["rev-parse", "origin/main"], ""),
        git_ok(&w, &["rev-parse", "HEAD"], "")
    );
    assert_eq!(
        git_ok(&c2, &["rev-list", "--count", "origin/main"], ""),
        "2"
    );
    git_ok(&c2, &["fsck"], "");
}

#[test]
fn v2_shallow_since_and_exclude() {
    let s = Server::start(|_| {});
    let ssh = s.ssh();
    let work = tempfile::tempdir().unwrap();
    let w = pushed(&s, work.path());
    git_ok(&w, &["tag", "old", "HEAD~4"], "");
    git_ok(&w, &["push", "-q", &s.url("app"), "old"], &ssh);
    // Commits are a minute apart: since the 10th commit's time keeps 3.
    let since = git_ok(&w, &["log", "-1", "--format=%ct", "HEAD~2"], "");
    let c = work.path().join("since");
    let out = git(
        work.path(),
        &v2(&[
            "clone",
            "-q",
            &format!("--shallow-since={since}"),
            &s.url("app"),
            c.to_str().unwrap(),
        ]),
        &ssh,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(git_ok(&c, &["rev-list", "--count", "HEAD"], ""), "3");
    let c = work.path().join("exclude");
    let out = git(
        work.path(),
        &v2(&[
            "clone",
            "-q",
            "--shallow-exclude=old",
            "-b",
            "main",
            &s.url("app"),
            c.to_str().unwrap(),
        ]),
        &ssh,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(git_ok(&c, &["rev-list", "--count", "HEAD"], ""), "4");
    git_ok(&c, &["fsck"], "");
}

#[test]
fn v2_partial_clone_falls_back_with_git_s_own_warning() {
    let s = Server::start(|_| {});
    let work = tempfile::tempdir().unwrap();
    pushed(&s, work.path());
    let c = work.path().join("c");
    let out = git(
        work.path(),
        &v2(&[
            "clone",
            "--filter=blob:none",
            &s.url("app"),
            c.to_str().unwrap(),
        ]),
        &s.ssh(),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("filtering not recognized by server, ignoring"),
        "{t}"
    );
    git_ok(&c, &["fsck", "--full"], "");
}

#[test]
fn v2_ls_remote_and_hostile_requests_over_ssh() {
    let s = Server::start(|_| {});
    let work = tempfile::tempdir().unwrap();
    let w = pushed(&s, work.path());
    let out = git(
        work.path(),
        &v2(&["ls-remote", &s.url("app"), "refs/heads/*"]),
        &s.ssh(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let head = git_ok(&w, &["rev-parse", "HEAD"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{head}\trefs/heads/main")
    );

    // Raw v2 requests: OpenSSH passes GIT_PROTOCOL with SetEnv.
    let pkt = |l: &str| format!("{:04x}{l}", l.len() + 4);
    let env = "-o SetEnv=GIT_PROTOCOL=version=2";
    let raw = |body: String| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} {env} git@127.0.0.1 \"git-upload-pack 'app.git'\"",
                s.ssh()
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(body.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = raw(pkt("command=frobnicate\n") + "0000");
    assert!(out.starts_with("000eversion 2\n"), "{out}");
    assert!(out.contains("ERR unknown command `frobnicate`"), "{out}");
    assert_eq!(code, Some(1));
    let unknown = "1".repeat(40);
    let (code, out) = raw(pkt("command=fetch\n")
        + "0001"
        + &pkt(&format!("want {unknown}\n"))
        + &pkt("done\n")
        + "0000");
    assert!(
        out.contains(&format!("ERR upload-pack: not our ref {unknown}")),
        "{out}"
    );
    assert_eq!(code, Some(1));
    let (code, out) = raw(pkt("command=ls-refs\n") + &pkt("bogus\n") + "0000");
    assert!(out.contains("ERR unknown capability `bogus`"), "{out}");
    assert_eq!(code, Some(1));
    let (code, out) = raw("00zz".into());
    assert_eq!(code, Some(1), "{out}");
}
