//! `database`: managed PostgreSQL for apps. BytePort runs one PostgreSQL
//! cluster of its own (Debian's packaged server, `/usr/lib/postgresql/<v>/bin`,
//! in its own data directory, listening on a Unix socket only — separate
//! from BytePort's own store) and gives each app that asks for
//! `database postgres` a database and a role of the same name, with a
//! random password.
//!
//! - [`Cluster::open`] initialises the cluster on first use, takes over
//!   from a crashed predecessor, starts the server and waits until it is
//!   ready; [`Cluster::ensure_running`] restarts it if it died;
//!   [`Cluster::stop`] (or dropping it) shuts it down fast.
//! - [`Cluster::provision`], [`Cluster::exists`], [`Cluster::drop_database`]:
//!   an app's database and role.
//! - [`Cluster::backup`] / [`Cluster::restore`]: `pg_dump` custom-format
//!   archives; a restore that fails changes nothing.
//! - [`Cluster::psql_command`]: an interactive `psql` as the app's role.
//!
//! Isolation: an app's role may connect to its own database only (the
//! `sameuser` rule of `pg_hba.conf`, SCRAM passwords, `CONNECT` revoked
//! from `PUBLIC`); the superuser is reachable only by the server's own OS
//! user (see [`server`] for who runs what). VMs reach the
//! socket through the runtime's database door, never directly.
//!
//! The API is blocking (std processes and files): call it from
//! `tokio::task::spawn_blocking` in async code. Admin work goes through
//! PostgreSQL's own tools (`psql`, `pg_dump`, `pg_restore`), run as the
//! server's user.
#![deny(missing_docs)]

mod cluster;
pub mod names;
pub mod server;

pub use cluster::{random_password, Cluster, Credentials, CONNECTION_LIMIT};

use std::path::PathBuf;

/// Errors of the managed PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No server binaries.
    #[error(
        "PostgreSQL's server is not installed (no initdb/postgres under {0}/<version>/bin): \
         apt-get install postgresql"
    )]
    NotInstalled(PathBuf),
    /// Root needs the `postgres` user to run the server as.
    #[error(
        "running as root, the database server must run as the `postgres` system user, \
         and there is none: apt-get install postgresql creates it"
    )]
    NoServerUser,
    /// The socket path would be too long.
    #[error(
        "the database home {0} is too long for a Unix socket path: use a shorter BYTEPORT_HOME"
    )]
    HomeTooLong(PathBuf),
    /// The server's user cannot reach the home directory.
    #[error(
        "the `{user}` user (the database server's) cannot reach {home}: every directory \
         above it must be searchable by others (chmod o+x)"
    )]
    Unreachable {
        /// The cluster's home.
        home: PathBuf,
        /// The server's OS user.
        user: String,
    },
    /// Another process has the cluster open.
    #[error("the database cluster in {0} is in use by another BytePort process")]
    InUse(PathBuf),
    /// The server did not start.
    #[error("the database server did not start: {0}")]
    Start(String),
    /// Not an app name.
    #[error("`{app}` cannot name a database: {why}")]
    BadAppName {
        /// What was given.
        app: String,
        /// Why it was refused.
        why: String,
    },
    /// A password that cannot be used.
    #[error(
        "the database password for `{0}` is unusable: it must have 1 to 200 characters and no NUL"
    )]
    BadPassword(String),
    /// The app has no database.
    #[error("app `{0}` has no database")]
    NoDatabase(String),
    /// A restore was given something that is not a `pg_dump -Fc` archive.
    #[error("{path} is not a usable database backup ({why}); nothing was changed")]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A PostgreSQL tool failed.
    #[error("{what} failed: {output}")]
    Tool {
        /// Which tool, doing what.
        what: String,
        /// Its messages.
        output: String,
    },
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbError {
        let what = what.into();
        move |source| DbError::Io { what, source }
    }
}
