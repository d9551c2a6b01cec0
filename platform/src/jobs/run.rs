//! Running one job: the context its steps report through, and the
//! dispatch from a [`JobSpec`] to the operation that does it.

use std::sync::{Arc, Mutex};

use super::dispatch::JobControl;
use super::{Job, JobError, JobSpec};
use crate::events::EventKind;
use crate::Platform;

/// What a running job's steps report through: progress lines for its
/// requester, build output, phase timings, and the deploy it made.
pub struct JobCtx {
    platform: Arc<Platform>,
    /// The job's id.
    pub id: i64,
    /// Its app.
    pub app: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Cancel handle and point of no return.
    pub control: Arc<JobControl>,
    deploy: Mutex<Option<i64>>,
    /// The job stopped the app's serving VM before booting its own (an
    /// app with volumes): if it fails, the live deploy is booted again.
    took_down_live: std::sync::atomic::AtomicBool,
}

impl JobCtx {
    pub(super) fn new(platform: Arc<Platform>, job: &Job, control: Arc<JobControl>) -> JobCtx {
        JobCtx {
            platform,
            id: job.id,
            app: job.app.clone(),
            requested_by: job.requested_by.clone(),
            control,
            deploy: Mutex::new(job.deploy_number),
            took_down_live: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes that this job stopped the app's serving VM (see
    /// [`JobCtx::took_down_live`]).
    pub(crate) fn mark_took_down_live(&self) {
        self.took_down_live
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Did this job stop the app's serving VM?
    pub(crate) fn took_down_live(&self) -> bool {
        self.took_down_live
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn emit(&self, kind: EventKind) {
        self.platform
            .events
            .emit(&self.app, self.deploy(), Some(self.id), kind);
    }

    /// A progress line for the requester (`-----> Building rootfs ...`).
    pub fn say(&self, text: &str) {
        self.emit(EventKind::JobProgress {
            text: text.to_string(),
        });
    }

    /// A line of build output.
    pub fn build_output(&self, text: &str) {
        self.emit(EventKind::BuildOutput {
            text: text.to_string(),
        });
    }

    /// A phase ended after `ms`.
    pub fn phase(&self, phase: &str, ms: i64) {
        crate::metrics::metrics().phase(phase, ms);
        self.emit(EventKind::JobPhase {
            phase: phase.to_string(),
            ms,
        });
    }

    /// A remark that belongs in the app's runtime log too.
    pub fn note(&self, text: &str) {
        self.emit(EventKind::Note {
            text: text.to_string(),
        });
    }

    /// The deploy this job made or runs, once known.
    pub fn deploy(&self) -> Option<i64> {
        *self.deploy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the deploy this job made or runs.
    pub async fn set_deploy(&self, number: i64) {
        *self.deploy.lock().unwrap_or_else(|p| p.into_inner()) = Some(number);
        if let Err(e) = self
            .platform
            .store
            .set_job_progress(self.id, Some(number), None)
            .await
        {
            tracing::warn!(job = self.id, error = %e, "cannot record the job's deploy");
        }
    }

    /// The node running the job.
    pub fn node(&self) -> &str {
        &self.platform.queue.node
    }

    /// A progress callback for code that reports through closures.
    pub fn progress(&self) -> impl Fn(&str) + Send + Sync + '_ {
        move |line: &str| self.say(line)
    }
}

impl Platform {
    /// Does what `job` asks; the dispatcher records the verdict.
    pub(super) async fn execute(&self, ctx: &JobCtx, job: &Job) -> Result<(), JobError> {
        match &job.spec {
            JobSpec::Deploy {
                commit,
                git_ref,
                push_options,
            } => {
                let req = crate::pipeline::DeployRequest {
                    app: job.app.clone(),
                    repo: self.repo_path(&job.app),
                    git_ref: git_ref.clone(),
                    commit: commit.clone(),
                    pushed_by: job.requested_by.clone(),
                    push_options: push_options.clone(),
                };
                crate::pipeline::run(self, ctx, &req).await.map(|_| ())
            }
            JobSpec::Restart => self.restart(ctx).await,
            JobSpec::Rollback { target } => self.rollback(ctx, *target).await.map(|_| ()),
            JobSpec::Stop => self.stop_app(ctx).await,
            JobSpec::Start => self.start_app(ctx).await,
            JobSpec::Destroy => self.destroy(ctx).await,
            JobSpec::Recover { crashes } => self.recover(ctx, *crashes).await,
            JobSpec::Restore => self.restore_app(ctx).await,
            JobSpec::Portfolio { deploy, commit } => {
                self.refresh_portfolio(ctx, *deploy, commit).await
            }
            JobSpec::Volume { action } => self.volume_job(ctx, action).await,
            JobSpec::Scale { web } => self.scale(ctx, *web).await,
            JobSpec::Run { command } => self.run_stopping_app(ctx, command).await,
        }
    }
}
