//! What a signed-in user can change, shared by the pages (forms) and the
//! API (JSON): every app change is a job in the queue; config, secrets,
//! collaborators and keys are store rows. Access is checked here, once:
//! another user's app is "not found".

use platform::jobs::dispatch::CancelReport;
use platform::jobs::JobSpec;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Viewer;
use crate::views::{visible_app, JobView};
use crate::{Ctx, Error};

/// An action on an app; each becomes a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A fresh VM of the live deploy.
    Restart,
    /// Stop serving.
    Stop,
    /// Start a stopped app.
    Start,
    /// Back to a deploy (default: the previous live one).
    Rollback(Option<i64>),
    /// Build and deploy the live commit again.
    Redeploy,
}

impl Action {
    /// From a path segment (`restart`, `stop`, …).
    pub fn parse(name: &str, deploy: Option<i64>) -> Option<Action> {
        Some(match name {
            "restart" => Action::Restart,
            "stop" => Action::Stop,
            "start" => Action::Start,
            "rollback" => Action::Rollback(deploy),
            "redeploy" => Action::Redeploy,
            _ => return None,
        })
    }
}

/// Queues `action` on `app` for `viewer`; returns the job.
pub async fn act(ctx: &Ctx, viewer: &Viewer, app: &str, action: Action) -> Result<JobView, Error> {
    let app = visible_app(ctx, viewer, app).await?;
    let platform = ctx.platform();
    let (spec, here_only) =
        match action {
            Action::Restart => (JobSpec::Restart, false),
            Action::Stop => (JobSpec::Stop, false),
            Action::Start => (JobSpec::Start, false),
            Action::Rollback(target) => {
                if let Some(n) = target {
                    platform.store.deploy(&app.name, n).await?.ok_or_else(|| {
                        Error::NotFound(format!("{} has no deploy #{n}", app.name))
                    })?;
                }
                (JobSpec::Rollback { target }, false)
            }
            Action::Redeploy => {
                let live = platform
                    .store
                    .live_deploy(&app.name)
                    .await?
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "{} has no live deploy to build again; push a commit first",
                            app.name
                        ))
                    })?;
                // The repository lives on this node: the build must run here.
                (
                    JobSpec::Deploy {
                        commit: live.commit,
                        git_ref: live.git_ref,
                        push_options: vec![],
                    },
                    true,
                )
            }
        };
    let job = platform
        .enqueue(&app.name, spec, Some(&viewer.user), here_only)
        .await?;
    Ok(JobView::new(&job))
}

/// What a cancel did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CancelView {
    /// `dequeued` (never ran), `stopping`, `too_late` (past its switch: it
    /// will finish) or `already_finished`.
    pub outcome: String,
    /// The job.
    pub job: JobView,
    /// In words.
    pub message: String,
}

/// Cancels `job` of `app` (default: its running, else oldest queued job).
pub async fn cancel(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    job: Option<i64>,
) -> Result<CancelView, Error> {
    let app = visible_app(ctx, viewer, app).await?;
    let report = ctx.platform().cancel(&app.name, job, &viewer.user).await?;
    let (outcome, job, what) = match report {
        CancelReport::Dequeued(j) => ("dequeued", j, "cancelled before it started"),
        CancelReport::Stopping(j) => (
            "stopping",
            j,
            "is stopping; the previous version keeps serving",
        ),
        CancelReport::TooLate(j) => ("too_late", j, "is past its switch and will finish"),
        CancelReport::AlreadyFinished(j) => ("already_finished", j, "had already ended"),
    };
    Ok(CancelView {
        outcome: outcome.into(),
        message: format!("job {} ({}) {what}", job.id, job.spec.kind()),
        job: JobView::new(&job),
    })
}

/// A config var to set.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ConfigVar {
    /// `[A-Z_][A-Z0-9_]*`.
    pub key: String,
    /// Up to 64 KiB, no NUL.
    pub value: String,
}

/// Sets config vars (all or nothing).
pub async fn set_config(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    vars: Vec<ConfigVar>,
) -> Result<(), Error> {
    let app = visible_app(ctx, viewer, app).await?;
    let pairs: Vec<(String, String)> = vars.into_iter().map(|v| (v.key, v.value)).collect();
    Ok(ctx.platform().store.set_config(&app.name, &pairs).await?)
}

/// Removes a config var.
pub async fn unset_config(ctx: &Ctx, viewer: &Viewer, app: &str, key: &str) -> Result<(), Error> {
    let app = visible_app(ctx, viewer, app).await?;
    let n = ctx
        .platform()
        .store
        .unset_config(&app.name, &[key.to_string()])
        .await?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "{} has no config var `{}`",
            app.name,
            key.escape_default()
        )));
    }
    Ok(())
}

/// Sets a secret (sealed at rest; never shown again).
pub async fn set_secret(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    let app = visible_app(ctx, viewer, app).await?;
    Ok(ctx
        .platform()
        .store
        .set_secret(&app.name, name, value)
        .await?)
}

/// Removes a secret.
pub async fn unset_secret(ctx: &Ctx, viewer: &Viewer, app: &str, name: &str) -> Result<(), Error> {
    let app = visible_app(ctx, viewer, app).await?;
    if !ctx.platform().store.unset_secret(&app.name, name).await? {
        return Err(Error::NotFound(format!(
            "{} has no secret `{}`",
            app.name,
            name.escape_default()
        )));
    }
    Ok(())
}

async fn owned_app(ctx: &Ctx, viewer: &Viewer, app: &str) -> Result<platform::store::App, Error> {
    let app = visible_app(ctx, viewer, app).await?;
    if app.owner != viewer.user && !viewer.operator {
        return Err(Error::Forbidden(format!(
            "only {}'s owner ({}) manages its collaborators",
            app.name, app.owner
        )));
    }
    Ok(app)
}

/// Adds a collaborator (owner or operator only).
pub async fn add_collaborator(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    user: &str,
) -> Result<(), Error> {
    let app = owned_app(ctx, viewer, app).await?;
    Ok(ctx
        .platform()
        .store
        .share_app(&app.name, user.trim())
        .await?)
}

/// Removes a collaborator (owner or operator only).
pub async fn remove_collaborator(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    user: &str,
) -> Result<(), Error> {
    let app = owned_app(ctx, viewer, app).await?;
    if !app.collaborators.iter().any(|c| c == user) {
        return Err(Error::NotFound(format!(
            "`{}` is not a collaborator on {}",
            user.escape_default(),
            app.name
        )));
    }
    Ok(ctx.platform().store.unshare_app(&app.name, user).await?)
}
