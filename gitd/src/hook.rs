//! The seams the `byteport` binary fills in: who a key belongs to and what
//! they may touch ([`Authority`]), what a push to a deploy branch does
//! ([`DeployHook`]), and the admin commands ([`Commands`]). gitd never
//! reads the state store itself.
//!
//! Failures come back as typed errors ([`AuthError`], [`DeployError`])
//! that say what failed; the words the git client sees for each are chosen
//! in one place, [`crate::wording`], and internals (a store error's chain)
//! go to the server log only.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::terminal::Interactive;

/// A boxed, sendable future (object-safe async trait methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's error, kept whole as the source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Read (fetch, clone) or write (push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Fetch or clone.
    Read,
    /// Push.
    Write,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "push to",
        })
    }
}

/// Why a key lookup failed or access was not given.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `user` may not have `access` to `app`. Also the answer for an app
    /// that does not exist (to a read), so that app names do not leak: the
    /// client is told "does not exist or you have no access to it" and
    /// who can share it.
    #[error("{user} may not {access} app `{app}`")]
    Denied {
        /// Who asked.
        user: String,
        /// Which app.
        app: String,
        /// What for.
        access: Access,
    },
    /// A policy of the platform refuses (a quota, a reserved name, an app
    /// being destroyed); `reason` is written for the user and shown as is.
    #[error("refused: {reason}")]
    Refused {
        /// For the user, e.g. `you own 10 apps, the most allowed`.
        reason: String,
    },
    /// The store (or whatever answers) failed; the user can only retry.
    /// The chain goes to the server log, never to the client.
    #[error("the access check failed")]
    Backend(#[source] BoxError),
}

/// Authentication and authorization.
pub trait Authority: Send + Sync + 'static {
    /// The user owning the key with this `SHA256:` fingerprint; `Ok(None)`
    /// refuses the key (the client may offer another). An `Err` (only
    /// [`AuthError::Backend`] makes sense here) refuses it too, and is
    /// logged.
    fn user_for_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AuthError>>;
    /// May `user` have `access` to `app`? For `Write` on an app that does
    /// not exist yet, the implementation creates it (owned by `user`) and
    /// allows. The error is worded for the client by
    /// [`crate::wording::auth`].
    fn authorize<'a>(
        &'a self,
        user: &'a str,
        app: &'a str,
        access: Access,
    ) -> BoxFuture<'a, Result<(), AuthError>>;
}

/// Why a deploy did not make the pushed commit live. The pushed ref is
/// not moved; the client sees `! [remote rejected] main -> main (deploy
/// failed: ...)` worded by [`crate::wording::deploy`].
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The commit cannot be deployed as it is (manifest, build, health
    /// check); `reason` is written for the user and shown as is, e.g.
    /// `invalid Byteport manifest: Byteport:11:8: ...`.
    #[error("rejected: {reason}")]
    Rejected {
        /// For the user.
        reason: String,
    },
    /// The app's deploy queue could not take this one (another deploy
    /// runs and this one may not wait); `what` says which, e.g.
    /// `deploy #5 (pushed by alice) is still running`.
    #[error("busy: {what}")]
    Busy {
        /// What holds the queue, for the user.
        what: String,
    },
    /// Cancelled before it finished; `by` says by whom or what, e.g.
    /// `alice (byteport deploys cancel)` or `a newer push`.
    #[error("cancelled by {by}")]
    Cancelled {
        /// Who or what cancelled it.
        by: String,
    },
    /// The daemon stopped or restarted while the deploy ran; the previous
    /// version is still live.
    #[error("interrupted: {reason}")]
    Interrupted {
        /// What happened, e.g. `byteport restarted`.
        reason: String,
    },
    /// The deploy did not finish within its deadline.
    #[error("did not finish within {deadline:?}")]
    TimedOut {
        /// The deadline it had.
        deadline: Duration,
    },
    /// The platform failed (a store error, a full disk, a bug). The chain
    /// goes to the server log; the client is told to retry or ask the
    /// operator.
    #[error("internal error")]
    Internal(#[source] BoxError),
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
    /// Cancelled when the git client goes away (Ctrl-C on `git push`, a
    /// dropped connection): the hook decides what that means for the
    /// deploy (the platform cancels it before its switch, finishes it
    /// after).
    pub client_gone: tokio_util::sync::CancellationToken,
}

/// Receives progress lines (sent as `remote:` lines).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// What a push to a deploy branch does.
///
/// gitd awaits [`DeployHook::deploy`] before it moves the ref, and moves
/// it only on `Ok`. The future runs on a thread of its own and is always
/// driven to its end, so a deploy is never cut in the middle, whatever the
/// client does. **When the git client goes away mid-deploy** (Ctrl-C on
/// `git push`, a dropped connection) gitd stops waiting: the ref is not
/// moved, the connection and the ref's claim are freed, and the verdict,
/// when it comes, goes to the server log only; the platform reports it in
/// the app's log and deploy history, where the user finds it; the hook
/// learns of it through [`DeployRequest::client_gone`]. The branch
/// then still points at its previous commit even if the deploy made the
/// pushed one live; the next push of that branch (its old id is still the
/// previous commit) moves it. The future may borrow only `self`, `req` and
/// `progress` (progress lines after the client left go nowhere).
pub trait DeployHook: Send + Sync + 'static {
    /// Deploys `req.new`, sending `progress` lines as it goes (each shown
    /// as a `remote:` line while the client is there).
    fn deploy<'a>(
        &'a self,
        req: &'a DeployRequest,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<(), DeployError>>;
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

    /// Writes raw bytes as is: what a terminal program in the VM sends
    /// (escape sequences, `\r\n` from its pty, text cut mid-character).
    /// gitd's own output sends them untranslated; the default, for
    /// outputs that only take text, writes them as lossy UTF-8.
    fn write_bytes<'a>(&'a self, stream: Stream, bytes: &'a [u8]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let text = String::from_utf8_lossy(bytes);
            self.write(stream, &text).await
        })
    }
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

    /// Runs `line` for `user` with the client's terminal, stdin and window
    /// size in `session` (see [`Interactive`]); otherwise as [`Commands::run`],
    /// including the drop when the client goes away. gitd calls this for
    /// every admin command. The default ignores `session` (its input is
    /// discarded as it arrives) and calls [`Commands::run`], so commands
    /// that need no input need not implement it.
    fn run_interactive<'a>(
        &'a self,
        user: &'a str,
        line: &'a str,
        session: Interactive,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        drop(session);
        self.run(user, line, out)
    }
}
