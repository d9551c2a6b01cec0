//! `byteport run APP -- CMD` (Heroku's and Dokku's `run`): CMD runs once
//! in a one-off VM of the live deploy, with the app's config vars,
//! secrets and egress, beside the VMs that serve; its output streams back
//! and its exit status is the command's. The VM is removed when the
//! command exits, or when the caller goes away.
//!
//! An app with a volume is different: the volume is attached to the
//! serving VM, and two VMs must never mount it. Such a `run` is refused
//! unless the caller asks to stop the app for it (`--stop-app`); then it
//! is a job (never beside a deploy): the app's VM is drained and stopped
//! (the router answers 503 "deploying"), the command runs with the volume,
//! and the live deploy boots again.

use std::time::Duration;

use crate::apps::Platform;
use crate::boot::stop_vms;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::release::{OneOffCommand, OutputLine};

/// How long a `run` may take before its VM is stopped.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The process name a `run` command has in the app's log.
pub const RUN_PROCESS: &str = "run";

fn status_of(
    command: &str,
    result: Result<i32, runtime::one_off::OneOffError>,
) -> Result<i32, JobError> {
    result.map_err(|e| JobError::Rejected {
        message: format!("`{command}` did not finish: {e}"),
    })
}

impl Platform {
    /// Runs `command` in a one-off VM of `app`'s live deploy, `by` whom
    /// (for the app's log); returns its exit status. Refused for an app
    /// with a volume (see the module docs).
    pub async fn run_command(
        &self,
        app: &str,
        command: &str,
        by: &str,
        on_line: impl FnMut(OutputLine),
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<i32, JobError> {
        if command.trim().is_empty() {
            return Err(JobError::Rejected {
                message: "run needs a command, e.g. `run APP -- ls -l`".into(),
            });
        }
        self.check_can_boot()?;
        let live = self.require_live(app).await?;
        let digest = live.artifact.clone().ok_or_else(|| JobError::Rejected {
            message: format!(
                "deploy #{} of {app} has no artifact; push again",
                live.number
            ),
        })?;
        let (descriptor, _) = self.artifact(&digest)?;
        if !descriptor.volumes.is_empty() {
            let names: Vec<&str> = descriptor.volumes.iter().map(|v| v.name.as_str()).collect();
            return Err(JobError::Rejected {
                message: format!(
                    "{app} keeps data on volume(s) {}, attached to its running VM, and a volume is never mounted by two VMs; run with --stop-app to stop {app} for the command (it boots again after)",
                    names.join(", ")
                ),
            });
        }
        self.note(app, Some(live.number), &format!("run by {by}: {command}"));
        let outcome = self
            .one_off(
                (app, live.number, &digest),
                OneOffCommand {
                    process: RUN_PROCESS,
                    command,
                    timeout: RUN_TIMEOUT,
                },
                say,
                on_line,
                std::future::pending(),
            )
            .await?;
        status_of(command, outcome.result)
    }

    /// The `run --stop-app` job: the app's VMs stop, `command` runs with
    /// its volumes, the live deploy boots again (whatever the outcome).
    pub(crate) async fn run_stopping_app(
        &self,
        ctx: &JobCtx,
        command: &str,
    ) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.check_can_boot()?;
        let live = self.require_live(app).await?;
        ctx.set_deploy(live.number).await;
        let digest = live.artifact.clone().unwrap_or_default();
        ctx.control.commit()?;
        let serving = self.running().remove(app);
        if let Some(old) = serving {
            ctx.mark_took_down_live();
            ctx.say(&format!(
                "-----> Stopping {app} (deploy #{}) for the command: its volumes are attached to one VM at a time",
                old.deploy()
            ));
            for u in
                self.routes
                    .mark_deploying(app, &old.domains, crate::boot::DEPLOYING_RETRY_AFTER)
            {
                u.drain(crate::apps::DRAIN).await;
            }
            stop_vms(old.vms, crate::apps::STOP_GRACE, &self.events).await;
        }
        ctx.note(&format!(
            "run by {}: {command}",
            ctx.requested_by.as_deref().unwrap_or("operator")
        ));
        let outcome = self
            .run_one_off(
                ctx,
                live.number,
                &digest,
                OneOffCommand {
                    process: RUN_PROCESS,
                    command,
                    timeout: RUN_TIMEOUT,
                },
                |line| ctx.say(line),
            )
            .await;
        let stopped = self.store.app(app).await?.is_some_and(|a| a.stopped);
        if ctx.took_down_live() && !stopped {
            ctx.say(&format!(
                "-----> Starting {app} (deploy #{}) again ...",
                live.number
            ));
            self.boot_and_switch(ctx, &live, 0).await?;
        }
        match status_of(command, outcome?.result)? {
            0 => Ok(()),
            status => Err(JobError::Rejected {
                message: format!("`{command}` exited with status {status}"),
            }),
        }
    }
}
