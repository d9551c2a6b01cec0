//! The owner's lifecycle commands, as Heroku and Dokku users know them,
//! each run as a job: `restart` (a fresh VM of the live deploy, with
//! today's config vars and secrets, switched in without downtime),
//! `rollback` (a new deploy that re-boots an earlier artifact, no rebuild),
//! `stop` and `start` (kept across restarts of `byteport up`), `destroy`;
//! and BytePort's own: `recover` (after a crash) and `restore` (after a
//! start of `byteport up`).

use std::time::Instant;

use crate::apps::Platform;
use crate::boot::stop_vms;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::store::{Deploy, DeployStatus};

/// The router's reason for a stopped app.
pub const STOPPED: &str = "it was stopped by its owner (byteport start APP brings it back)";

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl Platform {
    pub(crate) async fn require_live(&self, app: &str) -> Result<Deploy, JobError> {
        self.store.require_app(app).await?;
        self.store
            .live_deploy(app)
            .await?
            .ok_or_else(|| JobError::Rejected {
                message: format!(
                    "{app} has no live deploy yet: push to it first (git push ... main)"
                ),
            })
    }

    pub(crate) fn check_can_boot(&self) -> Result<(), JobError> {
        match self.boot_problem() {
            Some(p) => Err(JobError::Boot {
                message: format!("cannot boot here: {p}"),
            }),
            None => Ok(()),
        }
    }

    /// Boots a fresh VM of the live deploy (picking up config vars and
    /// secrets set since) and switches to it; the old VM drains. A stopped
    /// app is started.
    pub(crate) async fn restart(&self, ctx: &JobCtx) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.check_can_boot()?;
        let live = self.require_live(app).await?;
        ctx.set_deploy(live.number).await;
        ctx.say(&format!(
            "-----> Restarting {app} (deploy #{}, commit {}) ...",
            live.number,
            short(&live.commit)
        ));
        let started = Instant::now();
        self.boot_and_switch(ctx, &live, 0).await?;
        self.store.set_app_stopped(app, false).await?;
        ctx.note("restarted by its owner");
        ctx.say(&format!(
            "-----> {app} restarted in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            self.app_url(app)
        ));
        Ok(())
    }

    /// The deploy a bare `rollback` goes back to: the newest deploy before
    /// the live one that was live itself and still has its artifact.
    async fn previous_good(&self, app: &str, live: &Deploy) -> Result<i64, JobError> {
        let deploys = self.store.list_deploys(app, 1000).await?;
        deploys
            .iter()
            .find(|d| {
                d.number < live.number
                    && d.status == DeployStatus::Superseded
                    && d.artifact.is_some()
            })
            .map(|d| d.number)
            .ok_or_else(|| JobError::Rejected {
                message: format!(
                    "{app} has no earlier deploy that was live to roll back to (see byteport deploys {app})"
                ),
            })
    }

    /// Rolls back to deploy `target` (default: the previous good one) by
    /// booting its artifact as a new deploy. On failure the current version
    /// keeps serving and the new deploy records why. Returns the new
    /// deploy's number.
    pub(crate) async fn rollback(
        &self,
        ctx: &JobCtx,
        target: Option<i64>,
    ) -> Result<i64, JobError> {
        let app = ctx.app.as_str();
        self.check_can_boot()?;
        let live = self.require_live(app).await?;
        let target = match target {
            Some(n) => n,
            None => self.previous_good(app, &live).await?,
        };
        if target == live.number {
            return Err(JobError::Rejected {
                message: format!("deploy #{target} is already live on {app}"),
            });
        }
        let wanted = self
            .store
            .deploy(app, target)
            .await?
            .ok_or_else(|| JobError::Rejected {
                message: format!("{app} has no deploy #{target} (see byteport deploys {app})"),
            })?;
        if let Some(digest) = &wanted.artifact {
            // Fail before recording anything when the artifact is gone.
            self.artifact(digest)?;
        }
        let deploy = self
            .store
            .start_rollback(app, target, ctx.requested_by.as_deref(), Some(ctx.id))
            .await?;
        let number = deploy.number;
        ctx.set_deploy(number).await;
        ctx.say(&format!(
            "-----> Rolling {app} back to deploy #{target} (commit {}) as deploy #{number} ...",
            short(&wanted.commit)
        ));
        match self.switch_to_rollback(ctx, &deploy).await {
            Ok(()) => {
                ctx.note(&format!("rolled back to deploy #{target}"));
                ctx.say(&format!(
                    "-----> Live at {}   (deploy #{number} = #{target}, previous #{} draining)",
                    self.app_url(app),
                    live.number
                ));
                Ok(number)
            }
            Err(reason) => {
                let message = format!(
                    "rollback failed, deploy #{} still serves: {reason}",
                    live.number
                );
                if let Err(e) = self.store.fail_deploy(app, number, &message).await {
                    tracing::error!(app, number, error = %e, "cannot record rollback failure");
                }
                Err(match reason {
                    JobError::Boot { .. } => JobError::Boot { message },
                    other => other,
                })
            }
        }
    }

    async fn switch_to_rollback(&self, ctx: &JobCtx, deploy: &Deploy) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        let timings = self.boot_and_switch(ctx, deploy, 0).await?;
        for (phase, ms) in &timings {
            self.store
                .set_deploy_status(
                    app,
                    deploy.number,
                    DeployStatus::Booting,
                    Some((phase, *ms)),
                )
                .await?;
            ctx.phase(phase, *ms);
        }
        self.store
            .commit_live(app, deploy.number, Some((ctx.id, ctx.node())))
            .await?;
        Ok(())
    }

    /// Stops the app: its hosts answer 502 ("stopped by its owner"),
    /// in-flight requests finish, the VM powers off. It stays stopped
    /// across restarts of `byteport up` until started.
    pub(crate) async fn stop_app(&self, ctx: &JobCtx) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.store.require_app(app).await?;
        ctx.control.commit()?;
        self.store.set_app_stopped(app, true).await?;
        let instance = self.running().remove(app);
        let domains = instance
            .as_ref()
            .map(|i| i.domains.clone())
            .unwrap_or_default();
        let upstreams = self.routes.mark_down_all(app, &domains, STOPPED);
        let Some(instance) = instance else {
            ctx.say(&format!("-----> {app} was not running; it stays stopped"));
            return Ok(());
        };
        ctx.set_deploy(instance.deploy()).await;
        ctx.say(&format!(
            "-----> Stopping {app} (deploy #{}): draining requests, powering off ...",
            instance.deploy()
        ));
        for u in upstreams {
            u.drain(crate::apps::DRAIN).await;
        }
        stop_vms(instance.vms, crate::apps::STOP_GRACE, &self.events).await;
        ctx.note("stopped by its owner");
        ctx.say(&format!("-----> {app} stopped"));
        Ok(())
    }

    /// Starts a stopped app on its live deploy.
    pub(crate) async fn start_app(&self, ctx: &JobCtx) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.check_can_boot()?;
        let live = self.require_live(app).await?;
        ctx.set_deploy(live.number).await;
        if self.is_running(app) {
            self.store.set_app_stopped(app, false).await?;
            ctx.say(&format!(
                "-----> {app} is already running (deploy #{})",
                live.number
            ));
            return Ok(());
        }
        ctx.say(&format!(
            "-----> Starting {app} (deploy #{}) ...",
            live.number
        ));
        self.routes.mark_down(app, &[], "it is starting");
        let started = Instant::now();
        if let Err(e) = self.boot_and_switch(ctx, &live, 0).await {
            let stopped = self
                .store
                .app(app)
                .await
                .ok()
                .flatten()
                .is_some_and(|a| a.stopped);
            self.routes.mark_down(
                app,
                &[],
                if stopped {
                    STOPPED
                } else {
                    "it failed to start"
                },
            );
            return Err(e);
        }
        self.store.set_app_stopped(app, false).await?;
        ctx.note("started by its owner");
        ctx.say(&format!(
            "-----> {app} started in {:.1}s: {}",
            started.elapsed().as_secs_f64(),
            self.app_url(app)
        ));
        Ok(())
    }

    /// Boots the live deploy after `byteport up` started (unless the app
    /// was stopped or is already running meanwhile).
    pub(crate) async fn restore_app(&self, ctx: &JobCtx) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        let Some(a) = self.store.app(app).await? else {
            return Ok(());
        };
        let Some(live) = self.store.live_deploy(app).await? else {
            return Ok(());
        };
        if a.stopped || self.is_running(app) {
            return Ok(());
        }
        ctx.set_deploy(live.number).await;
        self.check_can_boot()?;
        match self.boot_and_switch(ctx, &live, 0).await {
            Ok(_) => {
                tracing::info!(app, deploy = live.number, "restored");
                Ok(())
            }
            Err(e) => {
                self.routes
                    .mark_down(app, &[], "it failed to start after a restart of BytePort");
                ctx.note(&format!("cannot restore: {e}"));
                Err(e)
            }
        }
    }

    /// Deletes the app: its VM powers off, its hosts answer 404, its
    /// deploys, config, secrets, repository, logs and queued jobs are
    /// deleted.
    pub(crate) async fn destroy(&self, ctx: &JobCtx) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.store.require_app(app).await?;
        ctx.control.commit()?;
        let instance = self.running().remove(app);
        self.routes.forget_all(app);
        self.egress.close(app);
        if let Some(instance) = instance {
            ctx.say(&format!("-----> Stopping {app}'s VM ..."));
            stop_vms(instance.vms, crate::apps::STOP_GRACE, &self.events).await;
        }
        for job in self.store.active_jobs(app).await? {
            if job.id != ctx.id {
                let _ = self.store.request_cancel(job.id).await;
            }
        }
        if let Some(backup) = self.retire_database(app).await? {
            ctx.say(&format!(
                "-----> Dropped {app}'s database; its last backup is {}",
                backup.display()
            ));
        }
        self.store.delete_app(app).await?;
        self.forget_scale(app).await?;
        ctx.say(&format!("-----> Destroyed {app}"));
        // The event journal goes once the job's end is told (the
        // dispatcher removes it after the last event).
        remove_app_files(self.home(), app).map_err(|e| JobError::Internal {
            message: format!("{app} is gone from the store, but removing its files failed: {e}"),
        })
    }
}

/// Deletes what an app leaves on disk besides the store and its event
/// journal: its repository (so a later app of the same name, perhaps
/// another owner's, starts empty) and its build cache (package manager
/// caches) and its volumes (the app's data: `destroy` asks for `--confirm
/// APP`). Artifacts stay: they are shared by content.
pub fn remove_app_files(home: &std::path::Path, app: &str) -> std::io::Result<()> {
    for dir in [
        home.join("repos").join(format!("{app}.git")),
        home.join("cache/build").join(app),
        home.join("volumes").join(app),
    ] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
