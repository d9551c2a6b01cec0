//! receive-pack against hostile packs sent over real OpenSSH: a pack that
//! indexes but leaves out objects, a pack header claiming billions of
//! objects, garbage after the commands. Refs never move, nothing is left
//! behind, the repository stays sound.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

fn pkt(s: &str) -> Vec<u8> {
    format!("{:04x}{s}", s.len() + 4).into_bytes()
}

/// A pack with exactly `ids` (no closure), made by the git client.
fn pack_of(dir: &Path, ids: &[&str]) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "-q"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", ids.join("\n")).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn leftovers(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".pack") && !n.ends_with(".idx") && !n.ends_with(".rev"))
        .collect()
}

#[test]
fn incomplete_and_absurd_packs_move_no_ref() {
    let s = Server::start(|_| {});
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "a", "a\n", "a");
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    commit(w, "b/c", "new file\n", "b");
    let head = git_ok(w, &["rev-parse", "HEAD"], "");
    let tree = git_ok(w, &["rev-parse", "HEAD^{tree}"], "");
    let zero = "0".repeat(40);
    let repo = s.repo("app");
    let before = git_ok(&repo, &["for-each-ref"], "");

    let command = format!("{zero} {head} refs/heads/evil\0report-status side-band-64k");
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![];
    // The commit alone: its tree and blob are missing.
    cases.push((
        "commit without its tree",
        pack_of(w, &[&head]),
        "missing tree",
    ));
    // Commit and root tree, but not the subtree with the new blob.
    cases.push((
        "commit without a subtree",
        pack_of(w, &[&head, &tree]),
        "missing tree",
    ));
    // A header claiming u32::MAX objects and then nothing.
    let mut absurd = b"PACK\0\0\0\x02\xff\xff\xff\xff".to_vec();
    absurd.extend([0u8; 20]);
    cases.push(("absurd object count", absurd, "unpack"));
    for (what, pack, want) in cases {
        let mut input = pkt(&command);
        input.extend(b"0000");
        input.extend(&pack);
        let out = s.exec("git-receive-pack 'app.git'", &input, &[]);
        let t = text(&out);
        assert!(t.contains(want), "{what}: {t}");
        if want != "unpack" {
            assert!(
                t.contains("ng refs/heads/evil missing necessary objects"),
                "{what}: {t}"
            );
        }
        assert_eq!(
            git_ok(&repo, &["for-each-ref"], ""),
            before,
            "{what}: no ref moved"
        );
        assert!(
            leftovers(&repo).is_empty(),
            "{what}: {:?}",
            leftovers(&repo)
        );
    }
    let out = Command::new("git")
        .args(["fsck", "--full", "--no-dangling"])
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The honest push still works afterwards.
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    assert_eq!(git_ok(&repo, &["rev-parse", "main"], ""), head);
}
