//! One-off VMs of an artifact: the release phase a deploy runs after its
//! build and before its switch (Heroku's release phase: migrations, schema
//! set-up), and `byteport run`.
//!
//! A one-off VM boots the artifact with the app's config vars, secrets,
//! volumes and egress, runs one command instead of the app's processes,
//! and powers off when it exits ([`runtime::one_off`]). Its output goes
//! to the app's log and to whoever follows the job (the pusher reads it
//! as `remote:` lines); a non-zero exit fails the deploy before anything
//! is switched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::one_off::{wait_exit_unless, OneOffError};

use crate::apps::Platform;
use crate::events::{EventKind, VmChange};
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;

/// How long a release command may run (Heroku allows an hour; a release
/// that needs more belongs in a worker).
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The process name a release command runs under (in `logs`).
pub const RELEASE_PROCESS: &str = "release";

/// A command for a one-off VM.
#[derive(Debug, Clone)]
pub struct OneOffCommand<'a> {
    /// The process name it runs (and logs) under.
    pub process: &'a str,
    /// The command line.
    pub command: &'a str,
    /// How long it may run; then its VM is stopped.
    pub timeout: Duration,
}

/// How a one-off command ended.
#[derive(Debug)]
pub struct OneOffOutcome {
    /// Its exit status, or why there is none.
    pub result: Result<i32, OneOffError>,
    /// Boot and run time.
    pub took: Duration,
}

impl Platform {
    /// Runs `run.command` once in a one-off VM of `deploy`'s artifact
    /// `digest`, its output lines going to `on_line` (and the app's log).
    /// Cancelling the job stops the VM.
    pub(crate) async fn run_one_off(
        &self,
        ctx: &JobCtx,
        deploy: i64,
        digest: &str,
        run: OneOffCommand<'_>,
        on_line: impl Fn(&str),
    ) -> Result<OneOffOutcome, JobError> {
        let (process, command, timeout) = (run.process, run.command, run.timeout);
        let app = ctx.app.clone();
        let (_, mut spec, opts) = self.app_spec(ctx, deploy, digest).await?;
        spec.one_off = true;
        spec.processes = vec![(process.to_string(), command.to_string())];
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let log = self.events.app_sink(&app, deploy);
        let sink: runtime::drivers::AppLog =
            Arc::new(move |proc: &str, stream: &str, text: &str| {
                log(proc, stream, text);
                let _ = tx.send(text.to_string());
            });
        let started = Instant::now();
        let events = self.events.clone();
        let task = {
            let cancel = cancel.clone();
            let app = app.clone();
            tokio::task::spawn_blocking(move || {
                let mut vm = runtime::boot(&spec, &opts, sink).map_err(|e| JobError::Boot {
                    message: format!(
                        "cannot boot the one-off VM: {}",
                        crate::jobs::error_chain(&e)
                    ),
                })?;
                let name = vm.vm.name().to_string();
                events.emit(
                    &app,
                    Some(deploy),
                    None,
                    EventKind::Vm {
                        change: VmChange::Booted,
                        vm: name.clone(),
                        detail: Some("one-off".into()),
                    },
                );
                let result = wait_exit_unless(vm.vm.as_mut(), timeout, &cancel);
                vm.vm.stop(Duration::from_secs(5));
                events.emit(
                    &app,
                    Some(deploy),
                    None,
                    EventKind::Vm {
                        change: VmChange::Stopped,
                        vm: name,
                        detail: Some("one-off".into()),
                    },
                );
                Ok::<_, JobError>(result)
            })
        };
        let mut task = std::pin::pin!(task);
        let result = loop {
            tokio::select! {
                Some(line) = rx.recv() => on_line(&line),
                done = &mut task => {
                    while let Ok(line) = rx.try_recv() {
                        on_line(&line);
                    }
                    break done.map_err(|e| JobError::Internal {
                        message: format!("one-off task failed: {e}"),
                    })??;
                }
                why = ctx.control.stopped() => {
                    cancel.store(true, Ordering::SeqCst);
                    // The VM is stopped before the job ends.
                    let _ = (&mut task).await;
                    return Err(why);
                }
            }
        };
        Ok(OneOffOutcome {
            result,
            took: started.elapsed(),
        })
    }

    /// The release phase of deploy `deploy`: runs `command` in a one-off
    /// VM of the new artifact; anything but exit status 0 fails the deploy.
    /// An app with volumes has its serving VM stopped first (an ext4
    /// volume is mounted by one VM at a time); a failure then boots the
    /// live deploy again.
    pub(crate) async fn release(
        &self,
        ctx: &JobCtx,
        deploy: i64,
        digest: &str,
        command: &str,
        has_volumes: bool,
    ) -> Result<i64, JobError> {
        if has_volumes {
            let (_, spec, _) = self.app_spec(ctx, deploy, digest).await?;
            self.stop_for_volumes(ctx, &spec).await;
        }
        ctx.say(&format!("-----> Running release command: {command}"));
        let outcome = self
            .run_one_off(
                ctx,
                deploy,
                digest,
                OneOffCommand {
                    process: RELEASE_PROCESS,
                    command,
                    timeout: RELEASE_TIMEOUT,
                },
                |line| ctx.say(&format!("       {line}")),
            )
            .await?;
        let ms = outcome.took.as_millis() as i64;
        let kept = if ctx.took_down_live() {
            "the previous version is booted again"
        } else {
            "the previous version keeps serving"
        };
        match outcome.result {
            Ok(0) => {
                ctx.say(&format!(
                    "-----> Release command succeeded in {:.1}s",
                    ms as f64 / 1000.0
                ));
                Ok(ms)
            }
            Ok(status) => Err(JobError::Release {
                message: format!(
                    "the release command `{command}` exited with status {status}; deploy #{deploy} does not go live and {kept}"
                ),
            }),
            Err(e) => Err(JobError::Release {
                message: format!(
                    "the release command `{command}` did not finish: {e}; deploy #{deploy} does not go live and {kept}"
                ),
            }),
        }
    }
}
