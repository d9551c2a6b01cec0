//! The seams the `byteport` binary fills in: who a key belongs to and what
//! they may touch, what a push to a deploy branch does, and the admin
//! commands. gitd never reads the state store itself.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// A boxed, sendable future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Read (fetch, clone) or write (push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Fetch or clone.
    Read,
    /// Push.
    Write,
}

/// Authentication and authorization.
pub trait Authority: Send + Sync + 'static {
    /// The user owning the key with this `SHA256:` fingerprint; `None`
    /// refuses the connection.
    fn user_for_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;
    /// May `user` have `access` to `app`? For `Write` on an app that does
    /// not exist yet, the implementation creates it (owned by `user`) and
    /// allows. `Err` is shown to the client.
    fn authorize<'a>(
        &'a self,
        user: &'a str,
        app: &'a str,
        access: Access,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// A push to a deploy branch, before its ref moves.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The app.
    pub app: String,
    /// The bare repository (the pack is already in its object database).
    pub repo: PathBuf,
    /// The ref being updated, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// Its current value (all zeros when new).
    pub old: String,
    /// The pushed commit.
    pub new: String,
    /// Who pushed.
    pub user: String,
    /// `git push -o` options, in order.
    pub push_options: Vec<String>,
}

/// Receives progress lines (sent as `remote:` lines).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// What a push to a deploy branch does.
pub trait DeployHook: Send + Sync + 'static {
    /// Deploys; `Err(reason)` rejects the ref with `deploy failed: reason`.
    fn deploy<'a>(
        &'a self,
        req: &'a DeployRequest,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The reply to an admin command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandReply {
    /// For the client's stdout.
    pub stdout: String,
    /// For the client's stderr.
    pub stderr: String,
    /// Exit status.
    pub code: u32,
}

/// Non-git commands (`ssh git@host apps`).
pub trait Commands: Send + Sync + 'static {
    /// Runs `line` for `user`.
    fn run<'a>(&'a self, user: &'a str, line: &'a str) -> BoxFuture<'a, CommandReply>;
}
