//! Shared by the portfolio tests: a real SQLite-backed store, real git
//! repositories made with the git CLI, and HTTP servers on loopback.
#![allow(dead_code)]

pub mod sqlite_store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(unused_imports)]
pub use sqlite_store::SqliteStore;

/// Runs git in `dir`, panicking with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.invalid")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository holding `commits` commits; each commit writes its
/// files (path, bytes) with the given author e-mail and date. Returns the
/// bare repo's path and the last commit id.
/// One commit: author e-mail, Unix time, files (path, bytes).
pub type CommitSpec<'a> = (&'a str, i64, Vec<(&'a str, Vec<u8>)>);

pub fn bare_repo(root: &Path, commits: &[CommitSpec<'_>]) -> (PathBuf, String) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for (email, time, files) in commits {
        for (path, bytes) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        git(&work, &["add", "-A"]);
        let date = format!("@{time} +0000");
        let out = Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["commit", "-q", "--allow-empty", "-m", "change"])
            .env("GIT_AUTHOR_NAME", "Someone")
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_NAME", "Someone")
            .env("GIT_COMMITTER_EMAIL", email)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bare = root.join("app.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(out.status.success());
    let head = git(&bare, &["rev-parse", "HEAD"]);
    (bare, head)
}

/// Serves `router` on a fresh loopback port until the test ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// The repository's `examples/static-site/public` directory.
pub fn static_site_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/static-site/public")
}
