//! A real PostgreSQL server for tests: `initdb` into a temp dir, `pg_ctl`
//! on a free loopback port, stopped and removed on drop. Uses Debian's
//! `postgresql` package binaries (`/usr/lib/postgresql/<v>/bin`). As root,
//! the server runs as the `postgres` (or `nobody`) user, as initdb requires.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running PostgreSQL server owned by a test.
pub struct PgServer {
    bin: PathBuf,
    data: PathBuf,
    ids: Option<(u32, u32)>,
    /// `postgres://…` URL of the `postgres` database.
    pub url: String,
    _dir: tempfile::TempDir,
}

fn find_bin_dir() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return dir;
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin. \
         Install them with `apt-get install postgresql` (.ci/run does this)."
    );
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static passwd record
    // that stays valid until the next getpw* call; we copy the ids at once.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

use testvm::free_port;

impl PgServer {
    /// Starts a fresh server; panics with a fix if PostgreSQL is missing.
    pub fn start() -> PgServer {
        let bin = find_bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: geteuid has no preconditions.
        let ids = if unsafe { libc::geteuid() } == 0 {
            Some(
                user_ids("postgres")
                    .or_else(|| user_ids("nobody"))
                    .expect("running as root needs a `postgres` or `nobody` user for initdb"),
            )
        } else {
            None
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&sock).unwrap();
        let log = dir.path().join("server.log");
        std::fs::write(&log, b"").unwrap();
        if let Some((uid, gid)) = ids {
            for p in [&data, &sock, &log] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let run = |cmd: &mut Command, what: &str| {
            if let Some((uid, gid)) = ids {
                cmd.uid(uid).gid(gid);
            }
            let out = cmd
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
            assert!(
                out.status.success(),
                "{what} failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            Command::new(bin.join("initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["-U", "byteport", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .current_dir(dir.path()),
            "initdb",
        );
        let mut port = 0;
        for _ in 0..5 {
            port = free_port();
            let mut cmd = Command::new(bin.join("pg_ctl"));
            cmd.arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-l"])
                .arg(dir.path().join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                    sock.display()
                ))
                .arg("start")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if let Some((uid, gid)) = ids {
                cmd.uid(uid).gid(gid);
            }
            let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
            if ok {
                break;
            }
            port = 0;
        }
        assert!(
            port != 0,
            "pg_ctl start failed: {}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        PgServer {
            bin,
            data,
            ids,
            url: format!("postgres://byteport@127.0.0.1:{port}/postgres"),
            _dir: dir,
        }
    }

    /// Data directory (for debugging).
    #[allow(dead_code)]
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.status();
    }
}
