//! The PostgreSQL server process: Debian's binaries, the user it runs as,
//! `initdb` on first use, the access rules written at every start, taking
//! over from a crashed predecessor, starting and stopping.
//!
//! Who runs what:
//! - As root, the server runs as the `postgres` system user (Debian's
//!   package creates it; `initdb` refuses root). `nobody` is not used as a
//!   fallback: it is shared with unrelated services, which could then read
//!   every app's data. The superuser role `byteport` is reachable only by
//!   `peer` authentication of that OS user (`pg_ident.conf` map `admin`):
//!   the daemon runs its admin tools (`psql`, `pg_dump`, `pg_restore`) as
//!   `postgres`. The daemon's own uid (root) is *not* mapped, because the
//!   VMs' database doors connect as the daemon: a guest could otherwise
//!   claim the superuser.
//! - Not as root (development), server, daemon and doors share one uid, so
//!   `peer` cannot tell them apart: the superuser then authenticates with
//!   SCRAM and a random password in `home/superuser.password` (0600).
//!
//! The socket directory (`home/socket`) is 0700 and the server's: only it
//! and root can reach the socket; jailed VM processes (their own uids)
//! cannot, they only reach their door.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DbError;

/// The superuser role.
pub const SUPERUSER: &str = "byteport";
/// The port number (it only names the socket file `.s.PGSQL.5432`).
pub const PORT: u16 = 5432;
/// Longest Unix socket path (`sun_path` minus the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long a start (including crash recovery) may take.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The OS identity the server and the admin tools run as.
#[derive(Debug, Clone)]
pub struct RunAs {
    /// `(uid, gid)` to switch to; `None`: ourselves (not root).
    pub ids: Option<(u32, u32)>,
    /// The OS user name (for `pg_ident.conf`).
    pub name: String,
}

impl RunAs {
    /// The rule above: `postgres` as root, else ourselves.
    pub fn for_this_process() -> Result<RunAs, DbError> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid == 0 {
            let (uid, gid) = user_ids("postgres").ok_or(DbError::NoServerUser)?;
            Ok(RunAs {
                ids: Some((uid, gid)),
                name: "postgres".into(),
            })
        } else {
            Ok(RunAs {
                ids: None,
                name: user_name(euid).unwrap_or_else(|| euid.to_string()),
            })
        }
    }

    /// Makes `cmd` run as this identity.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.ids {
            // std drops supplementary groups when root changes uid.
            cmd.uid(uid).gid(gid);
        }
    }

    /// Hands `path` to this identity.
    pub fn chown(&self, path: &Path) -> Result<(), DbError> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(DbError::io(format!(
                "handing {} to postgres",
                path.display()
            )))?;
        }
        Ok(())
    }
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static record valid
    // until the next getpw* call; we copy the ids at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn user_name(uid: u32) -> Option<String> {
    // SAFETY: as above; the name is copied before any other getpw* call.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding a server.
pub fn find_bin_dir(root: &Path) -> Result<PathBuf, DbError> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let version = e
                        .file_name()
                        .to_str()?
                        .split('.')
                        .map(|p| p.parse().ok())
                        .collect::<Option<Vec<u32>>>()?;
                    let bin = e.path().join("bin");
                    ["initdb", "postgres", "psql", "pg_dump", "pg_restore"]
                        .iter()
                        .all(|b| bin.join(b).exists())
                        .then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| DbError::NotInstalled(root.to_path_buf()))
}

/// Where things live under the cluster's home.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `home/data`: the data directory.
    pub data: PathBuf,
    /// `home/socket`: the socket directory.
    pub socket_dir: PathBuf,
    /// `home/postgres.log`: the server's output.
    pub log: PathBuf,
    /// `home/superuser.password` (not root only).
    pub password_file: PathBuf,
}

impl Layout {
    /// The layout under `home`.
    pub fn new(home: &Path) -> Layout {
        Layout {
            data: home.join("data"),
            socket_dir: home.join("socket"),
            log: home.join("postgres.log"),
            password_file: home.join("superuser.password"),
        }
    }

    /// The socket itself.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{PORT}"))
    }
}

/// Prepares `home`: directories with their owners and modes, `initdb` on
/// first use (into a scratch directory renamed into place, so a failed
/// `initdb` leaves nothing half made), the superuser password when not root.
pub fn prepare(home: &Path, layout: &Layout, bin: &Path, run_as: &RunAs) -> Result<(), DbError> {
    if layout.socket().as_os_str().len() > MAX_SOCKET_PATH {
        return Err(DbError::HomeTooLong(home.to_path_buf()));
    }
    std::fs::create_dir_all(home).map_err(DbError::io(format!("creating {}", home.display())))?;
    // The server must traverse home; nobody needs to list it.
    let mode = if run_as.ids.is_some() { 0o711 } else { 0o700 };
    set_mode(home, mode)?;
    let dir = &layout.socket_dir;
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(DbError::io(format!("creating {}", dir.display())))?;
    }
    run_as.chown(dir)?;
    set_mode(dir, 0o700)?;
    if run_as.ids.is_none() && !layout.password_file.exists() {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&layout.password_file)
            .map_err(DbError::io("writing the superuser password"))?;
        f.write_all(crate::cluster::random_password().as_bytes())
            .map_err(DbError::io("writing the superuser password"))?;
    }
    // The server's user must reach home through every parent directory.
    let mut probe = Command::new(bin.join("postgres"));
    probe
        .arg("--version")
        .env_clear()
        .current_dir(home)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run_as.apply(&mut probe);
    if probe.status().is_err() {
        return Err(DbError::Unreachable {
            home: home.to_path_buf(),
            user: run_as.name.clone(),
        });
    }
    if layout.data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let scratch = home.join("data.initdb");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir(&scratch).map_err(DbError::io("creating the initdb directory"))?;
    run_as.chown(&scratch)?;
    set_mode(&scratch, 0o700)?;
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&scratch)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C.UTF-8"])
        .args([
            "--auth-local=peer",
            "--auth-host=reject",
            "--no-instructions",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(home)
        .stdin(Stdio::null());
    if run_as.ids.is_none() {
        // The superuser logs in by password when not root (module docs).
        let mut pwfile = std::ffi::OsString::from("--pwfile=");
        pwfile.push(&layout.password_file);
        cmd.arg(pwfile);
    }
    run_as.apply(&mut cmd);
    tracing::info!(data = %layout.data.display(), "database: initdb");
    let out = cmd.output().map_err(DbError::io("running initdb"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(DbError::Tool {
            what: "initdb".into(),
            output: tool_output(&out),
        });
    }
    std::fs::rename(&scratch, &layout.data)
        .map_err(DbError::io("moving the new data directory into place"))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), DbError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(DbError::io(
        format!("setting the mode of {}", path.display()),
    ))
}

/// stdout and stderr of a finished tool, trimmed, for an error message.
pub fn tool_output(out: &std::process::Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let o = String::from_utf8_lossy(&out.stdout);
    if !o.trim().is_empty() {
        s.push('\n');
        s.push_str(o.trim());
    }
    if s.is_empty() {
        s = format!("({})", out.status);
    }
    s
}

/// The access rules: the superuser as described in the module docs; app
/// roles only to the database of their own name, with SCRAM; nothing else
/// (a connection no line matches is refused).
pub fn hba_conf(root: bool) -> String {
    let superuser = if root {
        "peer map=admin"
    } else {
        "scram-sha-256"
    };
    format!(
        "# Written by BytePort at every start of the cluster; edits are lost.\n\
         # TYPE  DATABASE  USER  METHOD\n\
         local   all       {SUPERUSER}  {superuser}\n\
         local   sameuser  all   scram-sha-256\n"
    )
}

/// The peer map: only the server's own OS user may be the superuser.
pub fn ident_conf(server_user: &str) -> String {
    format!(
        "# Written by BytePort at every start of the cluster; edits are lost.\n\
         # MAP  OS-USER  ROLE\n\
         admin  {server_user}  {SUPERUSER}\n"
    )
}

/// Writes the access rules into the data directory (the server's files).
pub fn write_rules(layout: &Layout, run_as: &RunAs) -> Result<(), DbError> {
    for (name, text) in [
        ("pg_hba.conf", hba_conf(run_as.ids.is_some())),
        ("pg_ident.conf", ident_conf(&run_as.name)),
    ] {
        let path = layout.data.join(name);
        std::fs::write(&path, text).map_err(DbError::io(format!("writing {name}")))?;
        run_as.chown(&path)?;
        set_mode(&path, 0o600)?;
    }
    Ok(())
}

/// Processes whose working directory is `data`: a postmaster and its
/// backends chdir there, so after a crash of the daemon (server still
/// running) or of the postmaster (orphaned backends) this finds them.
fn processes_in(data: &Path) -> Vec<i32> {
    let Ok(data) = data.canonicalize() else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Ends what a previous run left: a server still running (the daemon was
/// killed) gets a fast shutdown, orphaned backends (the postmaster was
/// killed) are terminated; then a `postmaster.pid` naming a live process
/// that is not ours (a reused pid) is removed, as the server would refuse
/// to start over it. A pid file of a dead process is left for the server,
/// which checks its shared memory is unused before starting.
pub fn take_over(layout: &Layout) -> Result<(), DbError> {
    let pid_file = layout.data.join("postmaster.pid");
    let leftovers = processes_in(&layout.data);
    if !leftovers.is_empty() {
        tracing::warn!(?leftovers, "database: ending processes a previous run left");
        for &pid in &leftovers {
            // SIGINT: a postmaster's fast shutdown; SIGTERM: a backend ends.
            // SAFETY: plain syscalls on pids we just found.
            unsafe {
                libc::kill(pid, libc::SIGINT);
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !processes_in(&layout.data).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in processes_in(&layout.data) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Ok(text) = std::fs::read_to_string(&pid_file) {
        let pid: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        // SAFETY: signal 0 only checks the pid exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
            std::fs::remove_file(&pid_file)
                .map_err(DbError::io("removing a stale postmaster.pid"))?;
        }
    }
    Ok(())
}

/// Starts `postgres` on the socket only and waits until it accepts
/// connections (after crash recovery, if any).
pub fn start(bin: &Path, layout: &Layout, run_as: &RunAs) -> Result<Child, DbError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&layout.log)
        .map_err(DbError::io("opening the server log"))?;
    let log2 = log
        .try_clone()
        .map_err(DbError::io("opening the server log"))?;
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&layout.data)
        .args(["-p", &PORT.to_string()])
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            layout.socket_dir.display()
        ))
        .args(["-c", "unix_socket_permissions=0700"])
        .args(["-c", "password_encryption=scram-sha-256"])
        .args(["-c", "log_min_error_statement=panic"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(&layout.data)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    run_as.apply(&mut cmd);
    let mut child = cmd.spawn().map_err(DbError::io("starting postgres"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DbError::Start(format!(
                "postgres exited ({status}); its log ends:\n{}",
                log_tail(&layout.log)
            )));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .arg("-h")
            .arg(&layout.socket_dir)
            .args(["-p", &PORT.to_string(), "-t", "2", "-q"])
            .env_clear()
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(child);
        }
        if Instant::now() > deadline {
            stop(&mut child, Duration::from_secs(5));
            return Err(DbError::Start(format!(
                "postgres did not accept connections within {}s; its log ends:\n{}",
                START_TIMEOUT.as_secs(),
                log_tail(&layout.log)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fast shutdown (SIGINT: sessions end, transactions roll back, a clean
/// checkpoint), SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!("database: postgres did not stop in time; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of the server log.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_server_wins_by_version_number() {
        let d = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "13", "notaversion"] {
            let bin = d.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for b in ["initdb", "postgres", "psql", "pg_dump", "pg_restore"] {
                std::fs::write(bin.join(b), b"").unwrap();
            }
        }
        // A client-only install has no server: skipped.
        std::fs::create_dir_all(d.path().join("16/bin")).unwrap();
        assert_eq!(find_bin_dir(d.path()).unwrap(), d.path().join("15/bin"));
        let e = find_bin_dir(&d.path().join("none")).unwrap_err();
        assert!(e.to_string().contains("apt-get install postgresql"), "{e}");
    }

    #[test]
    fn the_rules_admit_the_superuser_by_peer_only_as_root() {
        let root = hba_conf(true);
        assert!(root.contains("local   all       byteport  peer map=admin"));
        assert!(root.contains("local   sameuser  all   scram-sha-256"));
        assert!(!root.contains("trust") && !root.contains("host"));
        assert!(hba_conf(false).contains("byteport  scram-sha-256"));
        assert!(ident_conf("postgres").contains("admin  postgres  byteport"));
    }
}
