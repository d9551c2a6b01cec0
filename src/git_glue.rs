//! gitd's seams filled in by the binary: keys and access from the state
//! store, the deploy pipeline as the push hook, the admin commands.

use std::sync::Arc;

use gitd::{
    Access, AuthError, Authority, BoxFuture, CommandOutput, Commands, DeployError, DeployHook,
    DeployRequest,
};
use platform::JobError;

use platform::store::{Store, StoreError};
use platform::Platform;

/// Keys and access, from the store.
pub struct StoreAuthority(pub Store);

fn backend(e: StoreError) -> AuthError {
    AuthError::Backend(Box::new(e))
}

impl Authority for StoreAuthority {
    fn user_for_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move {
            let user = self
                .0
                .user_for_fingerprint(fingerprint)
                .await
                .map_err(backend)?;
            if user.is_some() {
                // Shown as "last used" on the dashboard's SSH keys page.
                if let Err(e) = self.0.touch_key(fingerprint).await {
                    tracing::warn!(error = %e, "cannot record a key's use");
                }
            }
            Ok(user)
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a str,
        app: &'a str,
        access: Access,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            if self.0.can_access(user, app).await.map_err(backend)? {
                return Ok(());
            }
            let exists = self.0.app(app).await.map_err(backend)?.is_some();
            let denied = || AuthError::Denied {
                user: user.to_string(),
                app: app.to_string(),
                access,
            };
            match (exists, access) {
                (false, Access::Write) => match self.0.create_app(app, user).await {
                    Ok(_) => Ok(()),
                    // Created concurrently by someone else: check again.
                    Err(StoreError::AlreadyExists { .. })
                        if self.0.can_access(user, app).await.unwrap_or(false) =>
                    {
                        Ok(())
                    }
                    Err(StoreError::AlreadyExists { .. }) => Err(denied()),
                    Err(StoreError::Invalid(reason)) => Err(AuthError::Refused { reason }),
                    Err(e) => Err(backend(e)),
                },
                _ => Err(denied()),
            }
        })
    }
}

/// A job's failure as the git client is told it.
fn deploy_error(e: JobError) -> DeployError {
    match e {
        JobError::Rejected { message } | JobError::Boot { message } => {
            DeployError::Rejected { reason: message }
        }
        e @ (JobError::Build { .. } | JobError::Release { .. }) => DeployError::Rejected {
            reason: e.to_string(),
        },
        JobError::Cancelled { reason } => DeployError::Cancelled { by: reason },
        JobError::Interrupted { message } => DeployError::Interrupted { reason: message },
        JobError::Deadline { deadline_ms } => DeployError::TimedOut {
            deadline: std::time::Duration::from_millis(deadline_ms.max(0) as u64),
        },
        e @ JobError::Internal { .. } => DeployError::Internal(Box::new(e)),
    }
}

/// The deploy pipeline as gitd's push hook: the push becomes a deploy job
/// (run on this node, where the repository is); its events are the
/// `remote:` lines; its verdict decides whether the ref moves.
pub struct PipelineHook(pub Arc<Platform>);

/// Watches a push's deploy job while its client is connected: if the
/// client goes away (Ctrl-C on `git push`) before the job's point of no
/// return, the job is cancelled; after it, the deploy goes on. Either way
/// the app's log says which.
struct ClientWatch {
    platform: Arc<Platform>,
    app: String,
    job: i64,
    finished: bool,
}

impl Drop for ClientWatch {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (platform, app, job) = (self.platform.clone(), self.app.clone(), self.job);
        match platform.job_control(job) {
            Some(control) if control.is_committed() => platform.note(
                &app,
                None,
                &format!("the push's client disconnected; job {job} is past its point of no return (switching) and finishes"),
            ),
            Some(control) => {
                control.cancel(platform::JobError::Cancelled {
                    reason: "the push's client disconnected (Ctrl-C on git push)".into(),
                });
                platform.note(&app, None, &format!("the push's client disconnected; job {job} cancelled, the previous version keeps serving"));
            }
            None => {
                // Still queued (or on its way out): cancel it in the store.
                tokio::spawn(async move {
                    let _ = platform.cancel(&app, Some(job), "the push's client disconnecting").await;
                });
            }
        }
    }
}

impl DeployHook for PipelineHook {
    fn deploy<'a>(
        &'a self,
        req: &'a DeployRequest,
        progress: gitd::hook::Progress<'a>,
    ) -> BoxFuture<'a, Result<(), DeployError>> {
        Box::pin(async move {
            let spec = platform::JobSpec::Deploy {
                commit: req.new.clone(),
                git_ref: req.git_ref.clone(),
                push_options: req.push_options.clone(),
            };
            let follower = self
                .0
                .submit(&req.app, spec, Some(&req.user), true)
                .await
                .map_err(deploy_error)?;
            let mut watch = ClientWatch {
                platform: self.0.clone(),
                app: req.app.clone(),
                job: follower.job.id,
                finished: false,
            };
            tokio::select! {
                verdict = follower.wait(&self.0, |line| progress(line)) => {
                    watch.finished = true;
                    verdict.map(|_| ()).map_err(deploy_error)
                }
                // Dropping the watch cancels the job unless it is past its
                // switch; gitd no longer waits for this verdict.
                () = req.client_gone.cancelled() => Err(DeployError::Cancelled {
                    by: "the push's client disconnecting".into(),
                }),
            }
        })
    }
}

/// Admin commands over SSH, run as the key's owner.
pub struct AdminCommands(pub Arc<Platform>);

impl Commands for AdminCommands {
    fn run<'a>(
        &'a self,
        user: &'a str,
        line: &'a str,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        Box::pin(crate::admin::run(
            &self.0,
            crate::admin::Caller::User(user),
            line,
            out,
        ))
    }

    fn run_interactive<'a>(
        &'a self,
        user: &'a str,
        line: &'a str,
        session: gitd::Interactive,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        Box::pin(crate::admin::run_interactive(
            &self.0,
            crate::admin::Caller::User(user),
            line,
            session,
            out,
        ))
    }
}
