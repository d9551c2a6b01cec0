//! Unit tests: hand-written requests, byte by byte, against a real
//! repository (built with the git CLI as a fixture), including every kind
//! of malformed, truncated, oversized and hostile input.

use std::path::Path;

use super::*;

/// The fixture's git: fixed dates, so object ids are the same every run.
fn git(dir: &Path, args: &[&str]) -> String {
    let dates = [
        ("GIT_AUTHOR_DATE", "@1700000000 +0000"),
        ("GIT_COMMITTER_DATE", "@1700000000 +0000"),
    ];
    let out = testvm::git::git_env(dir, args, None, &dates);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        testvm::git::text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with main (3 commits) and an annotated tag on the tip.
fn fixture() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q"]);
    let mut ids = vec![];
    for i in 0..3 {
        std::fs::write(d.join("f"), format!("{i}\n").repeat(100)).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["commit", "-qm", &format!("c{i}")]);
        ids.push(git(d, &["rev-parse", "HEAD"]));
    }
    git(d, &["tag", "-a", "v1", "-m", "v1"]);
    (dir, ids)
}

fn pkt(s: &str) -> Vec<u8> {
    format!("{:04x}{s}", s.len() + 4).into_bytes()
}

fn req(lines: &[&str]) -> Vec<u8> {
    let mut v = vec![];
    for l in lines {
        match *l {
            "0000" | "0001" => v.extend_from_slice(l.as_bytes()),
            _ => v.extend(pkt(l)),
        }
    }
    v
}

fn serve(dir: &Path, protocol: &str, input: &[u8]) -> (Result<Outcome, UploadError>, String) {
    let mut out = vec![];
    let r = run(dir, protocol, &mut &input[..], &mut out);
    (r, String::from_utf8_lossy(&out).to_string())
}

#[test]
fn v0_advertises_and_ls_remote_ends_cleanly() {
    let (dir, ids) = fixture();
    for input in [&b""[..], b"0000"] {
        let (r, out) = serve(dir.path(), "", input);
        let o = r.unwrap();
        assert_eq!(o.version, Version::V0);
        assert!(o.packs.is_empty());
        assert!(out.contains(&format!("{} HEAD\0", ids[2])), "{out}");
        assert!(out.contains("multi_ack_detailed") && out.contains("symref=HEAD:refs/heads/main"));
        assert!(out.contains("refs/tags/v1^{}"), "peeled tag advertised");
    }
    let (r, out) = serve(dir.path(), "version=1", b"0000");
    assert_eq!(r.unwrap().version, Version::V1);
    assert!(out.starts_with("000eversion 1\n"), "{out}");
}

#[test]
fn v0_ready_and_no_done_skip_the_last_round_trip() {
    let (dir, ids) = fixture();
    let want = format!(
        "want {} multi_ack_detailed no-done side-band-64k ofs-delta\n",
        ids[2]
    );
    let have = format!("have {}\n", ids[1]);
    let (r, out) = serve(dir.path(), "", &req(&[&want, "0000", &have, "0000"]));
    let o = r.unwrap();
    let p = ids[1].as_str();
    let acks = [
        format!("ACK {p} common\n"),
        format!("ACK {p} ready\n"),
        "NAK\n".into(),
        format!("ACK {p}\n"),
    ]
    .map(|l| String::from_utf8(pkt(&l)).unwrap())
    .concat();
    assert!(out.contains(&acks), "{out}");
    assert_eq!(o.packs[0].commits, 1, "only the new commit");
    assert!(out.contains("PACK"), "the pack follows without `done`");
}

#[test]
fn v0_basic_and_multi_ack_answers() {
    let (dir, ids) = fixture();
    let p = ids[1].as_str();
    // No multi_ack: one ACK for the first common object, then the pack.
    let want = format!("want {} side-band-64k\n", ids[2]);
    let (r, out) = serve(
        dir.path(),
        "",
        &req(&[&want, "0000", &format!("have {p}\n"), "0000", "done\n"]),
    );
    r.unwrap();
    assert!(
        out.contains(&format!("0031ACK {p}\n")) && !out.contains("NAK"),
        "{out}"
    );
    // multi_ack: ACK continue, NAK per flush, final ACK after done.
    let want = format!("want {} multi_ack side-band-64k\n", ids[2]);
    let unknown = format!("have {}\n", "1".repeat(40));
    let (r, out) = serve(
        dir.path(),
        "",
        &req(&[
            &want,
            "0000",
            &unknown,
            &format!("have {p}\n"),
            "0000",
            "done\n",
        ]),
    );
    r.unwrap();
    assert!(
        out.contains(&format!("ACK {p} continue\n0008NAK\n0031ACK {p}\n")),
        "{out}"
    );
    // Nothing in common: NAK, then the whole history.
    let want = format!("want {} multi_ack_detailed side-band-64k\n", ids[2]);
    let (r, out) = serve(
        dir.path(),
        "",
        &req(&[&want, "0000", &unknown, "0000", "done\n"]),
    );
    assert_eq!(r.unwrap().packs[0].commits, 3);
    assert!(out.contains("0008NAK\n0008NAK\n"), "{out}");
}

#[test]
fn v0_hostile_requests_fail_cleanly() {
    let (dir, ids) = fixture();
    let unknown = "1".repeat(40);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (req(&[&format!("want {unknown}\n"), "0000"]), "not our ref"),
        (req(&["want nothex\n", "0000"]), "not an object id"),
        (req(&["wants it all\n", "0000"]), "expected `want <id>`"),
        (
            req(&[&format!("want {}\n", ids[2]), "0001"]),
            "unexpected Delim",
        ),
        (
            req(&[&format!("want {}\n", ids[2]), "0000", "have zz\n"]),
            "expected `have <id>`",
        ),
        (
            req(&[&format!("want {}\n", ids[2]), "0000", "0000"]),
            "hung up",
        ),
        (
            req(&[&format!("want {}\n", ids[2]), "deepen 0\n", "0000"]),
            "positive depth",
        ),
        (
            req(&[&format!("want {} filter\n", ids[2]), "0000"]),
            "not supported",
        ),
        (b"zzzz".to_vec(), "bad length"),
        (b"ffff".to_vec(), "exceeds the maximum"),
    ];
    for (input, want) in cases {
        let (r, out) = serve(dir.path(), "", &input);
        let e = r.unwrap_err().to_string();
        assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(&input));
        if want == "not our ref" {
            assert!(
                out.contains(&format!("ERR upload-pack: not our ref {unknown}")),
                "{out}"
            );
        }
    }
    // Every truncation of a full request errors or ends, never panics.
    let full = req(&[
        &format!("want {} multi_ack_detailed side-band-64k\n", ids[2]),
        "deepen 1\n",
        "0000",
        &format!("have {}\n", ids[0]),
        "0000",
        "done\n",
    ]);
    for cut in 0..full.len() {
        let _ = serve(dir.path(), "", &full[..cut]);
    }
    // Too many wants.
    let mut many = vec![];
    for _ in 0..=negotiate::MAX_WANTS {
        many.extend(pkt(&format!("want {}\n", ids[2])));
    }
    many.extend(b"0000");
    let e = serve(dir.path(), "", &many).0.unwrap_err().to_string();
    assert!(e.contains("too many wants"), "{e}");
}

#[test]
fn v0_shallow_clone_then_deepen() {
    let (dir, ids) = fixture();
    let want = format!(
        "want {} multi_ack_detailed side-band-64k include-tag\n",
        ids[2]
    );
    let (r, out) = serve(
        dir.path(),
        "",
        &req(&[&want, "deepen 1\n", "0000", "done\n"]),
    );
    let o = r.unwrap();
    assert!(out.contains(&format!("shallow {}\n0000", ids[2])), "{out}");
    assert_eq!(o.packs[0].commits, 1);
    // The tag rides along with include-tag: commit, tree, blob, tag.
    assert_eq!(o.packs[0].objects, 4);
    // Deepen by one from that boundary: the old boundary is unshallowed.
    let shallow = format!("shallow {}\n", ids[2]);
    let have = format!("have {}\n", ids[2]);
    let (r, out) = serve(
        dir.path(),
        "",
        &req(&[
            &want,
            &shallow,
            "deepen 2\n",
            "0000",
            &have,
            "0000",
            "done\n",
        ]),
    );
    let o = r.unwrap();
    assert!(out.contains(&format!("shallow {}\n", ids[1])), "{out}");
    assert!(out.contains(&format!("unshallow {}\n", ids[2])), "{out}");
    assert_eq!(o.packs[0].commits, 1, "just the parent of the old boundary");
}

fn v2(lines: &[&str]) -> Vec<u8> {
    req(lines)
}

#[test]
fn v2_ls_refs_filters_and_annotates() {
    let (dir, ids) = fixture();
    let input = v2(&[
        "command=ls-refs\n",
        "agent=git/2.47\n",
        "object-format=sha1\n",
        "0001",
        "peel\n",
        "symrefs\n",
        "ref-prefix refs/tags/\n",
        "ref-prefix HEAD\n",
        "0000",
        "0000",
    ]);
    let (r, out) = serve(dir.path(), "version=2", &input);
    assert_eq!(r.unwrap().version, Version::V2);
    assert!(out.starts_with("000eversion 2\n"), "{out}");
    assert!(
        out.contains(&format!("{} HEAD symref-target:refs/heads/main\n", ids[2])),
        "{out}"
    );
    assert!(
        out.contains(&format!(" refs/tags/v1 peeled:{}\n", ids[2])),
        "{out}"
    );
    assert!(
        !out.contains(&format!("{} refs/heads/main\n", ids[2])),
        "filtered by prefix: {out}"
    );
    // An empty repository shows an unborn HEAD when asked.
    let empty = tempfile::tempdir().unwrap();
    git(empty.path(), &["init", "-q", "--bare"]);
    let (r, out) = serve(
        empty.path(),
        "version=2",
        &v2(&["command=ls-refs\n", "0001", "symrefs\n", "unborn\n", "0000"]),
    );
    r.unwrap();
    assert!(
        out.contains("unborn HEAD symref-target:refs/heads/main\n"),
        "{out}"
    );
}

#[test]
fn v2_fetch_negotiates_in_separate_requests() {
    let (dir, ids) = fixture();
    let want = format!("want {}\n", ids[2]);
    let unknown = format!("have {}\n", "1".repeat(40));
    // Round 1: nothing common yet → acknowledgments, NAK, flush.
    let mut input = v2(&["command=fetch\n", "0001", &want, &unknown, "0000"]);
    // Round 2: a common commit → ACK, ready, then the pack in the same response.
    input.extend(v2(&[
        "command=fetch\n",
        "0001",
        &want,
        &format!("have {}\n", ids[1]),
        "ofs-delta\n",
        "no-progress\n",
        "0000",
        "0000",
    ]));
    let (r, out) = serve(dir.path(), "version=2", &input);
    let o = r.unwrap();
    assert!(out.contains("0014acknowledgments\n0008NAK\n0000"), "{out}");
    let round2 = format!(
        "0014acknowledgments\n0031ACK {}\n000aready\n0001000dpackfile\n",
        ids[1]
    );
    assert!(out.contains(&round2), "{out}");
    assert_eq!(o.packs.len(), 1);
    assert_eq!(o.packs[0].commits, 1);
    assert!(
        !out.contains("Enumerating objects"),
        "no progress with no-progress"
    );
    // wait-for-done: never `ready`, even when it could be.
    let input = v2(&[
        "command=fetch\n",
        "0001",
        &want,
        &format!("have {}\n", ids[1]),
        "wait-for-done\n",
        "0000",
    ]);
    let (r, out) = serve(dir.path(), "version=2", &input);
    assert!(r.unwrap().packs.is_empty());
    assert!(out.contains(&format!("ACK {}\n0000", ids[1])), "{out}");
}

#[test]
fn v2_shallow_info_precedes_the_pack() {
    let (dir, ids) = fixture();
    let input = v2(&[
        "command=fetch\n",
        "0001",
        &format!("want {}\n", ids[2]),
        "deepen 2\n",
        "done\n",
        "0000",
    ]);
    let (r, out) = serve(dir.path(), "version=2", &input);
    assert_eq!(r.unwrap().packs[0].commits, 2);
    let section = format!(
        "0011shallow-info\n0035shallow {}\n0001000dpackfile\n",
        ids[1]
    );
    assert!(out.contains(&section), "{out}");
    // deepen-since after the second commit keeps only the tip (all three
    // share a date here, so the cut-off keeps all of them).
    let input = v2(&[
        "command=fetch\n",
        "0001",
        &format!("want {}\n", ids[2]),
        "deepen-since 1700000001\n",
        "done\n",
        "0000",
    ]);
    let e = serve(dir.path(), "version=2", &input)
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("no commits selected"), "{e}");
    let input = v2(&[
        "command=fetch\n",
        "0001",
        &format!("want {}\n", ids[2]),
        &format!("deepen-not {}\n", "refs/tags/v1"),
        "done\n",
        "0000",
    ]);
    let e = serve(dir.path(), "version=2", &input)
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("no commits selected"), "{e}");
}

#[test]
fn v2_hostile_requests_fail_cleanly_with_err_lines() {
    let (dir, ids) = fixture();
    let want = format!("want {}\n", ids[2]);
    let unknown = "1".repeat(40);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (v2(&["command=push\n", "0000"]), "unknown command `push`"),
        (
            v2(&["command=ls-refs\n", "frobnicate=1\n", "0000"]),
            "unknown capability `frobnicate=1`",
        ),
        (
            v2(&["command=fetch\n", "object-format=sha256\n", "0000"]),
            "object-format `sha256`",
        ),
        // Arguments without the delimiter read as capabilities.
        (
            v2(&["command=fetch\n", &want, "0000"]),
            "unknown capability `want",
        ),
        (v2(&["fetch\n", "0000"]), "expected `command=<name>`"),
        (
            v2(&["command=fetch\n", "0001", "0001", "0000"]),
            "unexpected Delim",
        ),
        (
            v2(&[
                "command=fetch\n",
                "0001",
                &format!("want {unknown}\n"),
                "done\n",
                "0000",
            ]),
            "not our ref",
        ),
        (
            v2(&["command=fetch\n", "0001", "want xyz\n", "0000"]),
            "not an object id",
        ),
        (
            v2(&[
                "command=fetch\n",
                "0001",
                &want,
                "filter blob:none\n",
                "0000",
            ]),
            "--filter) is not supported",
        ),
        (
            v2(&["command=fetch\n", "0001", &want, "sideband-all\n", "0000"]),
            "unexpected argument `sideband-all`",
        ),
        (
            v2(&[
                "command=fetch\n",
                "0001",
                &want,
                "deepen 1\n",
                "deepen-since 5\n",
                "0000",
            ]),
            "cannot be used together",
        ),
        (
            v2(&[
                "command=fetch\n",
                "0001",
                &want,
                "deepen-not nope\n",
                "done\n",
                "0000",
            ]),
            "not a ref here",
        ),
        (
            v2(&["command=ls-refs\n", "0001", "wat\n", "0000"]),
            "unexpected argument `wat`",
        ),
        (v2(&["command=fetch\n", "0001", &want]), "hung up"),
    ];
    for (input, want_msg) in cases {
        let (r, out) = serve(dir.path(), "version=2", &input);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(want_msg),
            "{}: {e}",
            String::from_utf8_lossy(&input)
        );
        if matches!(
            serve(dir.path(), "version=2", &input).0,
            Err(UploadError::Refused(_))
        ) {
            assert!(out.contains("ERR "), "the client is told: {out}");
        }
    }
    // A huge want list is refused, not accumulated without bound.
    let mut many = v2(&["command=fetch\n", "0001"]);
    for _ in 0..=negotiate::MAX_WANTS {
        many.extend(pkt(&want));
    }
    many.extend(b"0000");
    let e = serve(dir.path(), "version=2", &many)
        .0
        .unwrap_err()
        .to_string();
    assert!(e.contains("too many wants"), "{e}");
    // Every truncation of a valid session errors or ends, never panics.
    let full = v2(&[
        "command=fetch\n",
        "agent=x\n",
        "0001",
        &want,
        "deepen 1\n",
        "done\n",
        "0000",
        "0000",
    ]);
    for cut in 0..full.len() {
        let _ = serve(dir.path(), "version=2", &full[..cut]);
    }
    // No wants: an empty response, the session goes on.
    let (r, out) = serve(
        dir.path(),
        "version=2",
        &v2(&["command=fetch\n", "0001", "0000", "0000"]),
    );
    r.unwrap();
    assert!(out.ends_with("0000"), "{out}");
}

#[test]
fn protocol_versions_from_git_protocol() {
    assert_eq!(Version::from_git_protocol(""), Version::V0);
    assert_eq!(Version::from_git_protocol("version=1"), Version::V1);
    assert_eq!(Version::from_git_protocol("version=2"), Version::V2);
    assert_eq!(Version::from_git_protocol("foo=bar:version=2"), Version::V2);
    assert_eq!(Version::from_git_protocol("version=3"), Version::V0);
}
