//! The cluster BytePort manages and what it does for apps.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};

use crate::names::{ident_for, quote_ident, quote_literal};
use crate::server::{self, Layout, RunAs, PORT, SUPERUSER};
use crate::DbError;

/// Where Debian installs PostgreSQL servers.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
/// Most connections one app's role may hold at once (so one app cannot
/// take every connection of the cluster).
pub const CONNECTION_LIMIT: u32 = 20;
/// How long a fast shutdown may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// An app's database login. Its `Debug` output hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role (login name).
    pub role: String,
    /// The database (same name as the role).
    pub database: String,
    /// The role's password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("role", &self.role)
            .field("database", &self.database)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The app's `DATABASE_URL` for a server reached at `host:port` (the
    /// runtime says which address the guest uses). TLS is off: the bytes
    /// never leave this host (guest → VMM/QEMU → the daemon's door → the
    /// Unix socket).
    pub fn url(&self, host: &str, port: u16) -> String {
        format!(
            "postgres://{}:{}@{host}:{port}/{}?sslmode=disable",
            self.role,
            percent_encode(&self.password),
            self.database
        )
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fresh random password (32 letters and digits, ~190 bits).
pub fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The PostgreSQL cluster BytePort manages, running while this value
/// lives. At most one per home (a lock file says so).
pub struct Cluster {
    home: PathBuf,
    bin: PathBuf,
    layout: Layout,
    run_as: RunAs,
    server: Mutex<Option<Child>>,
    /// `None` for a handle [`Cluster::attach`]ed to another process's server.
    _lock: Option<File>,
}

impl Cluster {
    /// Opens the cluster in `home`: `initdb` into `home/data` on first use
    /// (UTF8, locale C.UTF-8, SCRAM passwords), the access rules rewritten,
    /// leftovers of a crashed run ended, `postgres` started on the socket
    /// in `home/socket` only (no TCP) and waited for — crash recovery
    /// included.
    pub fn open(home: &Path) -> Result<Cluster, DbError> {
        let bin = server::find_bin_dir(Path::new(DEBIAN_ROOT))?;
        let run_as = RunAs::for_this_process()?;
        let layout = Layout::new(home);
        std::fs::create_dir_all(home)
            .map_err(DbError::io(format!("creating {}", home.display())))?;
        let lock = lock(home)?;
        server::prepare(home, &layout, &bin, &run_as)?;
        server::write_rules(&layout, &run_as)?;
        server::take_over(&layout)?;
        let child = server::start(&bin, &layout, &run_as)?;
        tracing::info!(socket = %layout.socket().display(), pid = child.id(), "database: server ready");
        let cluster = Cluster {
            home: home.to_path_buf(),
            bin,
            layout,
            run_as,
            server: Mutex::new(Some(child)),
            _lock: Some(lock),
        };
        // Nobody but the superuser connects to the maintenance databases.
        cluster.sql(
            "postgres",
            "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC;\n",
        )?;
        Ok(cluster)
    }

    /// A handle on the cluster that another process (`byteport up`) runs
    /// in `home`, for the tools that connect to it
    /// ([`Cluster::psql_command`] from the CLI); it neither starts nor
    /// stops the server (never call [`Cluster::ensure_running`] on it).
    pub fn attach(home: &Path) -> Result<Cluster, DbError> {
        let bin = server::find_bin_dir(Path::new(DEBIAN_ROOT))?;
        let run_as = RunAs::for_this_process()?;
        let layout = Layout::new(home);
        if !layout.socket().exists() {
            return Err(DbError::Start(format!(
                "no server runs in {} (is `byteport up` running, and does an app use `database postgres`?)",
                home.display()
            )));
        }
        Ok(Cluster {
            home: home.to_path_buf(),
            bin,
            layout,
            run_as,
            server: Mutex::new(None),
            _lock: None,
        })
    }

    /// The server's Unix socket (`home/socket/.s.PGSQL.5432`): what the
    /// runtime's database door connects to.
    pub fn socket(&self) -> PathBuf {
        self.layout.socket()
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.lock().ok()?.as_ref().map(Child::id)
    }

    /// Restarts the server if it died (or was stopped) since it was
    /// started — crash recovery included; `true` if it had to. A
    /// supervisor calls this periodically or when a connection fails.
    pub fn ensure_running(&self) -> Result<bool, DbError> {
        let mut server = self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(child) = server.as_mut() {
            if let Ok(None) = child.try_wait() {
                return Ok(false);
            }
        }
        tracing::warn!("database: the server is not running; restarting it");
        *server = None;
        server::take_over(&self.layout)?;
        *server = Some(server::start(&self.bin, &self.layout, &self.run_as)?);
        Ok(true)
    }

    /// Fast shutdown; SIGKILL after 30 s. Also done on drop.
    pub fn stop(&self) {
        if let Ok(mut s) = self.server.lock() {
            if let Some(mut child) = s.take() {
                server::stop(&mut child, STOP_GRACE);
                tracing::info!("database: server stopped");
            }
        }
    }

    /// Creates `app`'s role and database, or brings them up to date. The
    /// role's password becomes `password` (the one the caller stored for
    /// the app) or, with `None`, a fresh random one — the only way to learn
    /// a password is this return value, so store it (sealed). Calling it
    /// again with the stored password changes nothing.
    pub fn provision(&self, app: &str, password: Option<&str>) -> Result<Credentials, DbError> {
        let name = ident(app)?;
        let password = match password {
            Some(p) if p.is_empty() || p.len() > 200 || p.contains('\0') => {
                return Err(DbError::BadPassword(app.into()))
            }
            Some(p) => p.to_string(),
            None => random_password(),
        };
        let (q, l) = (quote_ident(&name), quote_literal(&name));
        let script = format!(
            "SELECT format('CREATE ROLE %I', {l}) WHERE NOT EXISTS \
               (SELECT 1 FROM pg_roles WHERE rolname = {l}) \\gexec\n\
             ALTER ROLE {q} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
               NOBYPASSRLS INHERIT CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {pw};\n\
             SELECT format('CREATE DATABASE %I OWNER %I', {l}, {l}) WHERE NOT EXISTS \
               (SELECT 1 FROM pg_database WHERE datname = {l}) \\gexec\n\
             ALTER DATABASE {q} OWNER TO {q};\n\
             REVOKE ALL ON DATABASE {q} FROM PUBLIC;\n",
            pw = quote_literal(&password)
        );
        self.sql("postgres", &script)?;
        Ok(Credentials {
            role: name.clone(),
            database: name,
            password,
        })
    }

    /// Whether `app` has a database.
    pub fn exists(&self, app: &str) -> Result<bool, DbError> {
        let name = ident(app)?;
        let out = self.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = {};\n",
                quote_literal(&name)
            ),
        )?;
        Ok(out.trim() == "1")
    }

    /// Drops `app`'s database (ending its sessions) and role; `false` if
    /// there was none. The caller offers a backup first.
    pub fn drop_database(&self, app: &str) -> Result<bool, DbError> {
        let existed = self.exists(app)?;
        let q = quote_ident(&ident(app)?);
        self.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {q} WITH (FORCE);\nDROP ROLE IF EXISTS {q};\n"),
        )?;
        Ok(existed)
    }

    /// Writes a `pg_dump` custom-format archive of `app`'s database to
    /// `file` (mode 0600): into a temporary file beside it, renamed into
    /// place once complete, so a failure leaves no partial backup.
    pub fn backup(&self, app: &str, file: &Path) -> Result<(), DbError> {
        let name = self.existing(app)?;
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".byteport-backup-")
            .tempfile_in(dir)
            .map_err(DbError::io(format!("creating a file in {}", dir.display())))?;
        let out = tmp
            .as_file()
            .try_clone()
            .map_err(DbError::io("opening the backup file"))?;
        let mut cmd = self.admin("pg_dump");
        cmd.args(["--format=custom", "--dbname", &name])
            .stdin(Stdio::null())
            .stdout(out);
        self.run(
            cmd,
            &format!("backing up the database of `{app}` (pg_dump)"),
        )?;
        tmp.as_file()
            .sync_all()
            .map_err(DbError::io("writing the backup"))?;
        tmp.persist(file).map_err(|e| {
            DbError::io(format!("saving the backup as {}", file.display()))(e.error)
        })?;
        Ok(())
    }

    /// Replaces `app`'s database contents with those of `file`, a
    /// [`Cluster::backup`] (or any `pg_dump -Fc` archive). The file is
    /// checked before anything is touched; the restore runs as the app's
    /// role (it can do no more than the app could) in one transaction, so
    /// a damaged archive changes nothing.
    pub fn restore(&self, app: &str, file: &Path) -> Result<(), DbError> {
        let name = self.existing(app)?;
        let not_archive = |why: String| DbError::NotAnArchive {
            path: file.to_path_buf(),
            why,
        };
        let open = || File::open(file).map_err(|e| not_archive(format!("cannot open it: {e}")));
        let mut magic = [0u8; 5];
        if open()?.read_exact(&mut magic).is_err() || &magic != b"PGDMP" {
            return Err(not_archive(
                "it is not a pg_dump custom-format archive; `byteport db backup` makes one".into(),
            ));
        }
        let mut list = self.admin("pg_restore");
        list.arg("--list").stdin(open()?);
        let out = list
            .output()
            .map_err(DbError::io("running pg_restore --list"))?;
        if !out.status.success() {
            return Err(not_archive(server::tool_output(&out)));
        }
        let mut cmd = self.admin("pg_restore");
        cmd.args(["--clean", "--if-exists", "--no-owner", "--no-privileges"])
            .args(["--single-transaction", "--exit-on-error"])
            .arg(format!("--role={name}"))
            .args(["--dbname", &name])
            .stdin(open()?);
        self.run(
            cmd,
            &format!("restoring the database of `{app}` (nothing was changed)"),
        )
    }

    /// An interactive `psql` on `app`'s database as the app's role (the
    /// session starts as the superuser over the socket and switches role at
    /// once, so no password is needed; the operator running it is trusted).
    pub fn psql_command(&self, app: &str) -> Result<Command, DbError> {
        let name = self.existing(app)?;
        let mut cmd = self.admin("psql");
        cmd.args(["--dbname", &name])
            .env("PGOPTIONS", format!("-c role={name}"))
            .env("PSQL_HISTORY", "/dev/null");
        for (k, v) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            if ["TERM", "LANG", "PAGER", "COLUMNS", "LINES"].contains(&k_str.as_ref())
                || k_str.starts_with("LC_")
            {
                cmd.env(k, v);
            }
        }
        Ok(cmd)
    }

    fn existing(&self, app: &str) -> Result<String, DbError> {
        let name = ident(app)?;
        if !self.exists(app)? {
            return Err(DbError::NoDatabase(app.into()));
        }
        Ok(name)
    }

    /// A PostgreSQL tool connecting as the superuser over the socket.
    fn admin(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("PGAPPNAME", "byteport")
            .arg("--host")
            .arg(&self.layout.socket_dir)
            .args(["--port", &PORT.to_string(), "--username", SUPERUSER])
            .arg("--no-password")
            .current_dir(&self.home);
        if self.run_as.ids.is_none() {
            if let Ok(pw) = std::fs::read_to_string(&self.layout.password_file) {
                cmd.env("PGPASSWORD", pw.trim());
            }
        }
        self.run_as.apply(&mut cmd);
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<(), DbError> {
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .map_err(DbError::io(format!("running {what}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DbError::Tool {
                what: what.into(),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Runs `script` in `database` as the superuser (stdin, so passwords
    /// never show in a process list; the server logs no failing statement).
    fn sql(&self, database: &str, script: &str) -> Result<String, DbError> {
        let mut cmd = self.admin("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["--dbname", database, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(DbError::io("running psql"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(DbError::io("sending SQL to psql"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(DbError::io("running psql"))?;
        if !out.status.success() {
            return Err(DbError::Tool {
                what: "psql".into(),
                output: server::tool_output(&out),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ident(app: &str) -> Result<String, DbError> {
    ident_for(app).map_err(|e| DbError::BadAppName {
        app: app.escape_debug().to_string(),
        why: e.0,
    })
}

/// One BytePort process per cluster: an exclusive `flock` on
/// `home/cluster.lock`, held while the cluster is open (the kernel drops
/// it when the process dies, so a crash leaves no stale lock).
fn lock(home: &Path) -> Result<File, DbError> {
    let path = home.join("cluster.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(DbError::io(format!("opening {}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(DbError::InUse(home.to_path_buf()));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_the_password_and_debug_hides_it() {
        let c = Credentials {
            role: "app_a".into(),
            database: "app_a".into(),
            password: "p@ss/w:rd".into(),
        };
        assert_eq!(
            c.url("10.0.2.101", 5432),
            "postgres://app_a:p%40ss%2Fw%3Ard@10.0.2.101:5432/app_a?sslmode=disable"
        );
        assert!(!format!("{c:?}").contains("p@ss"));
        let p = random_password();
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, random_password());
    }
}
