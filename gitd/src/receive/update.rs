//! receive-pack's second half: check each command against the current
//! refs, run the deploy hook for deploy branches (progress relayed live,
//! keepalives while it is silent), and move the refs that passed in one
//! transaction with old-id checks.

use std::time::{Duration, Instant};

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;
use gix::ObjectId;

use super::commands::Command;
use super::Receive;
use crate::hook::DeployRequest;

/// A silent deploy sends a keepalive this often, so neither the client's
/// network nor the server's own idle backstop drops the connection.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);

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
) -> Vec<Result<(), String>> {
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
                .map_err(|e| format!("missing necessary objects: {e}"))
        }
        Err(e) => Err(format!("cannot read the refs: {e}")),
    };
    let mut results: Vec<Result<(), String>> = commands
        .iter()
        .map(|c| match &connected {
            Err(e) if !c.is_delete() => Err(e.clone()),
            _ => check_and_deploy(ctx, repo, c, push_options, feedback),
        })
        .collect();
    if atomic && results.iter().any(|r| r.is_err()) {
        results = results
            .into_iter()
            .map(|r| r.and(Err("atomic push failed".to_string())))
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
            let msg = format!("ref update failed: {e}");
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(msg.clone());
            }
        }
        // Make the moved refs durable before the client hears `ok`.
        for (c, _) in commands.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
            let file = repo.path().join(&c.name);
            for p in [Some(file.as_path()), file.parent()].into_iter().flatten() {
                if let Ok(f) = std::fs::File::open(p) {
                    let _ = f.sync_all();
                }
            }
        }
    }
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
) -> Result<(), String> {
    let now = current(repo, &c.name);
    match (now, c.old.is_null()) {
        (Some(id), false) if id == c.old => {}
        (None, true) => {}
        (Some(_), true) => return Err("already exists (fetch first)".into()),
        _ => return Err("stale info: the ref changed since you fetched (fetch first)".into()),
    }
    if c.is_delete() {
        return Ok(());
    }
    if !repo.has_object(c.new) {
        return Err("missing necessary objects".into());
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
    let sender = std::sync::Mutex::new(tx);
    let relay = move |l: &str| {
        let _ = sender.lock().map(|s| s.send(l.to_string()));
    };
    let result = std::thread::scope(|scope| {
        let handle = scope.spawn(|| ctx.runtime.block_on(hook.deploy(&req, &relay)));
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
        handle
            .join()
            .unwrap_or_else(|_| Err("the deploy hook panicked".into()))
    });
    result.map_err(|e| format!("deploy failed: {e}"))
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
