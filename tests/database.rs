//! A managed PostgreSQL database through `byteport up`, with
//! `examples/guestbook-postgres`: `database postgres` gives the app a
//! database of its own (its release command makes the table), a row
//! written before a redeploy is read after it, the app's VM reaches its own
//! database and nothing else (not another app's, not the superuser, not the
//! host), backups restore, and `apps destroy` keeps a last backup before
//! it drops the database.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{git, Daemon};

fn copy_example(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guestbook-postgres");
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn deploy(d: &Daemon, ssh: &str, work: &Path, app: &str) -> String {
    git(work, &["add", "-A"], None);
    git(
        work,
        &["commit", "-q", "--allow-empty", "-m", "deploy"],
        None,
    );
    let out = git(
        work,
        &["push", "-q", &d.remote(app), "HEAD:main"],
        Some(ssh),
    );
    let text = testvm::git::text(&out);
    assert!(out.status.success(), "{text}\n{}", d.log());
    text
}

fn entries(d: &Daemon, app: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, body) = d.request(app, "GET", "/", None, "");
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{app} never answered\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn sign(d: &Daemon, app: &str, text: &str) {
    let (status, head, body) = d.request(app, "POST", "/sign", None, &format!("text={text}"));
    assert_eq!(status, 303, "signing {app}: {head}\n{body}\n{}", d.log());
}

/// From inside `app`'s VM: tries each connection and prints one line each.
const PROBE: &str = r#"
import os, urllib.parse, psycopg2
u = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
own = dict(host=u.hostname, port=u.port, user=u.username, password=u.password)
def attempt(label, **kw):
    try:
        psycopg2.connect(connect_timeout=5, **kw).close()
        print(label, "CONNECTED")
    except Exception as e:
        print(label, "REFUSED", str(e).strip().splitlines()[0])
attempt("own", dbname=u.path[1:], **own)
attempt("other", **{**own, "dbname": "app_other"})
attempt("maintenance", **{**own, "dbname": "postgres"})
attempt("superuser", **{**own, "dbname": "postgres", "user": "byteport", "password": ""})
attempt("host", **{**own, "dbname": u.path[1:], "host": "10.0.2.2", "port": 5432})
"#;

#[test]
fn an_app_keeps_rows_in_its_own_database_and_reaches_no_other() {
    let d = Daemon::start();
    // The server runs as the `postgres` user: let it reach the cluster
    // inside the test's data directory (a private temporary directory).
    std::fs::set_permissions(
        d.home.parent().unwrap(),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);

    let book = tmp.path().join("guestbook");
    copy_example(&book);
    git(&book, &["init", "-q", "-b", "main"], None);
    let out = deploy(&d, &ssh, &book, "guestbook");
    assert!(
        out.contains("schema ready: 0 entries"),
        "the release made the table: {out}"
    );
    sign(&d, "guestbook", "written+before+a+redeploy");

    let out = deploy(&d, &ssh, &book, "guestbook");
    assert!(out.contains("schema ready: 1 entries"), "{out}");
    assert!(entries(&d, "guestbook").contains("written before a redeploy"));

    let other = tmp.path().join("other");
    copy_example(&other);
    git(&other, &["init", "-q", "-b", "main"], None);
    deploy(&d, &ssh, &other, "other");
    sign(&d, "other", "only+for+other");
    assert!(!entries(&d, "guestbook").contains("only for other"));

    // The attacks, from inside the guestbook's VM.
    let out = d.cli(&["run", "guestbook", "--", "python3", "-c", PROBE]);
    let probe = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    let line = |label: &str| {
        probe
            .lines()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no {label} line in {probe}"))
            .to_string()
    };
    println!("from inside the guestbook's VM:\n{probe}");
    assert!(line("own").ends_with("CONNECTED"), "{probe}");
    for label in ["other", "maintenance"] {
        assert!(line(label).contains("pg_hba.conf"), "{label}: {probe}");
    }
    for label in ["other", "maintenance", "superuser", "host"] {
        assert!(line(label).contains("REFUSED"), "{label}: {probe}");
    }

    // Backups: over SSH by name; a restore brings the backed-up rows back.
    let out = d.ssh(&key, "db backup guestbook");
    let text = testvm::git::text(&out);
    assert!(out.status.success(), "{text}");
    let backup = text
        .split_whitespace()
        .find(|w| w.starts_with("database-"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    sign(&d, "guestbook", "after+the+backup");
    let out = d.ssh(&key, &format!("db restore guestbook {backup}"));
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    let now = entries(&d, "guestbook");
    assert!(
        now.contains("written before a redeploy") && !now.contains("after the backup"),
        "{now}"
    );
    let out = d.ssh(&key, "db restore guestbook ../../etc/passwd");
    assert!(!out.status.success());
    let garbage = tmp.path().join("garbage.dump");
    std::fs::write(&garbage, b"PGDMP but not really").unwrap();
    let out = d.cli(&["db", "restore", "guestbook", garbage.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", testvm::git::text(&out));
    assert!(entries(&d, "guestbook").contains("written before a redeploy"));

    // `db psql` on the host, as the app's role (stdin here, not a terminal).
    let mut psql = std::process::Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(["db", "psql", "guestbook"])
        .env("BYTEPORT_HOME", &d.home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = psql.stdin.take().unwrap();
        stdin
            .write_all(b"SELECT current_user;\nSELECT text FROM entries ORDER BY id;\n")
            .unwrap();
    }
    let out = psql.wait_with_output().unwrap();
    let text = testvm::git::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("app_guestbook") && text.contains("written before a redeploy"),
        "{text}"
    );

    // Removing `database` from the manifest detaches it: no door, no URL,
    // and the data is there when the line comes back.
    let manifest = std::fs::read_to_string(book.join("Byteport")).unwrap();
    let detached = manifest
        .replace("database postgres\n", "")
        .replace("  run python3 migrate.py", "  run true")
        .replace("  run python3 app.py", "  run python3 -m http.server 8080")
        .replace("health GET /health", "health GET /");
    std::fs::write(book.join("Byteport"), &detached).unwrap();
    deploy(&d, &ssh, &book, "guestbook");
    let out = d.cli(&[
        "run",
        "guestbook",
        "--",
        "sh",
        "-c",
        "echo url=${DATABASE_URL:-none}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "url=none",
        "{}",
        testvm::git::text(&out)
    );
    std::fs::write(book.join("Byteport"), &manifest).unwrap();
    deploy(&d, &ssh, &book, "guestbook");
    assert!(
        entries(&d, "guestbook").contains("written before a redeploy"),
        "detaching lost the data"
    );

    // Destroy keeps a last backup, then drops the database.
    let out = d.cli(&["apps", "destroy", "other", "--confirm", "other"]);
    let text = testvm::git::text(&out);
    assert!(out.status.success(), "{text}");
    let last = text
        .split_whitespace()
        .find(|w| w.contains("/backups/other/database-"))
        .unwrap_or_else(|| panic!("no last backup named: {text}"));
    assert!(Path::new(last).is_file(), "{last}");
    let out = d.cli(&["run", "guestbook", "--", "python3", "-c", PROBE]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("other REFUSED"));
}
