//! gitd's seams filled in by the binary: keys and access from the state
//! store, the deploy pipeline as the push hook, the admin commands.

use std::sync::Arc;

use gitd::{Access, Authority, BoxFuture, CommandOutput, Commands, DeployHook, DeployRequest};

use platform::store::{Store, StoreError};
use platform::Platform;

/// Keys and access, from the store.
pub struct StoreAuthority(pub Store);

impl Authority for StoreAuthority {
    fn user_for_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            self.0
                .user_for_fingerprint(fingerprint)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn authorize<'a>(
        &'a self,
        user: &'a str,
        app: &'a str,
        access: Access,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self
                .0
                .can_access(user, app)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(());
            }
            let exists = self.0.app(app).await.map_err(|e| e.to_string())?.is_some();
            match (exists, access) {
                (false, Access::Write) => match self.0.create_app(app, user).await {
                    Ok(_) => Ok(()),
                    // Created concurrently by someone else: check again.
                    Err(StoreError::AlreadyExists { .. }) if self.0.can_access(user, app).await.unwrap_or(false) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                _ => Err(format!(
                    "app `{app}` does not exist or you have no access to it (ask its owner: byteport apps share {app} {user})"
                )),
            }
        })
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
    ) -> BoxFuture<'a, Result<(), String>> {
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
                .map_err(|e| e.to_string())?;
            let mut watch = ClientWatch {
                platform: self.0.clone(),
                app: req.app.clone(),
                job: follower.job.id,
                finished: false,
            };
            let verdict = follower.wait(&self.0, |line| progress(line)).await;
            watch.finished = true;
            verdict.map(|_| ()).map_err(|e| e.to_string())
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
}
