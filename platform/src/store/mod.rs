//! The state store: users and SSH keys, apps, deploys, config vars and
//! secrets, jobs, claimed domains, portfolio versions and settings.
//!
//! One code path for both backends through `sqlx::Any`: SQLite (embedded,
//! the default) and PostgreSQL (production). The schema in `migrations/` is
//! written in SQL both understand, and is applied on every start.
//! Placeholders are `$1, $2, …` in order of appearance, which both accept.

mod access;
mod apps;
mod crypto;
mod deploys;
mod domains;
mod jobs;
mod portfolio;
mod sessions;
mod tokens;
mod users;
mod vars;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub use access::{AppOverview, KeyUse, SecretInfo};
pub use apps::App;
pub use crypto::SecretBox;
pub use deploys::{Deploy, DeployStatus};
pub use jobs::{CancelOutcome, JobRow, NewJob};
pub use sessions::{token_hash, NewSession, Session};
pub use tokens::{ApiToken, TokenScope};
pub use users::{SshKey, User};

/// Errors from the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connecting to the database failed.
    #[error("cannot open state store {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("cannot apply state store migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("state store query failed while {context}")]
    Query {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A referenced record does not exist.
    #[error("{kind} `{name}` does not exist")]
    NotFound {
        /// What kind of record.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The record already exists.
    #[error("{kind} `{name}` already exists")]
    AlreadyExists {
        /// What kind of record.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Another app holds this domain.
    #[error("domain `{domain}` belongs to {owner}; an app can only serve domains no other app has claimed (it is released when {owner} deploys without it or is destroyed)")]
    DomainTaken {
        /// The domain.
        domain: String,
        /// The app holding it.
        owner: String,
    },
    /// Input that the store refuses (bad name, bad key, ...).
    #[error("{0}")]
    Invalid(String),
    /// The secrets key file is unusable.
    #[error("secrets key {path}: {message}")]
    SecretsKey {
        /// The key file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sealed secret failed to decrypt (wrong key or tampered row).
    #[error("secret `{name}` of app `{app}` cannot be decrypted (was the secrets key replaced?)")]
    Unseal {
        /// The app.
        app: String,
        /// The secret's name.
        name: String,
    },
}

pub(crate) fn q(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

/// Is this the database's "unique constraint violated" error?
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A handle to the state store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    secrets: SecretBox,
    backend: Backend,
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Store {
    /// Opens the store at `url` (`sqlite://…` or `postgres://…`), applies the
    /// migrations, and loads (or creates) the secrets key under `home`.
    pub async fn open(url: &str, home: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            if let Some(file) = sqlite_file(url) {
                private_file(&file).map_err(|e| StoreError::Connect {
                    url: url.to_string(),
                    source: sqlx::Error::Io(e),
                })?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: crate::store::redact_url(url),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let secrets = SecretBox::load_or_create(&home.join("secrets.key"))?;
        Ok(Store {
            pool,
            secrets,
            backend,
        })
    }

    /// The connection pool (tests poke rows directly).
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`): a read-then-write transaction that
    /// upgrades later fails with "database is locked" when another
    /// connection wrote in between, instead of waiting its turn.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the SQLite database file (and its directory) readable by its
/// owner only, whatever the umask: it holds password hashes and config
/// vars. SQLite gives its `-wal` and `-shm` files the same mode.
fn private_file(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Hides a password in a database URL (`postgres://u:secret@h` → `postgres://u:***@h`).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

/// Validates an app or user name: a DNS label (lower-case letters, digits
/// and `-`, 1..=63 characters, not starting or ending with `-`).
pub fn validate_dns_label(kind: &str, name: &str) -> Result<(), StoreError> {
    if gitd::names::is_dns_label(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {kind} name `{}`: use 1-63 lower-case letters, digits and '-', not starting or ending with '-'",
            name.escape_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "hello", "hello-flask", "a1", &"a".repeat(63)] {
            validate_dns_label("app", good).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a/b",
            "../x",
            "a.b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(validate_dns_label("app", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_file("sqlite:///x/y/state.db?mode=rwc").unwrap(),
            Path::new("/x/y/state.db")
        );
        assert!(sqlite_file("sqlite::memory:").is_none());
    }
}
