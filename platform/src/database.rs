//! An app's managed PostgreSQL database (`database postgres` in its
//! manifest), as Heroku Postgres or Dokku's postgres plugin give one.
//!
//! The [`::database`] crate runs one cluster for all apps under
//! `$BYTEPORT_HOME/postgres` (Debian's server, a Unix socket only,
//! separate from BytePort's own store), started on first use. Each app
//! gets a role and a database of its own; the role's password is made
//! once and kept sealed with the app's secrets (`BYTEPORT_DATABASE_PASSWORD`,
//! never put in the VM's environment by itself). A VM reaches the cluster
//! only through its database door, and sees `DATABASE_URL`.
//!
//! Removing `database` from the manifest detaches the database (its VMs no
//! longer get the door or the URL) and keeps the data; `apps destroy`
//! backs it up under `$BYTEPORT_HOME/backups/<app>/` and then drops it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::database::Cluster;

use crate::apps::Platform;
use crate::jobs::JobError;

/// The secret the app's database password is kept in.
pub const PASSWORD_SECRET: &str = "BYTEPORT_DATABASE_PASSWORD";

fn db_error<'a>(app: &'a str, what: &'a str) -> impl FnOnce(::database::DbError) -> JobError + 'a {
    move |e| JobError::Rejected {
        message: format!("{what} of {app} failed: {e}"),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Internal {
            message: format!("database task failed: {e}"),
        })
}

impl Platform {
    /// The managed cluster, started (or restarted after a crash) as needed.
    pub(crate) async fn database_cluster(&self) -> Result<Arc<Cluster>, JobError> {
        let mut slot = self.databases.lock().await;
        if let Some(cluster) = slot.clone() {
            let c = cluster.clone();
            blocking(move || c.ensure_running())
                .await?
                .map_err(|e| JobError::Boot {
                    message: format!("the managed database server is down and cannot restart: {e}"),
                })?;
            return Ok(cluster);
        }
        let home = Platform::database_home(&self.home);
        if let Some(parent) = home.parent().filter(|_| !home.starts_with(&self.home)) {
            // /var/lib/byteport: the server's user must pass through it,
            // whatever this process's umask.
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(parent)
                .and_then(|()| {
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(|e| JobError::Boot {
                    message: format!("cannot create {}: {e}", parent.display()),
                })?;
        }
        let cluster =
            blocking(move || Cluster::open(&home))
                .await?
                .map_err(|e| JobError::Internal {
                    message: format!("cannot start the managed database server: {e}"),
                })?;
        let cluster = Arc::new(cluster);
        *slot = Some(cluster.clone());
        Ok(cluster)
    }

    /// Provisions `app`'s database if needed, puts `DATABASE_URL` in `env`
    /// and returns the VM's door to the cluster.
    pub(crate) async fn attach_database(
        &self,
        app: &str,
        env: &mut BTreeMap<String, String>,
        driver: &runtime::Driver,
    ) -> Result<runtime::EgressEndpoint, JobError> {
        let cluster = self.database_cluster().await?;
        let stored = self.store.secret_values(app).await?.remove(PASSWORD_SECRET);
        let (c, a, pw) = (cluster.clone(), app.to_string(), stored.clone());
        let creds = blocking(move || c.provision(&a, pw.as_deref()))
            .await?
            .map_err(db_error(app, "provisioning the database"))?;
        if stored.is_none() {
            self.store
                .set_secret(app, PASSWORD_SECRET, &creds.password)
                .await?;
        }
        let addr = runtime::database_addr(driver);
        env.insert(
            "DATABASE_URL".into(),
            creds.url(&addr.ip().to_string(), addr.port()),
        );
        Ok(runtime::EgressEndpoint::Unix(cluster.socket()))
    }

    fn database_backups(&self, app: &str) -> PathBuf {
        self.home.join("backups").join(app)
    }

    /// Dumps `app`'s database (pg_dump's custom format) to `to`, or to a
    /// new file under its backups directory; returns the file.
    pub async fn database_backup(
        &self,
        app: &str,
        to: Option<PathBuf>,
    ) -> Result<PathBuf, JobError> {
        let cluster = self.database_cluster().await?;
        let dest = match to {
            Some(p) => p,
            None => {
                let dir = self.database_backups(app);
                std::fs::create_dir_all(&dir).map_err(|e| JobError::Internal {
                    message: format!("cannot create {}: {e}", dir.display()),
                })?;
                dir.join(format!("database-{}.dump", crate::volumes::stamp()))
            }
        };
        let (a, d) = (app.to_string(), dest.clone());
        blocking(move || cluster.backup(&a, &d))
            .await?
            .map_err(db_error(app, "the database backup"))?;
        Ok(dest)
    }

    /// Restores `app`'s database from `from`: a backup's name under its
    /// backups directory, or (from the operator) a path on the host.
    pub async fn database_restore(&self, app: &str, from: &str) -> Result<(), JobError> {
        let path = if from.starts_with('/') {
            PathBuf::from(from)
        } else if crate::volumes::is_plain_name(from) {
            self.database_backups(app).join(from)
        } else {
            return Err(JobError::Rejected {
                message: format!(
                    "`{}` is neither a backup of {app} nor an absolute path",
                    from.escape_default()
                ),
            });
        };
        let cluster = self.database_cluster().await?;
        let a = app.to_string();
        blocking(move || cluster.restore(&a, &path))
            .await?
            .map_err(db_error(app, "the database restore"))
    }

    /// At `apps destroy`: a last backup of the app's database (if it has
    /// one), then the database and role are dropped. Returns the backup.
    pub(crate) async fn retire_database(&self, app: &str) -> Result<Option<PathBuf>, JobError> {
        if !self
            .store
            .secret_values(app)
            .await?
            .contains_key(PASSWORD_SECRET)
        {
            return Ok(None);
        }
        let backup = self.database_backup(app, None).await?;
        let cluster = self.database_cluster().await?;
        let a = app.to_string();
        blocking(move || cluster.drop_database(&a))
            .await?
            .map_err(db_error(app, "dropping the database"))?;
        Ok(Some(backup))
    }

    /// Where the managed cluster of the daemon with data directory `home`
    /// lives: `home/postgres`, unless the daemon runs as root and the
    /// server's own user (`postgres`) could not reach it there (root's
    /// home directory is 0700); then `/var/lib/byteport/postgres-<hash of
    /// home>`, as Debian keeps its clusters under `/var/lib`.
    pub fn database_home(home: &Path) -> PathBuf {
        use sha2::Digest;
        use std::os::unix::fs::PermissionsExt;
        let inside = home.join("postgres");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let reachable = home.ancestors().all(|dir| {
            dir.as_os_str().is_empty()
                || std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
        });
        if !root || reachable {
            return inside;
        }
        let hash = sha2::Sha256::digest(home.as_os_str().as_encoded_bytes());
        PathBuf::from("/var/lib/byteport").join(format!("postgres-{}", &hex::encode(hash)[..12]))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::Platform;

    #[test]
    fn the_cluster_stays_in_the_data_directory_when_the_server_can_reach_it() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        for d in [dir.path(), home.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        assert_eq!(Platform::database_home(&home), home.join("postgres"));

        // A private data directory (what `up` makes): as root, the cluster
        // moves under /var/lib, one per data directory.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let moved = Platform::database_home(&home);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(
                moved
                    .to_string_lossy()
                    .starts_with("/var/lib/byteport/postgres-"),
                "{}",
                moved.display()
            );
            let other = dir.path().join("other");
            std::fs::create_dir(&other).unwrap();
            assert_ne!(Platform::database_home(&other), moved);
            assert_eq!(
                Platform::database_home(&home),
                moved,
                "stable for one data directory"
            );
        } else {
            // Not root: the server runs as this user, who can reach it.
            assert_eq!(moved, home.join("postgres"));
        }
    }
}
