//! The release phase through `byteport up` (Heroku's release phase): the
//! manifest's `release { run … }` runs in a one-off VM of the new version,
//! after the build and before the switch, with the app's config, secrets
//! and volumes; its output reaches the pusher; a failure refuses the push
//! and the old version serves on (for an app without volumes its VM is
//! never touched; with volumes it is booted again, with its data).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::daemon::{git, wait_for, Daemon};

/// Prints the volume's schema log (what every release appended).
const SCHEMA_CGI: &str =
    "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ncat /data/schema 2>/dev/null\n";

fn manifest(app: &str, with_volume: bool) -> String {
    let volume = if with_volume {
        "volume data /data 32M\n"
    } else {
        ""
    };
    let target = if with_volume {
        "/data/schema"
    } else {
        "/tmp/x"
    };
    format!(
        "app {app}\nfrom busybox\n\nbuild {{\n  copy public /srv\n}}\n\n\
         release {{\n  run echo \"migrating to $(cat /srv/version) with $GREETING as $(id -u)\"; cat /srv/version >> {target}; exit $(cat /srv/exit)\n}}\n\n\
         web {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n}}\n\n{volume}"
    )
}

/// Commits and pushes `version`, whose release exits `exit`.
fn push(
    d: &Daemon,
    work: &Path,
    ssh: &str,
    app: &str,
    version: &str,
    exit: u8,
    with_volume: bool,
) -> (bool, String) {
    let public = work.join("public");
    std::fs::create_dir_all(public.join("cgi-bin")).unwrap();
    std::fs::write(work.join("Byteport"), manifest(app, with_volume)).unwrap();
    std::fs::write(public.join("index.html"), version).unwrap();
    std::fs::write(public.join("version"), format!("{version}\n")).unwrap();
    std::fs::write(public.join("exit"), format!("{exit}\n")).unwrap();
    let cgi = public.join("cgi-bin/schema");
    std::fs::write(&cgi, SCHEMA_CGI).unwrap();
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(work, &["add", "-A"], None);
    git(work, &["commit", "-qm", version], None);
    let out = git(
        work,
        &["push", "-q", &d.remote(app), "HEAD:main"],
        Some(ssh),
    );
    (out.status.success(), testvm::git::text(&out))
}

/// The body of a 200 answer to GET `path` on `app`.
fn page(d: &Daemon, app: &str, path: &str) -> String {
    let response = d
        .get_path(app, path)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or(("", &response));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    // A CGI answer comes chunked: SIZE\r\nDATA\r\n ... 0\r\n\r\n.
    let (mut rest, mut out) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn new_repo(root: &Path, name: &str) -> std::path::PathBuf {
    let work = root.join(name);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"], None);
    work
}

#[test]
fn a_release_command_runs_before_the_switch_and_a_failing_one_keeps_the_old_version() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);

    // Without volumes: the serving VM is never touched by a release.
    let work = new_repo(tmp.path(), "plain");
    let created = d.cli(&["apps", "create", "plain", "--owner", "alice"]);
    assert!(created.status.success(), "{}", testvm::git::text(&created));
    let set = d.cli(&["config", "set", "plain", "GREETING=hello"]);
    assert!(set.status.success(), "{}", testvm::git::text(&set));
    let (ok, out) = push(&d, &work, &ssh, "plain", "p1", 0, false);
    assert!(ok, "{out}\n{}", d.log());
    assert!(out.contains("Running release command"), "{out}");
    assert!(
        out.contains("migrating to p1 with hello as 1000"),
        "the release output reaches the pusher; it runs with the app's config, as its user: {out}"
    );
    assert!(
        out.find("migrating to p1") < out.find("Live at"),
        "release runs before the switch: {out}"
    );
    assert_eq!(page(&d, "plain", "/"), "p1");
    let serving = d.recorded_vm_pids();
    assert_eq!(serving.len(), 1, "one-off VMs are gone: {serving:?}");

    let (ok, out) = push(&d, &work, &ssh, "plain", "p2", 0, false);
    assert!(ok, "{out}\n{}", d.log());
    assert!(out.contains("migrating to p2 with hello"), "{out}");
    assert_eq!(page(&d, "plain", "/"), "p2");
    wait_for(&d, "p1's VM was never retired", 60, || {
        d.recorded_vm_pids().len() == 1
    });
    let serving = d.recorded_vm_pids();

    let (ok, out) = push(&d, &work, &ssh, "plain", "p3", 3, false);
    assert!(!ok, "a failing release was accepted: {out}");
    assert!(out.contains("migrating to p3"), "{out}");
    assert!(
        out.contains("release failed") && out.contains("exited with status 3"),
        "{out}"
    );
    assert!(out.contains("the previous version keeps serving"), "{out}");
    assert_eq!(page(&d, "plain", "/"), "p2", "the old version serves on");
    assert_eq!(
        d.recorded_vm_pids(),
        serving,
        "the serving VM was never stopped"
    );

    // With a volume: the old VM lets go of it for the release, and comes
    // back with its data when the release fails.
    let work = new_repo(tmp.path(), "stateful");
    let (ok, out) = push(&d, &work, &ssh, "stateful", "s1", 0, true);
    assert!(ok, "{out}\n{}", d.log());
    assert_eq!(page(&d, "stateful", "/cgi-bin/schema"), "s1\n");

    let (ok, out) = push(&d, &work, &ssh, "stateful", "s2", 0, true);
    assert!(ok, "{out}\n{}", d.log());
    assert!(
        out.find("Stopping deploy #1 first") < out.find("Running release command"),
        "the volume is let go before the release mounts it: {out}"
    );
    assert_eq!(
        page(&d, "stateful", "/cgi-bin/schema"),
        "s1\ns2\n",
        "the release wrote to the volume the new version reads"
    );

    let (ok, out) = push(&d, &work, &ssh, "stateful", "s3", 7, true);
    assert!(!ok, "a failing release was accepted: {out}");
    assert!(out.contains("exited with status 7"), "{out}");
    wait_for(
        &d,
        "s2 never came back after the failed release",
        240,
        || d.get("stateful").is_ok_and(|p| p.ends_with("\r\n\r\ns2")),
    );
    assert_eq!(
        page(&d, "stateful", "/cgi-bin/schema"),
        "s1\ns2\ns3\n",
        "the old version is back with the volume as the release left it"
    );
}
