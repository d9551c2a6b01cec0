//! receive-pack's second half: claim each ref ([`super::claims`]), check
//! it against the current refs, run the deploy hook for deploy branches
//! (progress relayed live, keepalives while it is silent, given up when
//! the client leaves), and move the refs that passed in one transaction
//! with old-id checks.
//!
//! When the client leaves while a deploy hook runs, gitd stops waiting
//! (the hook's future is dropped; the platform's job goes on and reports
//! in the app's log), that ref is not moved, and no later command of the
//! push starts: refs that passed before the client left are still moved,
//! the others keep their previous values. The pushed objects stay in the
//! object database, unreferenced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;
use gix::ObjectId;

use super::claims::Claim;
use super::commands::Command;
use super::connectivity::ConnectivityError;
use super::Receive;
use crate::hook::{DeployError, DeployRequest};

/// A silent deploy sends a keepalive this often, so neither the client's
/// network nor the server's own idle backstop drops the connection.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

/// Why one ref of a push was not moved. [`crate::wording::ref_rejected`]
/// words it for the client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefRejection {
    /// The pack was not accepted, so no ref moves.
    #[error("the pack was not accepted")]
    Unpack,
    /// The client expected a new ref, but it exists.
    #[error("the ref already exists")]
    AlreadyExists,
    /// The ref is not at the old id the client sent.
    #[error("the ref moved since the client fetched")]
    Stale,
    /// The new commit is not in the repository.
    #[error("the pushed object is missing")]
    MissingObjects,
    /// The pushed history leaves out objects.
    #[error("the pushed history is incomplete")]
    Incomplete(#[source] Arc<ConnectivityError>),
    /// The current refs cannot be read.
    #[error("cannot read the refs")]
    RefsUnreadable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// Another push is updating this ref.
    #[error("another push to this ref is in progress")]
    InProgress,
    /// The deploy hook refused.
    #[error("deploy failed")]
    Deploy(#[source] Arc<DeployError>),
    /// The client left while the deploy hook ran (or before it started).
    #[error("the client left before the deploy finished")]
    ClientGone,
    /// The deploy hook panicked.
    #[error("the deploy hook panicked")]
    HookPanicked,
    /// Another ref of this atomic push was rejected.
    #[error("another ref of this atomic push was rejected")]
    Atomic,
    /// The ref transaction failed (a lock held, an old-id check lost).
    #[error("the ref transaction failed")]
    Transaction(#[source] Arc<gix::Error>),
}

/// Ways to talk to the client while refs are updated.
pub trait Feedback {
    /// A `remote:` line.
    fn progress(&mut self, text: &str);
    /// An empty packet that keeps the connection alive.
    fn keepalive(&mut self);
}

/// Checks and deploys each command, then updates the refs of those that
/// passed (all or none with `atomic`). One result per command.
pub fn apply(
    ctx: &Receive<'_>,
    repo: &gix::Repository,
    commands: &[Command],
    push_options: &[String],
    atomic: bool,
    feedback: &mut dyn Feedback,
) -> Vec<Result<(), RefRejection>> {
    // Nothing moves towards an incomplete history.
    let tips: Vec<ObjectId> = commands
        .iter()
        .filter(|c| !c.is_delete())
        .map(|c| c.new)
        .collect();
    let connected = match crate::upload::refs::Refs::read(repo) {
        Ok(refs) => {
            let existing: Vec<ObjectId> = refs.tips().collect();
            super::connectivity::check(repo, &tips, &existing)
                .map_err(|e| RefRejection::Incomplete(Arc::new(e)))
        }
        Err(e) => Err(RefRejection::RefsUnreadable(Arc::new(e))),
    };
    // Claims are held until the transaction is done.
    let mut claims: Vec<Claim<'_>> = vec![];
    let mut results: Vec<Result<(), RefRejection>> = commands
        .iter()
        .map(|c| {
            if ctx.client_gone.is_cancelled() {
                return Err(RefRejection::ClientGone);
            }
            match &connected {
                Err(e) if !c.is_delete() => return Err(e.clone()),
                _ => {}
            }
            let claim = ctx
                .claims
                .claim(ctx.repo, &c.name)
                .ok_or(RefRejection::InProgress)?;
            claims.push(claim);
            check_and_deploy(ctx, repo, c, push_options, feedback)
        })
        .collect();
    if atomic && results.iter().any(|r| r.is_err()) {
        results = results
            .into_iter()
            .map(|r| r.and(Err(RefRejection::Atomic)))
            .collect();
    }
    let edits: Vec<RefEdit> = commands
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(c, _)| edit_for(c))
        .collect();
    if !edits.is_empty() {
        let committer = gix::actor::SignatureRef {
            name: "byteport".into(),
            email: "gitd@byteport.localhost".into(),
            time: "0 +0000",
        };
        if let Err(e) = repo.edit_references_as(edits, Some(committer)) {
            tracing::warn!(app = %ctx.app, error = %crate::wording::chain(&e), "gitd: ref transaction failed");
            let e = Arc::new(e);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(RefRejection::Transaction(e.clone()));
            }
        }
        // Make the moved refs durable (and private) before the client
        // hears `ok`.
        let mut written = vec![];
        for (c, _) in commands.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
            let file = repo.path().join(&c.name);
            for p in [Some(file.as_path()), file.parent()].into_iter().flatten() {
                if let Ok(f) = std::fs::File::open(p) {
                    let _ = f.sync_all();
                }
            }
            written.push(file);
            written.push(repo.path().join("logs").join(&c.name));
        }
        if let Err(e) = crate::repo::make_written_private(repo.path(), &written) {
            tracing::warn!(app = %ctx.app, error = %crate::wording::chain(&e), "gitd: cannot make new ref files private");
        }
    }
    drop(claims);
    results
}

fn current(repo: &gix::Repository, name: &str) -> Option<ObjectId> {
    repo.try_find_reference(name)
        .ok()
        .flatten()
        .and_then(|r| r.target().try_id().map(|id| id.to_owned()))
}

fn check_and_deploy(
    ctx: &Receive<'_>,
    repo: &gix::Repository,
    c: &Command,
    push_options: &[String],
    feedback: &mut dyn Feedback,
) -> Result<(), RefRejection> {
    let now = current(repo, &c.name);
    match (now, c.old.is_null()) {
        (Some(id), false) if id == c.old => {}
        (None, true) => {}
        (Some(_), true) => return Err(RefRejection::AlreadyExists),
        _ => return Err(RefRejection::Stale),
    }
    if c.is_delete() {
        return Ok(());
    }
    if !repo.has_object(c.new) {
        return Err(RefRejection::MissingObjects);
    }
    let branch = c.name.strip_prefix("refs/heads/");
    if !branch.is_some_and(|b| ctx.deploy_branches.iter().any(|d| d == b)) {
        return Ok(());
    }
    let req = DeployRequest {
        app: ctx.app.to_string(),
        repo: ctx.repo.to_path_buf(),
        git_ref: c.name.clone(),
        old: c.old.to_string(),
        new: c.new.to_string(),
        user: ctx.user.to_string(),
        push_options: push_options.to_vec(),
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let hook = ctx.hook;
    let gone = &ctx.client_gone;
    let sender = std::sync::Mutex::new(tx);
    let relay = move |l: &str| {
        let _ = sender.lock().map(|s| s.send(l.to_string()));
    };
    let verdict = std::thread::scope(|scope| {
        // The hook's future is dropped if the client leaves first.
        let handle = scope.spawn(|| {
            ctx.runtime.block_on(async {
                tokio::select! {
                    biased;
                    r = hook.deploy(&req, &relay) => Some(r),
                    () = gone.cancelled() => None,
                }
            })
        });
        // Forward progress lines live while the hook runs.
        let mut last = Instant::now();
        while !handle.is_finished() {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    feedback.progress(&l);
                    last = Instant::now();
                }
                Err(_) if last.elapsed() >= KEEPALIVE_EVERY => {
                    feedback.keepalive();
                    last = Instant::now();
                }
                Err(_) => {}
            }
        }
        while let Ok(l) = rx.try_recv() {
            feedback.progress(&l);
        }
        handle.join()
    });
    match verdict {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(e))) => {
            tracing::info!(app = %ctx.app, git_ref = %c.name, error = %crate::wording::chain(&e), "gitd: deploy failed");
            Err(RefRejection::Deploy(Arc::new(e)))
        }
        Ok(None) => {
            tracing::info!(app = %ctx.app, git_ref = %c.name, commit = %c.new, "gitd: the client left during the deploy; the ref stays, the deploy job goes on");
            Err(RefRejection::ClientGone)
        }
        Err(_) => Err(RefRejection::HookPanicked),
    }
}

fn edit_for(c: &Command) -> RefEdit {
    let expected = if c.old.is_null() {
        PreviousValue::MustNotExist
    } else {
        PreviousValue::MustExistAndMatch(Target::Object(c.old))
    };
    let change = if c.is_delete() {
        Change::Delete {
            expected,
            log: RefLog::AndReference,
        }
    } else {
        Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "push".into(),
            },
            expected,
            new: Target::Object(c.new),
        }
    };
    RefEdit {
        change,
        name: c
            .name
            .as_str()
            .try_into()
            .expect("validated in parse_command"),
        deref: false,
    }
}
