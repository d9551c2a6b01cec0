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
}
