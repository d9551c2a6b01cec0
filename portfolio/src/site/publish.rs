//! `byteport portfolio publish`: the exported site committed to a git
//! remote the owner configures (e.g. a GitHub Pages repository), one commit
//! per publish.
//!
//! This uses the `git` CLI rather than gix: the remote is the owner's (SSH
//! with their agent and known_hosts, HTTPS with their credential helper),
//! which the git CLI already handles as the owner expects, and gix has no
//! push. Prompts are disabled (`GIT_TERMINAL_PROMPT=0`, SSH `BatchMode`),
//! so a missing credential fails with git's message instead of hanging.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Site, SiteFile};

/// Where to publish.
#[derive(Debug, Clone)]
pub struct PublishTarget {
    /// The remote: a URL (`git@github.com:alice/alice.github.io.git`,
    /// `https://…`) or a local path.
    pub remote: String,
    /// The branch to commit to (`main`, `gh-pages`).
    pub branch: String,
    /// A directory BytePort keeps for this remote's working copy (created
    /// when missing; reused between publishes).
    pub work_dir: PathBuf,
    /// Commit author name.
    pub author_name: String,
    /// Commit author e-mail.
    pub author_email: String,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PublishOutcome {
    /// A new commit was pushed.
    Committed {
        /// Its id.
        commit: String,
        /// Files in the site.
        files: usize,
    },
    /// The remote already had exactly this site; nothing was pushed.
    Unchanged,
}

/// Publish failures.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A git command failed.
    #[error("`git {args}` failed: {stderr}")]
    Git {
        /// The arguments.
        args: String,
        /// git's own message.
        stderr: String,
    },
    /// git could not be run, or the work directory not written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Files of the remote that a publish keeps (owner-made, not ours).
const KEEP: &[&str] = &[".git", "CNAME"];

fn git(dir: &Path, args: &[&str]) -> Result<String, PublishError> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    let out = cmd.output().map_err(|source| PublishError::Io {
        what: "running git (is it installed?)".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(PublishError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Commits `site` to `target` and pushes it. Blocking (runs `git`).
pub fn publish(site: &Site, target: &PublishTarget) -> Result<PublishOutcome, PublishError> {
    let dir = &target.work_dir;
    let io = |what: String| move |source| PublishError::Io { what, source };
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q"])?;
        git(dir, &["remote", "add", "origin", &target.remote])?;
    } else {
        git(dir, &["remote", "set-url", "origin", &target.remote])?;
    }
    let branch_ref = format!("refs/heads/{}", target.branch);
    let remote_has_branch = !git(dir, &["ls-remote", "--heads", "origin", &branch_ref])?.is_empty();
    if remote_has_branch {
        git(dir, &["fetch", "-q", "--depth=1", "origin", &branch_ref])?;
        git(dir, &["checkout", "-q", "-B", &target.branch, "FETCH_HEAD"])?;
        git(dir, &["reset", "-q", "--hard", "FETCH_HEAD"])?;
    } else {
        // A new (or empty) remote: start the branch from nothing.
        git(dir, &["checkout", "-q", "--orphan", &target.branch])?;
        let _ = git(dir, &["rm", "-rqf", "--ignore-unmatch", "."]);
    }

    // Replace the working tree with the site.
    for entry in std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
        let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
        let name = entry.file_name();
        if KEEP.iter().any(|k| name == *k) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(format!("removing {}", path.display())))?;
    }
    for (rel, file) in &site.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        match file {
            SiteFile::Bytes { bytes, .. } => std::fs::write(&path, bytes).map(|_| ()),
            SiteFile::Image { source } => std::fs::copy(source, &path).map(|_| ()),
        }
        .map_err(io(format!("writing {}", path.display())))?;
    }
    // GitHub Pages would otherwise run Jekyll over the files.
    std::fs::write(dir.join(".nojekyll"), b"").map_err(io("writing .nojekyll".into()))?;

    git(dir, &["add", "-A"])?;
    let unchanged = remote_has_branch && git(dir, &["diff", "--cached", "--quiet"]).is_ok();
    if unchanged {
        return Ok(PublishOutcome::Unchanged);
    }
    let projects = site.paths().filter(|p| p.starts_with("projects/")).count();
    let message = format!("Publish portfolio ({projects} project(s))");
    git(
        dir,
        &[
            "-c",
            &format!("user.name={}", target.author_name),
            "-c",
            &format!("user.email={}", target.author_email),
            "commit",
            "-q",
            "--no-verify",
            "-m",
            &message,
        ],
    )?;
    git(
        dir,
        &["push", "-q", "origin", &format!("HEAD:{branch_ref}")],
    )?;
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    Ok(PublishOutcome::Committed {
        commit,
        files: site.files.len() + 1,
    })
}
