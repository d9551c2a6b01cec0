//! `db …`: an app's managed PostgreSQL database (`database postgres` in
//! its manifest), over SSH (own and shared apps; restoring is the owner's)
//! and from the CLI (the operator, who may also name files on the host):
//!
//! ```text
//! db APP                          the database, and its backups
//! db backup APP [FILE]            pg_dump (custom format); FILE: operator only
//! db restore APP BACKUP|FILE      pg_restore in one transaction, as the app's role
//! db psql APP                     an interactive psql (the CLI on the host only)
//! ```

use gitd::CommandOutput;
use platform::Platform;

use super::{fail, require_access, say, AdminError, Caller};

/// Runs a `db` subcommand.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let app = match words {
        [app] | ["backup", app, ..] | ["restore", app, ..] | ["psql", app] => *app,
        _ => {
            return Err(AdminError::Usage(
                "usage: db APP | db backup APP | db restore APP BACKUP | db psql APP".into(),
            ))
        }
    };
    require_access(platform, caller, app).await?;
    let has_db = platform
        .store
        .secret_values(app)
        .await?
        .contains_key(platform::database::PASSWORD_SECRET);
    if !has_db {
        return Ok(fail(
            out,
            &format!("{app} has no database: add `database postgres` to its Byteport manifest and deploy"),
        )
        .await);
    }
    let result = match words {
        [_] => {
            say(
                out,
                &format!("{app}: PostgreSQL database on BytePort's managed cluster; its VMs get DATABASE_URL"),
            )
            .await;
            for b in backups(platform, app) {
                say(out, &format!("backup {b}")).await;
            }
            return Ok(0);
        }
        ["backup", _] => platform.database_backup(app, None).await,
        ["backup", _, file] => {
            if caller != Caller::Operator {
                return Ok(fail(out, &format!("over SSH a backup stays on the host: `db backup {app}`, then `db {app}` lists it")).await);
            }
            if !file.starts_with('/') {
                return Err(AdminError::Usage("the backup file must be an absolute path".into()));
            }
            platform.database_backup(app, Some(file.into())).await
        }
        ["restore", _, from] => {
            if let Caller::User(user) = caller {
                let owner = platform.store.require_app(app).await?.owner;
                if owner != user {
                    return Ok(fail(out, &format!("only {app}'s owner ({owner}) may restore its database")).await);
                }
                if from.contains('/') {
                    return Ok(fail(out, &format!("over SSH a restore reads one of {app}'s backups by name (see `db {app}`), not a path")).await);
                }
            }
            platform
                .database_restore(app, from)
                .await
                .map(|()| std::path::PathBuf::from(from))
        }
        ["psql", _] => {
            return Ok(fail(
                out,
                &format!("psql needs a terminal, which SSH commands here do not have; on the host run `byteport db psql {app}`"),
            )
            .await)
        }
        _ => {
            return Err(AdminError::Usage(
                "usage: db APP | db backup APP | db restore APP BACKUP | db psql APP".into(),
            ))
        }
    };
    match (result, words.first()) {
        (Ok(path), Some(&"restore")) => {
            say(
                out,
                &format!("restored {app}'s database from {}", path.display()),
            )
            .await;
            Ok(0)
        }
        (Ok(path), _) => {
            let shown = if caller == Caller::Operator {
                path.display().to_string()
            } else {
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            };
            say(out, &format!("backed up {app}'s database to {shown}")).await;
            Ok(0)
        }
        (Err(e), _) => Ok(fail(out, &format!("error: {e}")).await),
    }
}

fn backups(platform: &Platform, app: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(platform.home().join("backups").join(app))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("database-") && n.ends_with(".dump"))
        .collect();
    names.sort();
    names
}
