//! `volumes …`: an app's persistent volumes, over SSH (own and shared
//! apps; destroying and restoring data is the owner's) and from the CLI
//! (the operator, every app, who may also name files on the host):
//!
//! ```text
//! volumes APP                                   volumes and backups
//! volumes backup APP NAME [FILE]                a consistent copy (FILE: operator only)
//! volumes restore APP NAME BACKUP|FILE          replace the volume with a backup
//! volumes destroy APP NAME --confirm NAME       delete a volume the manifest no longer names
//! ```
//!
//! Backup and restore stop the app's VM for the copy and boot it again.

use gitd::CommandOutput;
use platform::volumes::VolumeAction;
use platform::{JobSpec, Platform};

use super::{fail, require_access, run_job, say, AdminError, Caller};

/// Runs a `volumes` subcommand.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let action = match words {
        [app] => return list(platform, caller, app, out).await,
        ["backup", app, name] => (
            app,
            VolumeAction::Backup {
                name: name.to_string(),
                to: None,
            },
        ),
        ["backup", app, name, file] => {
            if caller != Caller::Operator {
                return Ok(fail(
                    out,
                    &format!("over SSH a backup stays on the host: `volumes backup {app} {name}`, then `volumes {app}` lists it; the operator's CLI may write it to a file"),
                )
                .await);
            }
            if !file.starts_with('/') {
                return Err(AdminError::Usage(format!(
                    "the backup file must be an absolute path, not `{}`",
                    file.escape_default()
                )));
            }
            (
                app,
                VolumeAction::Backup {
                    name: name.to_string(),
                    to: Some(file.into()),
                },
            )
        }
        ["restore", app, name, from] => {
            if from.contains('/') && caller != Caller::Operator {
                return Ok(fail(
                    out,
                    &format!("over SSH a restore reads one of {app}'s backups by name (see `volumes {app}`), not a path"),
                )
                .await);
            }
            (
                app,
                VolumeAction::Restore {
                    name: name.to_string(),
                    from: from.to_string(),
                },
            )
        }
        ["destroy", app, name, "--confirm", confirm] if name == confirm => (
            app,
            VolumeAction::Destroy {
                name: name.to_string(),
            },
        ),
        ["destroy", app, name, ..] => {
            return Ok(fail(
                out,
                &format!("destroying volume `{name}` of {app} deletes its data; run again with --confirm {name}"),
            )
            .await)
        }
        _ => {
            return Err(AdminError::Usage(
                "usage: volumes APP | volumes backup APP NAME | volumes restore APP NAME BACKUP | volumes destroy APP NAME --confirm NAME".into(),
            ))
        }
    };
    let (app, action) = action;
    require_access(platform, caller, app).await?;
    if let (Caller::User(user), VolumeAction::Restore { .. } | VolumeAction::Destroy { .. }) =
        (caller, &action)
    {
        let owner = platform.store.require_app(app).await?.owner;
        if owner != user {
            return Ok(fail(
                out,
                &format!("only {app}'s owner ({owner}) may replace or delete its volumes"),
            )
            .await);
        }
    }
    run_job(platform, caller, app, JobSpec::Volume { action }, out).await
}

async fn list(
    platform: &Platform,
    caller: Caller<'_>,
    app: &str,
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    require_access(platform, caller, app).await?;
    let (volumes, backups) = match platform.volume_list(app).await {
        Ok(v) => v,
        Err(e) => return Ok(fail(out, &format!("error: {e}")).await),
    };
    if volumes.is_empty() {
        say(out, &format!("{app} has no volumes")).await;
    }
    for v in volumes {
        say(
            out,
            &format!(
                "{:<16} {:<24} {:>7} MiB  {:>7} MiB on disk",
                v.name,
                v.mount.as_deref().unwrap_or("(not in the live manifest)"),
                v.bytes >> 20,
                v.on_disk >> 20
            ),
        )
        .await;
    }
    for b in backups {
        say(
            out,
            &format!("backup {:<40} {:>7} MiB on disk", b.name, b.on_disk >> 20),
        )
        .await;
    }
    Ok(0)
}
