//! The owner's lifecycle commands, as Heroku and Dokku users know them:
//! `restart` (a fresh VM of the live deploy, with today's config vars and
//! secrets, switched in without downtime), `rollback` (a new deploy that
//! re-boots an earlier artifact, no rebuild), `stop` and `start` (kept
//! across restarts of `byteport up`). Each holds the app's lock, so they
//! never interleave with a push or with crash recovery.

use std::time::Instant;

use super::Platform;
use crate::store::{Deploy, DeployStatus};

/// The router's reason for a stopped app.
pub const STOPPED: &str = "it was stopped by its owner (byteport start APP brings it back)";

/// Progress lines of a lifecycle command (`-----> ...`).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl Platform {
    async fn require_live(&self, app: &str) -> Result<Deploy, String> {
        self.store
            .require_app(app)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .live_deploy(app)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("{app} has no live deploy yet: push to it first (git push ... main)")
            })
    }

    fn check_can_boot(&self) -> Result<(), String> {
        match self.boot_problem() {
            Some(p) => Err(format!("cannot boot here: {p}")),
            None => Ok(()),
        }
    }

    /// Boots a fresh VM of `app`'s live deploy (picking up config vars and
    /// secrets set since) and switches to it; the old VM drains. A stopped
    /// app is started.
    pub async fn restart(&self, app: &str, progress: Progress<'_>) -> Result<(), String> {
        self.check_can_boot()?;
        let _guard = self.lock_app(app).await;
        let live = self.require_live(app).await?;
        progress(&format!(
            "-----> Restarting {app} (deploy #{}, commit {}) ...",
            live.number,
            short(&live.commit)
        ));
        let started = Instant::now();
        self.boot_deploy(app, &live, 0, progress).await?;
        self.store
            .set_app_stopped(app, false)
            .await
            .map_err(|e| e.to_string())?;
        self.log_event(app, live.number, "restarted by its owner");
        progress(&format!(
            "-----> {app} restarted in {:.1}s: http://{app}.localhost:{}",
            started.elapsed().as_secs_f64(),
            self.router_port()
        ));
        Ok(())
    }

    /// The deploy a bare `rollback` goes back to: the newest deploy before
    /// the live one that was live itself and still has its artifact.
    async fn previous_good(&self, app: &str, live: &Deploy) -> Result<i64, String> {
        let deploys = self
            .store
            .list_deploys(app, 1000)
            .await
            .map_err(|e| e.to_string())?;
        deploys
            .iter()
            .find(|d| {
                d.number < live.number
                    && d.status == DeployStatus::Superseded
                    && d.artifact.is_some()
            })
            .map(|d| d.number)
            .ok_or_else(|| {
                format!(
                    "{app} has no earlier deploy that was live to roll back to (see byteport deploys {app})"
                )
            })
    }

    /// Rolls `app` back to deploy `target` (default: the previous good one)
    /// by booting its artifact as a new deploy. On failure the current
    /// version keeps serving and the new deploy records why. Returns the
    /// new deploy's number.
    pub async fn rollback(
        &self,
        app: &str,
        target: Option<i64>,
        by: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<i64, String> {
        self.check_can_boot()?;
        let _guard = self.lock_app(app).await;
        let live = self.require_live(app).await?;
        let target = match target {
            Some(n) => n,
            None => self.previous_good(app, &live).await?,
        };
        if target == live.number {
            return Err(format!("deploy #{target} is already live on {app}"));
        }
        let wanted = self
            .store
            .deploy(app, target)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{app} has no deploy #{target} (see byteport deploys {app})"))?;
        if let Some(digest) = &wanted.artifact {
            // Fail before recording anything when the artifact is gone.
            self.artifact(digest)?;
        }
        let deploy = self
            .store
            .start_rollback(app, target, by)
            .await
            .map_err(|e| e.to_string())?;
        let number = deploy.number;
        progress(&format!(
            "-----> Rolling {app} back to deploy #{target} (commit {}) as deploy #{number} ...",
            short(&wanted.commit)
        ));
        match self.switch_to_rollback(app, &deploy, progress).await {
            Ok(()) => {
                self.log_event(app, number, &format!("rolled back to deploy #{target}"));
                progress(&format!(
                    "-----> Live at http://{app}.localhost:{}   (deploy #{number} = #{target}, previous #{} draining)",
                    self.router_port(),
                    live.number
                ));
                Ok(number)
            }
            Err(reason) => {
                if let Err(e) = self.store.fail_deploy(app, number, &reason).await {
                    tracing::error!(app, number, error = %e, "cannot record rollback failure");
                }
                Err(format!(
                    "rollback failed, deploy #{} still serves: {reason}",
                    live.number
                ))
            }
        }
    }

    async fn switch_to_rollback(
        &self,
        app: &str,
        deploy: &Deploy,
        progress: Progress<'_>,
    ) -> Result<(), String> {
        let digest = deploy.artifact.as_deref().unwrap_or_default();
        let domains = self.domains_at(app, &deploy.commit).await;
        let booted = self.boot(app, deploy.number, digest, progress).await?;
        for (phase, ms) in &booted.timings {
            self.store
                .set_deploy_status(
                    app,
                    deploy.number,
                    DeployStatus::Booting,
                    Some((phase, *ms)),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        let switch_ms = self.switch_with(app, &domains, booted, 0);
        self.store
            .set_deploy_status(
                app,
                deploy.number,
                DeployStatus::Live,
                Some(("switch", switch_ms)),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .mark_live(app, deploy.number)
            .await
            .map_err(|e| e.to_string())?;
        self.store
            .set_app_stopped(app, false)
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops `app`: its hosts answer 502 ("stopped by its owner"), in-flight
    /// requests finish, the VM powers off. It stays stopped across restarts
    /// of `byteport up` until [`Platform::start`].
    pub async fn stop(&self, app: &str, progress: Progress<'_>) -> Result<(), String> {
        let _guard = self.lock_app(app).await;
        self.store
            .set_app_stopped(app, true)
            .await
            .map_err(|e| e.to_string())?;
        let instance = self.running().remove(app);
        let domains = instance
            .as_ref()
            .map(|i| i.domains.clone())
            .unwrap_or_default();
        let upstream = self.routes.mark_down(app, &domains, STOPPED);
        let Some(mut instance) = instance else {
            progress(&format!("-----> {app} was not running; it stays stopped"));
            return Ok(());
        };
        progress(&format!(
            "-----> Stopping {app} (deploy #{}): draining requests, powering off ...",
            instance.vm.deploy
        ));
        if let Some(u) = upstream {
            u.drain(super::DRAIN).await;
        }
        let deploy = instance.vm.deploy;
        let _ = tokio::task::spawn_blocking(move || instance.vm.vm.stop(super::STOP_GRACE)).await;
        self.log_event(app, deploy, "stopped by its owner");
        progress(&format!("-----> {app} stopped"));
        Ok(())
    }

    /// Starts a stopped `app` on its live deploy.
    pub async fn start(&self, app: &str, progress: Progress<'_>) -> Result<(), String> {
        self.check_can_boot()?;
        let _guard = self.lock_app(app).await;
        let live = self.require_live(app).await?;
        if self.is_running(app) {
            self.store
                .set_app_stopped(app, false)
                .await
                .map_err(|e| e.to_string())?;
            progress(&format!(
                "-----> {app} is already running (deploy #{})",
                live.number
            ));
            return Ok(());
        }
        progress(&format!(
            "-----> Starting {app} (deploy #{}) ...",
            live.number
        ));
        self.routes.mark_down(app, &[], "it is starting");
        let started = Instant::now();
        if let Err(e) = self.boot_deploy(app, &live, 0, progress).await {
            self.routes.mark_down(app, &[], "it failed to start");
            return Err(e);
        }
        self.store
            .set_app_stopped(app, false)
            .await
            .map_err(|e| e.to_string())?;
        self.log_event(app, live.number, "started by its owner");
        progress(&format!(
            "-----> {app} started in {:.1}s: http://{app}.localhost:{}",
            started.elapsed().as_secs_f64(),
            self.router_port()
        ));
        Ok(())
    }
}

/// Deletes what an app leaves on disk besides the store: its repository
/// (so a later app of the same name, perhaps another owner's, starts
/// empty), its logs and its build cache (package manager caches).
/// Artifacts stay: they are shared by content.
pub fn remove_app_files(home: &std::path::Path, app: &str) -> std::io::Result<()> {
    for dir in [
        home.join("repos").join(format!("{app}.git")),
        home.join("logs").join(app),
        home.join("cache/build").join(app),
    ] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

impl Platform {
    /// Destroys `app`: its VM powers off, its hosts answer 404, its deploys,
    /// config, secrets, repository and logs are deleted.
    pub async fn destroy(&self, app: &str, progress: Progress<'_>) -> Result<(), String> {
        let _guard = self.lock_app(app).await;
        self.store
            .require_app(app)
            .await
            .map_err(|e| e.to_string())?;
        let instance = self.running().remove(app);
        self.routes.forget(app);
        if let Some(mut instance) = instance {
            progress(&format!("-----> Stopping {app}'s VM ..."));
            let _ =
                tokio::task::spawn_blocking(move || instance.vm.vm.stop(super::STOP_GRACE)).await;
        }
        self.store
            .delete_app(app)
            .await
            .map_err(|e| e.to_string())?;
        self.logs.close(app);
        remove_app_files(self.home(), app).map_err(|e| {
            format!("{app} is gone from the store, but removing its files failed: {e}")
        })?;
        progress(&format!("-----> Destroyed {app}"));
        Ok(())
    }
}
