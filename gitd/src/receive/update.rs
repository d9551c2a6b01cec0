//! receive-pack's second half: claim each ref ([`super::claims`]), check
//! it against the current refs, run the deploy hook for deploy branches
//! (progress relayed live, keepalives while it is silent, given up when
//! the client leaves), and move the refs that passed in one transaction
//! with old-id checks.
//!
//! The hook runs on a thread of its own. When the client leaves while it
//! runs, gitd stops waiting for it: that ref is not moved, no later
//! command of the push starts (refs that passed before the client left
//! are still moved, the others keep their previous values), the ref's
//! claim is released and receive-pack ends. The hook itself is driven to
//! its end on its thread, so a deploy is never cut in the middle; its
//! verdict goes to the server log (and, from the platform, to the app's
//! log). The pushed objects stay in the object database, unreferenced.

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
        client_gone: ctx.client_gone.clone(),
    };
    let verdict = match start_deploy(ctx, req) {
        Ok(running) => await_deploy(ctx, running, feedback),
        Err(e) => Some(Err(Verdict::Failed(DeployError::Internal(Box::new(e))))),
    };
    match verdict {
        Some(Ok(())) => Ok(()),
        Some(Err(Verdict::Failed(e))) => {
            tracing::info!(app = %ctx.app, git_ref = %c.name, error = %crate::wording::chain(&e), "gitd: deploy failed");
            Err(RefRejection::Deploy(Arc::new(e)))
        }
        Some(Err(Verdict::Panicked)) => Err(RefRejection::HookPanicked),
        None => {
            tracing::info!(app = %ctx.app, git_ref = %c.name, commit = %c.new, "gitd: the client left during the deploy; the ref stays where it was, the deploy goes on");
            Err(RefRejection::ClientGone)
        }
    }
}

/// How a deploy ended, other than well.
enum Verdict {
    Failed(DeployError),
    Panicked,
}

/// A deploy running on its own thread: its progress lines and verdict.
struct Running {
    progress: std::sync::mpsc::Receiver<String>,
    verdict: std::sync::mpsc::Receiver<Result<(), Verdict>>,
}

/// Starts the hook on a thread of its own, which drives it to its end
/// whether or not anyone still waits for the verdict.
fn start_deploy(ctx: &Receive<'_>, req: DeployRequest) -> std::io::Result<Running> {
    let (progress_tx, progress) = std::sync::mpsc::channel::<String>();
    let (verdict_tx, verdict) = std::sync::mpsc::sync_channel(1);
    let hook = ctx.hook.clone();
    let runtime = ctx.runtime.clone();
    std::thread::Builder::new()
        .name(format!("gitd-deploy-{}", ctx.app))
        .spawn(move || {
            let sender = std::sync::Mutex::new(progress_tx);
            let relay = move |l: &str| {
                let _ = sender.lock().map(|s| s.send(l.to_string()));
            };
            let run = std::panic::AssertUnwindSafe(|| runtime.block_on(hook.deploy(&req, &relay)));
            let result = match std::panic::catch_unwind(run) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Verdict::Failed(e)),
                Err(_) => Err(Verdict::Panicked),
            };
            let told = match &result {
                Ok(()) => "deployed".to_string(),
                Err(Verdict::Failed(e)) => crate::wording::chain(e),
                Err(Verdict::Panicked) => "the deploy hook panicked".to_string(),
            };
            if verdict_tx.send(result).is_err() {
                tracing::info!(app = %req.app, commit = %req.new, verdict = %told, "gitd: a deploy whose client had left ended; its ref was not moved");
            }
        })?;
    Ok(Running { progress, verdict })
}

/// Relays the deploy's progress until its verdict; `None` if the client
/// left first.
fn await_deploy(
    ctx: &Receive<'_>,
    running: Running,
    feedback: &mut dyn Feedback,
) -> Option<Result<(), Verdict>> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut last = Instant::now();
    loop {
        // A verdict that is there wins over a client that just left.
        match running.verdict.try_recv() {
            Ok(v) => {
                while let Ok(l) = running.progress.try_recv() {
                    feedback.progress(&l);
                }
                return Some(v);
            }
            Err(TryRecvError::Disconnected) => return Some(Err(Verdict::Panicked)),
            Err(TryRecvError::Empty) => {}
        }
        if ctx.client_gone.is_cancelled() {
            return None;
        }
        match running.progress.recv_timeout(Duration::from_millis(50)) {
            Ok(l) => {
                feedback.progress(&l);
                last = Instant::now();
            }
            Err(e) => {
                if last.elapsed() >= KEEPALIVE_EVERY {
                    feedback.keepalive();
                    last = Instant::now();
                }
                if e == RecvTimeoutError::Disconnected {
                    // The hook is done talking; its verdict is on the way.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
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
