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

use runtime::drivers::AppVm;
use runtime::one_off::{wait_exit_tending, OneOffError};

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

/// A line a one-off command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// Written to its stderr (else stdout).
    pub stderr: bool,
    /// The line, without its newline.
    pub text: String,
}

/// How a one-off command ended.
#[derive(Debug)]
pub struct OneOffOutcome {
    /// Its exit status, or why there is none.
    pub result: Result<i32, OneOffError>,
    /// Boot and run time.
    pub took: Duration,
}

/// What a one-off VM with a terminal (`run` over `ssh -t`) needs from its
/// caller: the terminal, its window changes, and where the console's host
/// end goes once the VM is up.
pub(crate) struct ConsoleHooks {
    /// `TERM` and the window at start.
    pub tty: runtime::Tty,
    /// Window changes, passed to the guest while the command runs.
    pub window: tokio::sync::watch::Receiver<gitd::WindowSize>,
    /// Gets the console's host end (raw bytes both ways).
    pub handoff: tokio::sync::oneshot::Sender<std::os::unix::net::UnixStream>,
}

/// Sets the flag when dropped: a one-off whose caller went away (an SSH
/// client that disconnected) has its VM stopped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Platform {
    /// Runs `run.command` once in a one-off VM of (`app`, `deploy`,
    /// artifact `digest`), its output lines going to `on_line` (and the
    /// app's log), progress notes to `say`. The VM is stopped when
    /// `stopped` resolves (the job was cancelled) or this future is dropped.
    /// With `console` the command runs on a terminal instead, and its
    /// bytes go through the console, not `on_line`.
    pub(crate) async fn one_off(
        &self,
        (app, deploy, digest): (&str, i64, &str),
        run: OneOffCommand<'_>,
        say: &(dyn Fn(&str) + Sync),
        mut on_line: impl FnMut(OutputLine),
        stopped: impl std::future::Future<Output = JobError>,
        console: Option<ConsoleHooks>,
    ) -> Result<OneOffOutcome, JobError> {
        let (process, command, timeout) = (run.process, run.command, run.timeout);
        let app = app.to_string();
        let (_, mut spec, opts) = self.app_spec(&app, deploy, digest, say).await?;
        spec.one_off = true;
        spec.processes = vec![(process.to_string(), command.to_string())];
        spec.console = console.as_ref().map(|c| c.tty.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputLine>();
        let log = self.events.app_sink(&app, deploy);
        let sink: runtime::drivers::AppLog =
            Arc::new(move |proc: &str, stream: &str, text: &str| {
                log(proc, stream, text);
                let _ = tx.send(OutputLine {
                    stderr: stream == "err",
                    text: text.to_string(),
                });
            });
        let started = Instant::now();
        let events = self.events.clone();
        let task = {
            let cancel = cancel.clone();
            tokio::task::spawn_blocking(move || {
                let mut vm = runtime::boot(&spec, &opts, sink).map_err(|e| JobError::Boot {
                    message: format!(
                        "cannot boot the one-off VM: {}",
                        crate::jobs::error_chain(&e)
                    ),
                })?;
                let name = vm.vm.name().to_string();
                let vm_event = |change| {
                    events.emit(
                        &app,
                        Some(deploy),
                        None,
                        EventKind::Vm {
                            change,
                            vm: name.clone(),
                            detail: Some("one-off".into()),
                        },
                    )
                };
                vm_event(VmChange::Booted);
                let mut window = None;
                if let Some(hooks) = console {
                    if let Some(stream) = vm.vm.take_console() {
                        let _ = hooks.handoff.send(stream);
                    }
                    window = Some(hooks.window);
                }
                // Window changes reach the guest from this thread, which
                // owns the VM; typed bytes never become one.
                let mut tend = |vm: &mut dyn AppVm| {
                    if let Some(w) = window.as_mut() {
                        if w.has_changed().unwrap_or(false) {
                            let size = *w.borrow_and_update();
                            vm.resize_console(size.cols, size.rows);
                        }
                    }
                };
                let result = wait_exit_tending(vm.vm.as_mut(), timeout, &cancel, &mut tend);
                vm.vm.stop(Duration::from_secs(5));
                vm_event(VmChange::Stopped);
                Ok::<_, JobError>(result)
            })
        };
        let mut task = std::pin::pin!(task);
        let mut stopped = std::pin::pin!(stopped);
        let result = loop {
            tokio::select! {
                Some(line) = rx.recv() => on_line(line),
                done = &mut task => {
                    while let Ok(line) = rx.try_recv() {
                        on_line(line);
                    }
                    break done.map_err(|e| JobError::Internal {
                        message: format!("one-off task failed: {e}"),
                    })??;
                }
                why = &mut stopped => {
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

    /// [`Platform::one_off`] for a job: progress to its requester, and the
    /// job's cancel stops the VM.
    pub(crate) async fn run_one_off(
        &self,
        ctx: &JobCtx,
        deploy: i64,
        digest: &str,
        run: OneOffCommand<'_>,
        on_line: impl Fn(&str),
    ) -> Result<OneOffOutcome, JobError> {
        self.one_off(
            (&ctx.app, deploy, digest),
            run,
            &ctx.progress(),
            |line| on_line(&line.text),
            ctx.control.stopped(),
            None,
        )
        .await
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
            let (_, spec, _) = self
                .app_spec(&ctx.app, deploy, digest, &ctx.progress())
                .await?;
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
