//! The managed cluster with Debian's real PostgreSQL server: isolation
//! between apps (each attack performed and refused), backups and restores,
//! crash recovery, dropping.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use database::{Cluster, Credentials, DbError};

/// A home the server's user can reach (a tempdir is 0700).
fn home() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = d.path().join("pg");
    (d, home)
}

fn open(home: &Path) -> Cluster {
    Cluster::open(home).unwrap_or_else(|e| panic!("opening the cluster: {e}"))
}

fn psql_bin() -> PathBuf {
    database::server::find_bin_dir(Path::new("/usr/lib/postgresql"))
        .unwrap()
        .join("psql")
}

/// Runs `sql` as `user` with `password` on `db`, over the cluster's socket,
/// as a client would through the door. `Err` holds the server's refusal.
fn client(c: &Cluster, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new(psql_bin())
        .env_clear()
        .env("PGPASSWORD", password)
        .arg("--host")
        .arg(c.socket().parent().unwrap())
        .args(["--port", "5432", "--username", user, "--dbname", db])
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn app_sql(c: &Cluster, creds: &Credentials, sql: &str) -> Result<String, String> {
    client(c, &creds.role, &creds.password, &creds.database, sql)
}

#[test]
fn apps_reach_their_own_database_only() {
    let (_d, home) = home();
    let c = open(&home);
    let a = c.provision("shop-a", None).unwrap();
    let b = c.provision("shop-b", None).unwrap();
    assert_eq!(a.role, "app_shop_a");
    assert_eq!(a.database, "app_shop_a");
    assert_ne!(a.password, b.password);
    assert!(c.exists("shop-a").unwrap() && c.exists("shop-b").unwrap());
    assert!(!c.exists("shop-c").unwrap());

    app_sql(
        &c,
        &a,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('a-row')",
    )
    .unwrap();
    app_sql(
        &c,
        &b,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('b-row')",
    )
    .unwrap();
    assert_eq!(app_sql(&c, &a, "SELECT v FROM t").unwrap(), "a-row");

    // A's login on B's database, on the maintenance databases: refused.
    for db in [&b.database, "postgres", "template1"] {
        let e = client(&c, &a.role, &a.password, db, "SELECT 1").unwrap_err();
        assert!(e.contains("no pg_hba.conf entry"), "{db}: {e}");
    }
    // B's role with A's password, and A's role with a wrong password.
    let e = client(&c, &b.role, &a.password, &b.database, "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    let e = client(&c, &a.role, "wrong", &a.database, "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    // The superuser, from the daemon's uid (as the door connects): peer
    // authentication refuses it; so does any password.
    for db in ["postgres", &a.database] {
        let e = client(&c, "byteport", &a.password, db, "SELECT 1").unwrap_err();
        assert!(
            e.contains("authentication failed") || e.contains("no pg_hba.conf entry"),
            "{e}"
        );
    }
    // Inside its own database the app has no superpowers.
    let e = app_sql(&c, &a, "COPY t FROM PROGRAM 'id'").unwrap_err();
    assert!(
        e.contains("permission denied") || e.contains("must be superuser"),
        "{e}"
    );
    let e = app_sql(&c, &a, "CREATE ROLE sneaky").unwrap_err();
    assert!(e.contains("permission denied"), "{e}");

    // Provisioning again with the stored password changes nothing...
    let again = c.provision("shop-a", Some(&a.password)).unwrap();
    assert_eq!(again, a);
    assert_eq!(app_sql(&c, &a, "SELECT v FROM t").unwrap(), "a-row");
    // ...without one, it rotates: the old password stops working.
    let rotated = c.provision("shop-a", None).unwrap();
    assert_ne!(rotated.password, a.password);
    assert!(app_sql(&c, &a, "SELECT 1").is_err());
    assert_eq!(app_sql(&c, &rotated, "SELECT v FROM t").unwrap(), "a-row");

    // `db psql`: the app's role, on its database, on the socket only.
    let out = c
        .psql_command("shop-a")
        .unwrap()
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_user, current_database(); SHOW listen_addresses",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"app_shop_a|app_shop_a"), "{text:?}");
    assert_eq!(
        lines.get(1),
        Some(&""),
        "listen_addresses is not empty: {text:?}"
    );
}

#[test]
fn hostile_names_and_passwords_are_refused_before_any_sql() {
    let (_d, home) = home();
    let c = open(&home);
    for bad in [
        "",
        "Shop",
        "a\"; DROP DATABASE postgres; --",
        "a'b",
        "../x",
        "-x",
    ] {
        match c.provision(bad, None) {
            Err(DbError::BadAppName { why, .. }) => assert!(!why.is_empty()),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(matches!(c.exists(bad), Err(DbError::BadAppName { .. })));
    }
    assert!(matches!(
        c.provision("ok", Some("")),
        Err(DbError::BadPassword(_))
    ));
    // A password with quotes is stored as given (quoted), not executed.
    let creds = c
        .provision("ok", Some("it's \"quoted\"; DROP ROLE x"))
        .unwrap();
    assert_eq!(app_sql(&c, &creds, "SELECT 42").unwrap(), "42");
    assert!(matches!(
        c.backup("nope", &home.join("x")),
        Err(DbError::NoDatabase(_))
    ));
}

#[test]
fn backups_round_trip_and_bad_archives_change_nothing() {
    let (d, home) = home();
    let c = open(&home);
    let a = c.provision("notes", None).unwrap();
    app_sql(&c, &a, "CREATE TABLE n (id int primary key, body text)").unwrap();
    app_sql(
        &c,
        &a,
        "INSERT INTO n SELECT g, 'note ' || g FROM generate_series(1, 500) g",
    )
    .unwrap();
    let file = d.path().join("notes.dump");
    c.backup("notes", &file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"PGDMP"), "not a custom-format archive");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".byteport-backup-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // Changes after the backup are undone by the restore.
    app_sql(
        &c,
        &a,
        "DELETE FROM n WHERE id > 10; CREATE TABLE later (x int)",
    )
    .unwrap();
    c.restore("notes", &file).unwrap();
    assert_eq!(app_sql(&c, &a, "SELECT count(*) FROM n").unwrap(), "500");
    assert_eq!(
        app_sql(&c, &a, "SELECT body FROM n WHERE id = 500").unwrap(),
        "note 500"
    );
    // The restored table is the app's (no-owner, as the app's role).
    assert_eq!(
        app_sql(
            &c,
            &a,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'n'"
        )
        .unwrap(),
        "app_notes"
    );

    // Garbage: refused up front with a message, the data untouched.
    app_sql(&c, &a, "INSERT INTO n VALUES (1000, 'after the backup')").unwrap();
    let garbage = d.path().join("garbage");
    std::fs::write(&garbage, b"this is not a dump\n").unwrap();
    let e = c.restore("notes", &garbage).unwrap_err();
    assert!(matches!(e, DbError::NotAnArchive { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    // The right magic, a damaged header.
    let bad_header = d.path().join("bad-header");
    std::fs::write(&bad_header, b"PGDMP\xff\xff\xff garbage").unwrap();
    let e = c.restore("notes", &bad_header).unwrap_err();
    assert!(matches!(e, DbError::NotAnArchive { .. }), "{e:?}");
    // Truncated in the middle of the data: fails inside the transaction.
    let truncated = d.path().join("truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let e = c.restore("notes", &truncated).unwrap_err();
    // Its table of contents is intact, so it gets as far as the restore
    // transaction, which rolls back.
    assert!(matches!(e, DbError::Tool { .. }), "{e:?}");
    assert!(e.to_string().contains("nothing was changed"), "{e}");
    assert_eq!(
        app_sql(&c, &a, "SELECT body FROM n WHERE id = 1000").unwrap(),
        "after the backup",
        "a failed restore lost a row"
    );
    assert_eq!(app_sql(&c, &a, "SELECT count(*) FROM n").unwrap(), "501");
    // A missing file.
    let e = c.restore("notes", &d.path().join("missing")).unwrap_err();
    assert!(matches!(e, DbError::NotAnArchive { .. }), "{e:?}");

    // A backup into a directory that does not exist leaves nothing.
    let e = c
        .backup("notes", &d.path().join("no/such/dir/x.dump"))
        .unwrap_err();
    assert!(matches!(e, DbError::Io { .. }), "{e:?}");
}

#[test]
fn the_cluster_recovers_from_a_killed_server_and_a_killed_daemon() {
    let (_d, home) = home();
    let t = std::time::Instant::now();
    let c = open(&home);
    eprintln!("FIGURE first open (initdb + start): {:?}", t.elapsed());
    let a = c.provision("durable", None).unwrap();
    app_sql(
        &c,
        &a,
        "CREATE TABLE d (v text); INSERT INTO d VALUES ('committed')",
    )
    .unwrap();
    // One process per home.
    assert!(matches!(Cluster::open(&home), Err(DbError::InUse(_))));

    // kill -9 of the postmaster.
    let pid = c.pid().unwrap();
    // SAFETY: killing the server this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    drop(c);
    assert!(
        home.join("data/postmaster.pid").exists(),
        "no stale pid file to recover from"
    );
    let t = std::time::Instant::now();
    let c = open(&home);
    eprintln!(
        "FIGURE open after kill -9 (crash recovery): {:?}",
        t.elapsed()
    );
    assert_eq!(app_sql(&c, &a, "SELECT v FROM d").unwrap(), "committed");

    // A crash while the daemon runs: its supervisor restarts the server.
    assert!(!c.ensure_running().unwrap(), "restarted a running server");
    // SAFETY: as above.
    let pid = c.pid().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    while !dead(pid) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        c.ensure_running().unwrap(),
        "did not notice the dead server"
    );
    assert_eq!(app_sql(&c, &a, "SELECT v FROM d").unwrap(), "committed");

    // The daemon dies (the value is leaked: no stop); the server runs on.
    let orphan = c.pid().unwrap();
    // Release the lock as a dying process would, keeping the server alive.
    std::mem::forget(c);
    // The lock is a flock on a leaked descriptor: drop it by hand, as the
    // kernel does when a process dies.
    release_lock(&home);
    let t = std::time::Instant::now();
    let c = open(&home);
    eprintln!(
        "FIGURE open over an orphaned server (take-over): {:?}",
        t.elapsed()
    );
    assert_ne!(c.pid().unwrap(), orphan);
    assert!(dead(orphan), "the orphaned server still runs");
    assert_eq!(app_sql(&c, &a, "SELECT v FROM d").unwrap(), "committed");
    c.stop();
    assert!(c.pid().is_none());
}

/// Whether `pid` is gone or a zombie (our children linger as zombies until
/// reaped).
fn dead(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    state.is_empty() || state.starts_with('Z')
}

/// Closes every descriptor of this process that points at `home/cluster.lock`.
fn release_lock(home: &Path) {
    let lock = home.join("cluster.lock").canonicalize().unwrap();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|p| p == lock) {
            let fd: i32 = e.file_name().to_string_lossy().parse().unwrap();
            // SAFETY: the descriptor belongs to a leaked Cluster nobody uses.
            unsafe { libc::close(fd) };
        }
    }
}

#[test]
fn dropping_removes_the_database_and_the_role() {
    let (_d, home) = home();
    let c = open(&home);
    let a = c.provision("gone", None).unwrap();
    app_sql(&c, &a, "CREATE TABLE x (v int)").unwrap();
    assert!(c.drop_database("gone").unwrap());
    assert!(!c.exists("gone").unwrap());
    let e = app_sql(&c, &a, "SELECT 1").unwrap_err();
    assert!(
        e.contains("password authentication failed") || e.contains("does not exist"),
        "{e}"
    );
    // The role is gone too: provisioning anew makes a fresh, empty database.
    assert!(!c.drop_database("gone").unwrap());
    let fresh = c.provision("gone", None).unwrap();
    let e = app_sql(&c, &fresh, "SELECT * FROM x").unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
}

/// Not root (a developer's machine): server, daemon and door share one
/// uid, so the superuser logs in with the password in
/// `home/superuser.password` instead of by peer — and the apps still
/// cannot. As root, this test runs its helper as `nobody` to get there.
#[test]
fn as_an_ordinary_user_the_superuser_needs_its_password() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        ordinary_user_checks();
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_as_nobody", "--nocapture"])
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the helper failed:\n{text}\n{err}");
    assert!(
        text.contains("ORDINARY-USER-CHECKS-PASSED"),
        "{text}\n{err}"
    );
}

#[test]
#[ignore = "run as nobody by as_an_ordinary_user_the_superuser_needs_its_password"]
fn helper_as_nobody() {
    ordinary_user_checks();
}

fn ordinary_user_checks() {
    let (_d, home) = home();
    let c = open(&home);
    let pw = home.join("superuser.password");
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let superuser_password = std::fs::read_to_string(&pw).unwrap();
    let a = c.provision("dev-app", None).unwrap();
    app_sql(&c, &a, "CREATE TABLE t (v int); INSERT INTO t VALUES (7)").unwrap();
    // Same uid as the server, yet no peer login for the superuser...
    let e = client(&c, "byteport", &a.password, "postgres", "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    // ...only with its own password.
    assert_eq!(
        client(
            &c,
            "byteport",
            superuser_password.trim(),
            "postgres",
            "SELECT current_user"
        )
        .unwrap(),
        "byteport"
    );
    let file = home.join("dev.dump");
    c.backup("dev-app", &file).unwrap();
    app_sql(&c, &a, "DELETE FROM t").unwrap();
    c.restore("dev-app", &file).unwrap();
    assert_eq!(app_sql(&c, &a, "SELECT v FROM t").unwrap(), "7");
    println!("ORDINARY-USER-CHECKS-PASSED");
}
