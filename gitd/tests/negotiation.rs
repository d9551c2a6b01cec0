//! Fetch negotiation on a branchy history: the client has local commits
//! the server lacks and two remote branches that moved. With
//! multi_ack_detailed (v0) or acknowledgments + ready (v2) the
//! server finds both common tips and sends exactly the new objects.

mod support;

use std::path::{Path, PathBuf};

use support::*;

struct Scene {
    server: Server,
    _work: tempfile::TempDir,
    client: PathBuf,
    expected: usize,
    old: [String; 2],
}

/// Server: main (30 commits), branch `a` from main's tip (25), branch `b`
/// from main~10 (25). The client clones, adds 40 local commits, and the
/// server's `a` and `b` each get 3 more.
fn scene() -> Scene {
    let server = Server::start(|_| {});
    let ssh = server.ssh();
    let work = tempfile::tempdir().unwrap();
    let up = work.path().join("up");
    std::fs::create_dir_all(&up).unwrap();
    git_ok(&up, &["init", "-q"], "");
    for i in 0..30 {
        commit(
            &up,
            "core.rs",
            &format!("// v{i}\n{}", "fn core() {}\n".repeat(50 + i)),
            &format!("m{i}"),
        );
    }
    git_ok(&up, &["checkout", "-qb", "a"], "");
    for i in 0..25 {
        commit(
            &up,
            "a.rs",
            &format!("// a{i}\n{}", "fn a() {}\n".repeat(40 + i)),
            &format!("a{i}"),
        );
    }
    git_ok(&up, &["checkout", "-qb", "b", "main~10"], "");
    for i in 0..25 {
        commit(
            &up,
            "b.rs",
            &format!("// b{i}\n{}", "fn b() {}\n".repeat(40 + i)),
            &format!("b{i}"),
        );
    }
    git_ok(
        &up,
        &["push", "-q", &server.url("app"), "main", "a", "b"],
        &ssh,
    );

    let client = work.path().join("client");
    git_ok(
        work.path(),
        &["clone", "-q", &server.url("app"), client.to_str().unwrap()],
        &ssh,
    );
    git_ok(&client, &["checkout", "-qb", "local", "origin/a"], "");
    for i in 0..40 {
        commit(&client, "local.rs", &format!("// l{i}\n"), &format!("l{i}"));
    }
    let old = [
        git_ok(&up, &["rev-parse", "a"], ""),
        git_ok(&up, &["rev-parse", "b"], ""),
    ];
    for branch in ["a", "b"] {
        git_ok(&up, &["checkout", "-q", branch], "");
        for i in 0..3 {
            commit(
                &up,
                &format!("{branch}.rs"),
                &format!("// new {branch}{i}\n"),
                &format!("n{i}"),
            );
            commit(
                &up,
                &format!("dir{i}/{branch}.txt"),
                "x\n",
                &format!("d{i}"),
            );
        }
    }
    git_ok(&up, &["push", "-q", &server.url("app"), "a", "b"], &ssh);
    let range = format!("^{}", &old[0]);
    let range_b = format!("^{}", &old[1]);
    let expected = git_ok(
        &up,
        &["rev-list", "--objects", "a", "b", &range, &range_b],
        "",
    )
    .lines()
    .count();
    Scene {
        server,
        _work: work,
        client,
        expected,
        old,
    }
}

fn newest_idx(repo: &Path, before: &[PathBuf]) -> PathBuf {
    std::fs::read_dir(repo.join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "idx") && !before.contains(p))
        .expect("the fetch kept a new pack")
}

fn packs(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join(".git/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn fetch(scene: &Scene, version: &str) -> String {
    let trace = scene.client.join("../trace-".to_string() + version);
    let before = packs(&scene.client);
    let out = git_env(
        &scene.client,
        &[
            "-c",
            &format!("protocol.version={version}"),
            "-c",
            "fetch.unpackLimit=1",
            "fetch",
            "origin",
        ],
        &scene.server.ssh(),
        &[("GIT_TRACE_PACKET", trace.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = objects_in_pack(&newest_idx(&scene.client, &before));
    assert_eq!(
        got, scene.expected,
        "the pack holds exactly the new objects"
    );
    for b in ["a", "b"] {
        assert_eq!(
            git_ok(&scene.client, &["rev-parse", &format!("origin/{b}")], ""),
            git_ok(&scene.server.repo("app"), &["rev-parse", b], "")
        );
    }
    git_ok(&scene.client, &["fsck", "--full"], "");
    std::fs::read_to_string(trace).unwrap()
}

#[test]
fn v0_multi_ack_detailed_finds_both_common_tips() {
    let s = scene();
    let t = fetch(&s, "0");
    let want = t.lines().find(|l| l.contains("fetch> want ")).unwrap();
    assert!(want.contains("multi_ack_detailed"), "{want}");
    assert!(
        t.lines()
            .any(|l| l.contains("fetch< ACK ") && l.ends_with(" common")),
        "{t}"
    );
    // Both old tips were acknowledged as common, so the client may stop
    // walking their histories.
    for old in [&s.old[0], &s.old[1]] {
        assert!(
            t.contains(&format!("fetch< ACK {old} common")),
            "{old} not acknowledged\n{t}"
        );
    }
    // git uses no-done only over stateless HTTP; over SSH it answers
    // `ready` with `done` (ready and no-done are covered by unit tests).
}

#[test]
fn v2_acknowledgments_and_ready_find_both_common_tips() {
    let s = scene();
    let t = fetch(&s, "2");
    assert!(t.contains("fetch< version 2"), "{t}");
    assert!(t.contains("fetch< acknowledgments"), "{t}");
    assert!(t.lines().any(|l| l.ends_with("fetch< ready")), "{t}");
}
