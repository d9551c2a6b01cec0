//! Repositories are private to the server's user whatever the umask: with
//! a umask of 000 (everything world-writable by default), `repos/` and
//! every directory below it end up 0700 and every file 0600 after a real
//! push. Its own test binary, because the umask is per process.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::*;

fn modes(root: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    let m = std::fs::symlink_metadata(root).unwrap();
    out.push((root.to_path_buf(), m.is_dir(), m.mode() & 0o7777));
    if m.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            modes(&e.unwrap().path(), out);
        }
    }
}

#[test]
fn repositories_are_private_under_a_permissive_umask() {
    // SAFETY: umask only sets this process's file creation mask; this test
    // binary runs nothing else.
    unsafe { libc::umask(0) };
    let s = Server::start(|_| {});
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "a", "a\n", "a");
    git_ok(w, &["push", "-q", &s.url("app"), "main"], &s.ssh());
    commit(w, "dir/b", "b\n", "b");
    git_ok(
        w,
        &[
            "push",
            "-q",
            &s.url("app"),
            "main",
            "main:refs/heads/topic/x",
        ],
        &s.ssh(),
    );
    // The umask was in force: a file made the ordinary way is 0666.
    let probe = s.dir.path().join("probe");
    std::fs::write(&probe, "x").unwrap();
    assert_eq!(std::fs::metadata(&probe).unwrap().mode() & 0o777, 0o666);

    let repos = s.dir.path().join("home/repos");
    let mut all = vec![];
    modes(&repos, &mut all);
    assert!(all.len() > 10, "{all:?}");
    let wrong: Vec<_> = all
        .iter()
        .filter(|(_, dir, mode)| *mode != if *dir { 0o700 } else { 0o600 })
        .collect();
    assert!(wrong.is_empty(), "not private: {wrong:#?}");
    // And the repository works.
    let listed = git_ok(w, &["ls-remote", &s.url("app")], &s.ssh());
    assert!(listed.contains("refs/heads/topic/x"), "{listed}");
}
