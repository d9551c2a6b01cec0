//! The real `git` and `ssh-keygen`, as every test suite drives them: a
//! fixed identity and branch name, no prompts, and a message with the
//! command's output when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `git` in `dir` with a test identity (`Test <test@example.com>`),
/// `main` as the default branch and no terminal prompts; with `ssh`, as
/// `GIT_SSH_COMMAND`. Returns the output whatever the exit status.
pub fn git(dir: &Path, args: &[&str], ssh: Option<&str>) -> Output {
    git_env(dir, args, ssh, &[])
}

/// [`git`] with extra environment (e.g. `GIT_PROTOCOL`, fixed dates).
pub fn git_env(dir: &Path, args: &[&str], ssh: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("git");
    c.args([
        "-c",
        "user.name=Test",
        "-c",
        "user.email=test@example.com",
        "-c",
        "init.defaultBranch=main",
    ])
    .args(args)
    .current_dir(dir)
    .env("GIT_TERMINAL_PROMPT", "0")
    // Never inherited from whoever runs the tests; `env` may set it.
    .env_remove("GIT_PROTOCOL");
    if let Some(s) = ssh {
        c.env("GIT_SSH_COMMAND", s);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("git is needed (apt-get install git): {e}"))
}

/// [`git`] without SSH that must succeed; returns its trimmed stdout.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args, None);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// stdout then stderr of a finished command.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh ed25519 key pair made by the real `ssh-keygen` in `dir`;
/// returns the private key's path (the public key is beside it, `.pub`).
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap_or_else(|e| panic!("ssh-keygen (openssh-client) is needed: {e}"));
    assert!(st.success(), "ssh-keygen failed for {}", key.display());
    key
}
