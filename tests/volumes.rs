//! An app's volume through `byteport up`, as a user with state lives it:
//! data written by the app survives a redeploy (the old VM is stopped
//! before the new one mounts the volume), a restart, a crash of its VM, a
//! deploy that fails (the old version comes back, with its data) and a
//! restart of `byteport up`; `apps destroy` deletes it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{git, wait_for, Daemon};

/// `?TEXT` appends a line to the volume; no query: prints what is there.
const NOTES_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nif [ -n \"$QUERY_STRING\" ]; then echo \"$QUERY_STRING\" >> /data/notes.txt; fi\necho \"owner=$(stat -c %u /data)\"\ncat /data/notes.txt 2>/dev/null\n";

fn manifest(health_path: &str) -> String {
    format!(
        "app vol\nfrom busybox\n\nbuild {{\n  copy public /srv\n}}\n\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET {health_path} every 1s timeout 1s\n}}\n\nvolume data /data 32M\n"
    )
}

fn push(d: &Daemon, work: &Path, ssh: &str, page: &str, health_path: &str) -> (bool, String) {
    let cgi = work.join("public/cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    std::fs::write(work.join("Byteport"), manifest(health_path)).unwrap();
    std::fs::write(work.join("public/index.html"), page).unwrap();
    let p = cgi.join("notes");
    std::fs::write(&p, NOTES_CGI).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    git(work, &["add", "-A"], None);
    git(work, &["commit", "-qm", page], None);
    let out = git(
        work,
        &["push", "-q", &d.remote("vol"), "HEAD:main"],
        Some(ssh),
    );
    (out.status.success(), testvm::git::text(&out))
}

fn notes(d: &Daemon) -> String {
    d.get_path("vol", "/cgi-bin/notes").unwrap_or_default()
}

#[test]
fn a_volume_keeps_the_apps_data_through_redeploys_crashes_and_restarts() {
    let mut d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"], None);

    let (ok, out) = push(&d, &work, &ssh, "version one", "/index.html");
    assert!(ok, "{out}\n{}", d.log());
    let first = d
        .get_path("vol", "/cgi-bin/notes?written-by-version-one")
        .unwrap();
    assert!(
        first.contains("owner=1000"),
        "the volume belongs to the app's user: {first}"
    );
    assert!(first.contains("written-by-version-one"), "{first}");
    let image = d.home.join("volumes/vol/data.ext4");
    assert!(image.is_file(), "no volume image at {}", image.display());

    // A redeploy: the old VM lets go of the volume, the new one mounts it;
    // meanwhile clients are told to come back (503 + Retry-After), never
    // that the app is down.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, port) = (watching.clone(), d.router_port);
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            let mut gap: Option<(Instant, Option<Duration>)> = None;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = match support::daemon::get_via(port, "vol", "/") {
                    Ok(page) => page,
                    Err(page) => page,
                };
                let head = answer
                    .split("\r\n\r\n")
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let status = head.split_whitespace().nth(1).unwrap_or("?").to_string();
                let tagged = if head.contains("retry-after: ") {
                    format!("{status}+retry-after")
                } else {
                    status
                };
                if seen.last() != Some(&tagged) {
                    match (tagged.as_str(), gap) {
                        ("503+retry-after", None) => gap = Some((Instant::now(), None)),
                        ("200", Some((since, None))) => gap = Some((since, Some(since.elapsed()))),
                        _ => {}
                    }
                    seen.push(tagged);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some((_, Some(took))) = gap {
                println!(
                    "the switch served 503 + Retry-After for {:.1} s",
                    took.as_secs_f64()
                );
            }
            seen
        })
    };
    let (ok, out) = push(&d, &work, &ssh, "version two", "/index.html");
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.iter().any(|s| s == "503+retry-after"),
        "no 503 with Retry-After during the switch: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s == "200" || s == "503+retry-after"),
        "clients saw something else than the app or 'deploying': {seen:?}"
    );
    assert!(ok, "{out}\n{}", d.log());
    assert!(
        out.contains("Stopping deploy #1 first: its volumes (data)"),
        "{out}"
    );
    assert!(d.get("vol").unwrap().contains("version two"));
    assert!(
        notes(&d).contains("written-by-version-one"),
        "{}",
        notes(&d)
    );
    d.get_path("vol", "/cgi-bin/notes?written-by-version-two")
        .unwrap();

    // A deploy that fails its health check: the old version comes back
    // with its data.
    let (ok, out) = push(&d, &work, &ssh, "version three", "/missing.html");
    assert!(!ok, "a failing deploy was accepted: {out}");
    wait_for(&d, "version two never came back", 240, || {
        d.get("vol").is_ok_and(|p| p.contains("version two"))
    });
    let n = notes(&d);
    assert!(
        n.contains("written-by-version-one") && n.contains("written-by-version-two"),
        "{n}"
    );

    // A restart and a crash of the VM.
    let out = d.ssh(&key, "restart vol");
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    assert!(notes(&d).contains("written-by-version-two"));
    let pids = d.recorded_vm_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: kill(2) on the VM process this test's daemon started.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    wait_for(&d, "the VM never came back after its crash", 240, || {
        d.recorded_vm_pids().first().is_some_and(|p| *p != pids[0])
            && notes(&d).contains("written-by-version-two")
    });

    // A restart of `byteport up`.
    d.restart();
    wait_for(
        &d,
        "the app never came back after up restarted",
        240,
        || notes(&d).contains("written-by-version-two"),
    );

    // Destroy deletes the data with the app.
    let out = d.cli(&["apps", "destroy", "vol", "--confirm", "vol"]);
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    assert!(!image.exists(), "the volume outlived its app");
}

fn ok_text(out: &std::process::Output) -> String {
    let text = testvm::git::text(out);
    assert!(out.status.success(), "{text}");
    text
}

fn refused(out: &std::process::Output, why: &str) {
    let text = testvm::git::text(out);
    assert!(!out.status.success(), "accepted: {text}");
    assert!(text.contains(why), "expected `{why}` in: {text}");
}

#[test]
fn volumes_are_listed_backed_up_and_restored_by_their_owner_only() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let alice = d.add_key(tmp.path(), "alice");
    let bob = d.add_key(tmp.path(), "bob");
    let mallory = d.add_key(tmp.path(), "mallory");
    let ssh = d.ssh_command(&alice);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"], None);
    let (ok, out) = push(&d, &work, &ssh, "version one", "/index.html");
    assert!(ok, "{out}\n{}", d.log());
    ok_text(&d.cli(&["apps", "share", "vol", "bob"]));
    d.get_path("vol", "/cgi-bin/notes?before-backup").unwrap();

    let listed = ok_text(&d.ssh(&alice, "volumes vol"));
    assert!(
        listed.contains("data") && listed.contains("/data") && listed.contains("32 MiB"),
        "{listed}"
    );

    // A backup over SSH stays on the host; the app is back afterwards.
    let made = ok_text(&d.ssh(&bob, "volumes backup vol data"));
    assert!(made.contains("Backed up volume `data`"), "{made}");
    assert!(
        notes(&d).contains("before-backup"),
        "the app did not come back"
    );
    let listed = ok_text(&d.ssh(&alice, "volumes vol"));
    let backup = listed
        .lines()
        .find_map(|l| l.strip_prefix("backup "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no backup listed: {listed}"))
        .to_string();
    assert!(backup.starts_with("data-"), "{backup}");

    d.get_path("vol", "/cgi-bin/notes?after-backup").unwrap();
    let file = tmp.path().join("after.ext4");
    let out = ok_text(&d.cli(&["volumes", "backup", "vol", "data", file.to_str().unwrap()]));
    assert!(out.contains(file.to_str().unwrap()), "{out}");
    assert!(file.is_file());

    // Who may do what, and hostile names.
    let restore = format!("volumes restore vol data {backup}");
    refused(&d.ssh(&bob, &restore), "only vol's owner (alice)");
    refused(&d.ssh(&mallory, &restore), "no access");
    refused(&d.ssh(&mallory, "volumes backup vol data"), "no access");
    refused(&d.ssh(&mallory, "volumes vol"), "no access");
    refused(
        &d.ssh(&alice, "volumes restore vol data ../../../etc/passwd"),
        "not a path",
    );
    refused(
        &d.ssh(
            &alice,
            &format!("volumes backup vol data {}", tmp.path().join("x").display()),
        ),
        "stays on the host",
    );
    refused(
        &d.ssh(&alice, "volumes restore vol data no-such-backup"),
        "no backup at",
    );
    refused(
        &d.ssh(&alice, "volumes backup vol ../data"),
        "not a volume name",
    );
    refused(&d.ssh(&alice, "volumes destroy vol data"), "--confirm data");
    refused(
        &d.ssh(&alice, "volumes destroy vol data --confirm data"),
        "in vol's live manifest",
    );
    let garbage = tmp.path().join("garbage.ext4");
    std::fs::write(&garbage, vec![7u8; 1 << 20]).unwrap();
    refused(
        &d.cli(&[
            "volumes",
            "restore",
            "vol",
            "data",
            garbage.to_str().unwrap(),
        ]),
        "holds no ext4 filesystem",
    );
    wait_for(
        &d,
        "the app did not come back after a refused restore",
        240,
        || notes(&d).contains("after-backup"),
    );

    // The owner's restore brings the backed-up data back.
    let out = ok_text(&d.ssh(&alice, &restore));
    assert!(out.contains("Restored volume `data`"), "{out}");
    let n = notes(&d);
    assert!(
        n.contains("before-backup") && !n.contains("after-backup"),
        "{n}"
    );
    // And the operator's file holds the later state.
    ok_text(&d.cli(&["volumes", "restore", "vol", "data", file.to_str().unwrap()]));
    assert!(notes(&d).contains("after-backup"), "{}", notes(&d));
}
