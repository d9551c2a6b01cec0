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

/// Which of the client's output streams a command writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The client's stdout.
    Stdout,
    /// The client's stderr.
    Stderr,
}

/// Where an admin command writes while it runs: straight to the SSH
/// channel, so long commands (`logs -f`, `restart`) show progress live.
pub trait CommandOutput: Send + Sync {
    /// Writes `text` as is (add the newline yourself).
    fn write<'a>(&'a self, stream: Stream, text: &'a str) -> BoxFuture<'a, ()>;
}

/// Non-git commands (`ssh git@host apps`).
pub trait Commands: Send + Sync + 'static {
    /// Runs `line` for `user`, writing to `out` as it goes; resolves to the
    /// exit status. The future is dropped when the client goes away (a
    /// Ctrl-C on `logs -f`), so it must not leave work half done on drop.
    fn run<'a>(
        &'a self,
        user: &'a str,
        line: &'a str,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32>;
}
