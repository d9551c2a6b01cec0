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

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::apps::Platform;
use crate::boot::stop_vms;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::release::{ConsoleHooks, OneOffCommand, OutputLine};

/// How long a `run` may take before its VM is stopped.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The process name a `run` command has in the app's log.
pub const RUN_PROCESS: &str = "run";

/// How long the host waits, after the command's exit, for the last bytes
/// of its terminal.
const CONSOLE_DRAIN: Duration = Duration::from_secs(3);

/// A caller's terminal for [`Platform::run_on_terminal`].
#[derive(Debug)]
pub struct Terminal {
    /// `TERM` and the window at start.
    pub tty: runtime::Tty,
    /// What the user types, as it arrives; `None` is the end of their
    /// input.
    pub input: mpsc::Receiver<Bytes>,
    /// The window's size, as it changes.
    pub window: watch::Receiver<gitd::WindowSize>,
    /// What the terminal shows, as it is written; bounded, so a user who
    /// reads slowly holds the command back instead of filling memory.
    pub output: mpsc::Sender<Bytes>,
}

/// Relays a console's host end: `input` into it, its bytes to `output`.
/// Ends when the console ends (the VM powered off) or nobody takes the
/// output any more. The end of `input` only stops that direction: the
/// socket is not shut down, since that would hang up the terminal.
async fn relay_console(
    stream: std::os::unix::net::UnixStream,
    mut input: mpsc::Receiver<Bytes>,
    output: mpsc::Sender<Bytes>,
) {
    let stream = stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(stream));
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "run: cannot relay the console");
            return;
        }
    };
    let (mut from_guest, mut to_guest) = stream.split();
    let typed = async {
        while let Some(bytes) = input.recv().await {
            if to_guest.write_all(&bytes).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let shown = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from_guest.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if output
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // Both directions at once: a guest blocked on its output must never
    // wait for its input, or the other way round.
    tokio::select! {
        () = typed => {}
        () = shown => {}
    }
}

/// A `run`'s command for a one-off VM.
fn run_spec(command: &str) -> OneOffCommand<'_> {
    OneOffCommand {
        process: RUN_PROCESS,
        command,
        timeout: RUN_TIMEOUT,
    }
}

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
        let (deploy, digest) = self.runnable_deploy(app, command).await?;
        self.note(app, Some(deploy), &format!("run by {by}: {command}"));
        let outcome = self
            .one_off(
                (app, deploy, &digest),
                run_spec(command),
                say,
                on_line,
                std::future::pending(),
                None,
            )
            .await?;
        status_of(command, outcome.result)
    }

    /// [`Platform::run_command`] on a terminal (`ssh -t git@HOST run APP
    /// bash`): the command runs on a pseudo-terminal in the guest; the
    /// caller's keystrokes arrive on `terminal.input` and the terminal's
    /// bytes leave on `terminal.output`, untranslated both ways. Window
    /// changes are passed on. The caller's end of input does not hang up
    /// the terminal (a piped script still runs to its end); dropping this
    /// future does, and stops the VM.
    pub async fn run_on_terminal(
        &self,
        app: &str,
        command: &str,
        by: &str,
        terminal: Terminal,
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<i32, JobError> {
        let (deploy, digest) = self.runnable_deploy(app, command).await?;
        self.note(
            app,
            Some(deploy),
            &format!("run by {by} on a terminal: {command}"),
        );
        let Terminal {
            tty,
            input,
            window,
            output,
        } = terminal;
        let (handoff, console) = tokio::sync::oneshot::channel();
        let running = self.one_off(
            (app, deploy, &digest),
            run_spec(command),
            say,
            |_| {},
            std::future::pending(),
            Some(ConsoleHooks {
                tty,
                window,
                handoff,
            }),
        );
        let relay = async move {
            match console.await {
                Ok(stream) => relay_console(stream, input, output).await,
                // No VM, so no console: the outcome says why.
                Err(_) => std::future::pending().await,
            }
        };
        let mut running = std::pin::pin!(running);
        let mut relay = std::pin::pin!(relay);
        let outcome = tokio::select! {
            outcome = &mut running => {
                // The guest flushed the terminal before it reported the
                // exit; what is still in flight arrives before its EOF.
                let _ = tokio::time::timeout(CONSOLE_DRAIN, relay).await;
                outcome
            }
            () = &mut relay => running.await,
        }?;
        status_of(command, outcome.result)
    }

    /// The live deploy and artifact a `run` of `command` boots.
    async fn runnable_deploy(&self, app: &str, command: &str) -> Result<(i64, String), JobError> {
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
        Ok((live.number, digest))
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
            .run_one_off(ctx, live.number, &digest, run_spec(command), |line| {
                ctx.say(line)
            })
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
