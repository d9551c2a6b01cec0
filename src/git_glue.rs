//! gitd's seams filled in by the binary: keys and access from the state
//! store, the deploy pipeline as the push hook, the admin commands.

use std::sync::Arc;

use gitd::{Access, Authority, BoxFuture, CommandOutput, Commands, DeployHook, DeployRequest};

use crate::platform::Platform;
use crate::store::{Store, StoreError};

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

/// The deploy pipeline as gitd's push hook.
pub struct PipelineHook(pub Arc<Platform>);

impl DeployHook for PipelineHook {
    fn deploy<'a>(
        &'a self,
        req: &'a DeployRequest,
        progress: gitd::hook::Progress<'a>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = crate::deploy::DeployRequest {
                app: req.app.clone(),
                repo: req.repo.clone(),
                git_ref: req.git_ref.clone(),
                commit: req.new.clone(),
                pushed_by: Some(req.user.clone()),
                push_options: req.push_options.clone(),
            };
            crate::deploy::run(&self.0, &request, &|l: &str| progress(l))
                .await
                .map(|_| ())
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
