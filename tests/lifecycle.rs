//! An app's life after its first push, as a Heroku or Dokku user lives it,
//! against `byteport up` with the stock `git` and OpenSSH clients and real
//! QEMU VMs: rollback (CLI and SSH), config + restart, `logs -f`, a crashed
//! process inside the guest and a killed VM both coming back on their own,
//! stop/start kept across a restart of `byteport up`.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::{git, Daemon};

const MANIFEST: &str = "app life\nfrom busybox\n\nbuild {\n  copy public /srv\n}\n\nweb {\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET /index.html every 1s timeout 1s\n}\n";

/// A CGI script showing the environment the app was started with.
const ENV_CGI: &str =
    "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"GREETING=$GREETING\"\n";
/// A CGI script that kills the app's web server (a crash inside the guest):
/// the script's parent is httpd's per-request child, whose parent is the
/// server. Shell builtins only: the busybox base may lack pkill.
const CRASH_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho crashing\nread -r _ _ _ server _ < /proc/$PPID/stat\nkill -9 \"$server\"\n";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_app(dir: &Path, page: &str) {
    let cgi = dir.join("public/cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    std::fs::write(dir.join("Byteport"), MANIFEST).unwrap();
    std::fs::write(dir.join("public/index.html"), page).unwrap();
    for (name, body) in [("env", ENV_CGI), ("crash", CRASH_CGI)] {
        let p = cgi.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Pushes `page` as a new commit; panics with git's output on failure.
fn push(d: &Daemon, work: &Path, ssh: &str, page: &str) {
    write_app(work, page);
    git(work, &["add", "-A"], None);
    git(work, &["commit", "-qm", page], None);
    let out = git(work, &["push", "-q", "byteport", "main"], Some(ssh));
    assert!(
        out.status.success(),
        "push {page}: {}\n--- daemon ---\n{}",
        text(&out),
        d.log()
    );
}

/// A daemon with user alice, her key, and a work tree whose remote is `life`.
fn setup() -> (Daemon, tempfile::TempDir, std::path::PathBuf, String) {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(git(&work, &["init", "-q"], None).status.success());
    git(
        &work,
        &["remote", "add", "byteport", &d.remote("life")],
        None,
    );
    (d, tmp, key, ssh)
}

/// Polls `f` until it returns `Some`, or panics with `what` and the daemon's log.
fn wait_for<T>(d: &Daemon, what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}\n--- app logs ---\n{}\n--- daemon ---\n{}",
            text(&d.cli(&["logs", "life", "-n", "60"])),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The host pid of the app's VM, from `byteport ps`.
fn vm_pid(d: &Daemon) -> Option<u32> {
    let out = d.cli(&["ps", "life"]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = t.split_whitespace();
    while let Some(w) = words.next() {
        if w == "pid" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[test]
fn redeploy_under_load_rollback_config_and_restart() {
    let (d, tmp, key, ssh) = setup();
    let work = tmp.path().join("work");
    push(&d, &work, &ssh, "version one");

    // A `git push` while a client keeps requesting: the new version comes
    // up beside the old one, the router switches, the old one drains — no
    // request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let router_port = d.router_port;
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match support::daemon::get_via(router_port, "life", "/index.html") {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        0
                    }
                };
            }
        })
    };
    push(&d, &work, &ssh, "version two");
    wait_for(&d, "the new version through the router", 30, || {
        d.get("life").ok().filter(|p| p.contains("version two"))
    });
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the redeploy: {:?}",
        failed.len(),
        failed.len() + ok.load(Ordering::SeqCst),
        &failed[..failed.len().min(3)]
    );
    assert!(ok.load(Ordering::SeqCst) > 10, "the client loop ran");

    // `byteport rollback APP` (CLI, through the control socket) goes back
    // to the previous good deploy as a new deploy, streaming its progress.
    let out = d.cli(&["rollback", "life"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}\n--- daemon ---\n{}", d.log());
    assert!(
        t.contains("-----> Rolling life back to deploy #1") && t.contains("as deploy #3"),
        "{t}"
    );
    assert!(t.contains("-----> Live at http://life.localhost:"), "{t}");
    assert!(d.get("life").unwrap().contains("version one"));
    let out = d.ssh(&key, "deploys life");
    let t = text(&out);
    assert!(t.contains("#3    live       rollback to #1"), "{t}");
    assert!(t.contains("#2    superseded"), "{t}");

    // Over SSH, to an explicit deploy.
    let out = d.ssh(&key, "rollback life v2");
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.get("life").unwrap().contains("version two"));

    // Bad targets change nothing.
    for (cmd, why) in [
        ("rollback life 4", "already live"),
        ("rollback life 99", "no deploy #99"),
        ("rollback life x", "not a deploy number"),
    ] {
        let out = d.ssh(&key, cmd);
        assert!(!out.status.success(), "{cmd}");
        assert!(text(&out).contains(why), "{cmd}: {}", text(&out));
    }
    assert!(d.get("life").unwrap().contains("version two"));

    // Config vars reach the app on restart, which keeps serving meanwhile.
    let out = d.ssh(
        &key,
        "config life set --no-restart 'GREETING=hello from config'",
    );
    assert!(out.status.success(), "{}", text(&out));
    let before = d.get_path("life", "/cgi-bin/env").unwrap();
    assert!(
        before.contains("GREETING=\n") || before.contains("GREETING=\r\n"),
        "{before}"
    );
    let pid_before = vm_pid(&d).expect("a VM runs");
    let out = d.ssh(&key, "restart life");
    let t = text(&out);
    assert!(out.status.success(), "{t}\n{}", d.log());
    assert!(t.contains("-----> Restarting life (deploy #4"), "{t}");
    assert!(t.contains("-----> life restarted in"), "{t}");
    let after = d.get_path("life", "/cgi-bin/env").unwrap();
    assert!(after.contains("GREETING=hello from config"), "{after}");
    assert_ne!(vm_pid(&d), Some(pid_before), "a fresh VM serves");
    // The old VM is drained and powered off.
    wait_for(&d, "the old VM to stop", 60, || {
        (!Path::new(&format!("/proc/{pid_before}")).exists()).then_some(())
    });
}

#[test]
fn crashes_come_back_and_stop_start_survive_a_restart_of_up() {
    let (mut d, tmp, key, ssh) = setup();
    let work = tmp.path().join("work");
    push(&d, &work, &ssh, "still here");

    // `logs -f` over SSH streams new lines (the router's request lines).
    let mut args: Vec<String> = d
        .ssh_command(&key)
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    args.extend(["git@127.0.0.1".into(), "logs life -f -n 0".into()]);
    let mut follower = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let seen = wait_for(&d, "a router line in logs -f", 30, || {
        d.get_path("life", "/index.html?followed").ok();
        rx.try_iter()
            .find(|l| l.contains("GET /index.html?followed 200"))
    });
    assert!(seen.contains("router"), "{seen}");
    let _ = follower.kill();
    let _ = follower.wait();

    // A crash inside the guest: the guest init restarts the web server;
    // the VM stays the same.
    let pid = vm_pid(&d).expect("a VM runs");
    let _ = d.get_path("life", "/cgi-bin/crash");
    wait_for(&d, "the app to answer after its crash", 60, || {
        let logs = text(&d.cli(&["logs", "life", "-n", "200"]));
        (logs.contains("guest: exited web") && d.get("life").is_ok()).then_some(())
    });
    let logs = text(&d.cli(&["logs", "life", "-n", "200"]));
    assert!(logs.contains("guest: restart web"), "{logs}");
    assert_eq!(vm_pid(&d), Some(pid), "no new VM for a process crash");

    // The VM itself dies: BytePort notices and boots the deploy again.
    // SAFETY: killing the VM's host process (QEMU), a child of the daemon.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let new_pid = wait_for(&d, "a new VM after the crash", 120, || {
        vm_pid(&d).filter(|p| *p != pid && d.get("life").is_ok())
    });
    assert_ne!(new_pid, pid);
    let logs = text(&d.cli(&["logs", "life", "-n", "200"]));
    assert!(logs.contains("ended unexpectedly"), "{logs}");
    assert!(logs.contains("restarted after a crash"), "{logs}");

    // Stop: 502 saying so; it stays stopped when `byteport up` restarts.
    let out = d.ssh(&key, "stop life");
    assert!(out.status.success(), "{}", text(&out));
    let page = d.get("life").unwrap_err();
    assert!(
        page.starts_with("HTTP/1.1 502") && page.contains("stopped by its owner"),
        "{page}"
    );
    d.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.get("life").unwrap_err().contains("stopped by its owner"));
    assert!(text(&d.cli(&["ps"])).contains("no VMs running"));
    assert!(text(&d.ssh(&key, "apps")).contains("#1 stopped"));

    let out = d.cli(&["start", "life"]);
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert!(d.get("life").unwrap().contains("still here"));

    // Destroy through the CLI: the running daemon powers the VM off and
    // unroutes the app; the repository goes too.
    let pid = vm_pid(&d).expect("a VM runs");
    let out = d.cli(&["apps", "destroy", "life", "--confirm", "life"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.get("life").unwrap_err().starts_with("HTTP/1.1 404"));
    assert!(!d.home.join("repos/life.git").exists());
    wait_for(&d, "the destroyed app's VM to stop", 60, || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
}

#[test]
fn the_cli_says_plainly_when_byteport_up_is_not_running() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(["restart", "life"])
        .env("BYTEPORT_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("`byteport up` is not running for"), "{t}");
    assert!(t.contains("start it with `byteport up`"), "{t}");
}
