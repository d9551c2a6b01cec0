//! Several VMs of one app through `byteport up`: `web { instances 2 }`
//! boots two, the router splits requests across them, killing one loses no
//! request and the platform boots a replacement, `byteport scale` grows and
//! shrinks the set without failing a request, and a redeploy replaces all of
//! them with none failing either.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::daemon::{get_via, git, wait_for, Daemon};

/// Answers with this VM's boot id (one per VM) and the version.
const WHO_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"$(cat /proc/sys/kernel/random/boot_id) $(cat /srv/version)\"\n";

fn push(
    d: &Daemon,
    work: &Path,
    ssh: &str,
    app: &str,
    version: &str,
    extra: &str,
) -> (bool, String) {
    let public = work.join("public");
    std::fs::create_dir_all(public.join("cgi-bin")).unwrap();
    std::fs::write(
        work.join("Byteport"),
        format!(
            "app {app}\nfrom busybox\n\nbuild {{\n  copy public /srv\n}}\n\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  instances 2\n}}\n{extra}"
        ),
    )
    .unwrap();
    std::fs::write(public.join("version"), version).unwrap();
    let cgi = public.join("cgi-bin/who");
    std::fs::write(&cgi, WHO_CGI).unwrap();
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

/// (boot id, version) of the VM that answered, or the whole answer.
fn who(port: u16) -> Result<(String, String), String> {
    let answer = get_via(port, "duo", "/cgi-bin/who")?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A CGI answer is chunked: the line is the one with a space.
    let line = body
        .lines()
        .find(|l| l.contains(' ') && l.len() > 36)
        .ok_or_else(|| answer.clone())?;
    let (id, version) = line.split_once(' ').ok_or_else(|| answer.clone())?;
    Ok((id.to_string(), version.trim().to_string()))
}

fn split(port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (id, _) = who(port).unwrap();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

/// Requests in a loop until stopped: (answered, failures).
struct Load {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match who(port) {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.lines().next().unwrap_or_default().to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (ok, failed)
            })
        };
        Load { stop, handle }
    }

    fn finish(self, what: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = self.handle.join().unwrap();
        assert!(
            failed.is_empty(),
            "{what}: {} of {} requests failed: {failed:?}",
            failed.len(),
            ok + failed.len()
        );
        assert!(ok > 10, "{what}: only {ok} requests were made");
        ok
    }
}

#[test]
fn two_instances_share_traffic_survive_a_killed_vm_scale_and_redeploy_without_errors() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let mallory = d.add_key(tmp.path(), "mallory");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("duo");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"], None);
    let port = d.router_port;

    let (ok, out) = push(&d, &work, &ssh, "duo", "v1", "");
    assert!(ok, "{out}\n{}", d.log());
    assert!(out.contains("Booting 2 microVMs"), "{out}");
    let seen = split(port, 100);
    assert_eq!(seen.len(), 2, "requests did not reach two VMs: {seen:?}");
    assert!(seen.values().all(|n| *n >= 25), "uneven split: {seen:?}");
    let ps = testvm::git::text(&d.ssh(&key, "ps duo"));
    assert_eq!(
        ps.lines().filter(|l| l.starts_with("duo ")).count(),
        2,
        "{ps}"
    );

    // One VM killed under load: the other serves every request, and a
    // replacement is booted beside it.
    wait_for(&d, "two VMs recorded", 240, || {
        d.recorded_vm_pids().len() == 2
    });
    let pids = d.recorded_vm_pids();
    let load = Load::start(port);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on a VM process this test's daemon started.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    wait_for(&d, "no replacement VM", 240, || {
        let now = d.recorded_vm_pids();
        now.len() == 2 && !now.contains(&pids[0])
    });
    wait_for(&d, "the replacement takes no requests", 240, || {
        split(port, 20).len() == 2
    });
    load.finish("while one of two VMs was killed");
    let log = testvm::git::text(&d.ssh(&key, "logs duo -n 200"));
    assert!(log.contains("1 other VM serves meanwhile"), "{log}");

    // Scale down and up under load.
    let load = Load::start(port);
    let out = d.ssh(&key, "scale duo web=1");
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    wait_for(&d, "scale down left VMs", 240, || {
        d.recorded_vm_pids().len() == 1
    });
    assert_eq!(split(port, 20).len(), 1);
    let out = d.cli(&["scale", "duo", "web=3"]);
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    assert_eq!(split(port, 60).len(), 3);
    load.finish("while scaling 2 → 1 → 3");

    // A redeploy replaces the three one by one (never more than one VM
    // over the three) with no failed request, and keeps web=3.
    let load = Load::start(port);
    let watching = std::sync::atomic::AtomicBool::new(true);
    let (ok, out, most) = std::thread::scope(|scope| {
        let peak = scope.spawn(|| {
            let mut most = 0;
            while watching.load(std::sync::atomic::Ordering::SeqCst) {
                most = most.max(d.recorded_vm_pids().len());
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            most
        });
        let (ok, out) = push(&d, &work, &ssh, "duo", "v2", "");
        // The last old VM drains and stops before the push ends.
        watching.store(false, std::sync::atomic::Ordering::SeqCst);
        (ok, out, peak.join().unwrap())
    });
    assert!(ok, "{out}\n{}", d.log());
    assert!(
        out.contains("Booting 3 microVMs"),
        "the scale is kept: {out}"
    );
    assert!(
        out.contains("Replacing the running VMs one by one"),
        "not a rolling redeploy: {out}"
    );
    println!("VMs at most during the rolling redeploy: {most} (web=3)");
    assert!(
        (3..=4).contains(&most),
        "{most} VMs ran at once during a redeploy of 3: {out}"
    );
    load.finish("during a redeploy");
    let mut versions = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (id, v) = who(port).unwrap();
        ids.insert(id);
        versions.insert(v);
    }
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["v2"]);
    wait_for(&d, "the old VMs were not retired", 240, || {
        d.recorded_vm_pids().len() == 3
    });

    // Refused: bad formations, another user, and an app with a volume.
    for (line, why) in [
        ("scale duo web=0", "from 1 to 16"),
        ("scale duo web=17", "1 to 16"),
        ("scale duo web=two", "whole number"),
        ("scale duo worker=2", "only the web process"),
        ("scale duo 2", "not PROCESS=N"),
    ] {
        let out = d.ssh(&key, line);
        let text = testvm::git::text(&out);
        assert!(
            !out.status.success() && text.contains(why),
            "{line}: {text}"
        );
    }
    let out = d.ssh(&mallory, "scale duo web=1");
    assert!(!out.status.success(), "{}", testvm::git::text(&out));
    assert!(testvm::git::text(&out).contains("no access"));
    assert_eq!(d.recorded_vm_pids().len(), 3);

    let solo = tmp.path().join("solo");
    std::fs::create_dir_all(&solo).unwrap();
    git(&solo, &["init", "-q", "-b", "main"], None);
    std::fs::create_dir_all(solo.join("public")).unwrap();
    std::fs::write(solo.join("public/index.html"), "solo").unwrap();
    std::fs::write(
        solo.join("Byteport"),
        "app solo\nfrom busybox\nbuild {\n  copy public /srv\n}\nweb {\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n}\nvolume data /data 32M\n",
    )
    .unwrap();
    git(&solo, &["add", "-A"], None);
    git(&solo, &["commit", "-qm", "solo"], None);
    let out = git(
        &solo,
        &["push", "-q", &d.remote("solo"), "HEAD:main"],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    let out = d.ssh(&key, "scale solo web=2");
    let text = testvm::git::text(&out);
    assert!(
        !out.status.success() && text.contains("attached to one VM at a time"),
        "{text}"
    );
}
