//! `git push` to a live URL: `byteport up` as a user runs it, the stock
//! `git` client over OpenSSH's `ssh`, real VMs under QEMU.

mod support;

use std::path::Path;

use support::daemon::{git, keygen, Daemon};

const MANIFEST: &str = "app site\nfrom busybox\n\nbuild {\n  copy public /srv\n}\n\nweb {\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET /index.html every 1s timeout 1s\n}\n";

fn write_app(dir: &Path, manifest: &str, page: &str) {
    std::fs::create_dir_all(dir.join("public")).unwrap();
    std::fs::write(dir.join("Byteport"), manifest).unwrap();
    std::fs::write(dir.join("public/index.html"), page).unwrap();
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn push_deploys_redeploys_rejects_and_guards_access() {
    let mut d = Daemon::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = d.add_key(keys.path(), "alice");
    let bob = d.add_key(keys.path(), "bob");
    // Never registered.
    let mallory = keygen(keys.path(), "mallory");
    let ssh_alice = d.ssh_command(&alice);

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    assert!(git(w, &["init", "-q"], None).status.success());
    write_app(w, MANIFEST, "version one\n");
    git(w, &["add", "-A"], None);
    git(w, &["commit", "-qm", "one"], None);
    git(w, &["remote", "add", "byteport", &d.remote("site")], None);

    // First push creates the app and deploys it.
    let out = git(w, &["push", "byteport", "main"], Some(&ssh_alice));
    let t = text(&out);
    assert!(out.status.success(), "{t}\n--- daemon ---\n{}", d.log());
    assert!(
        t.contains("remote: -----> site: Byteport manifest OK"),
        "{t}"
    );
    assert!(
        t.contains("remote: -----> Live at http://site.localhost:"),
        "{t}"
    );
    assert!(d.get("site").unwrap().contains("version one"));
    assert!(d.home.join("repos/site.git/HEAD").exists());

    // A second push redeploys.
    write_app(w, MANIFEST, "version two\n");
    git(w, &["commit", "-qam", "two"], None);
    let out = git(w, &["push", "byteport", "main"], Some(&ssh_alice));
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.get("site").unwrap().contains("version two"));

    // A broken manifest is rejected with line and column; v2 stays live.
    write_app(
        w,
        &MANIFEST.replace("port 8080", "port 80800"),
        "version three\n",
    );
    git(w, &["commit", "-qam", "three"], None);
    let out = git(w, &["push", "byteport", "main"], Some(&ssh_alice));
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "[remote rejected] main -> main (deploy failed: invalid Byteport manifest: Byteport:"
        ),
        "{t}"
    );
    assert!(t.contains("80800"), "{t}");
    assert!(d.get("site").unwrap().contains("version two"));

    // Other branches and tags update without deploying.
    git(w, &["checkout", "-qb", "feature"], None);
    let out = git(
        w,
        &["push", "byteport", "feature", "--tags"],
        Some(&ssh_alice),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Live at"));
    git(w, &["tag", "v1"], None);
    assert!(git(w, &["push", "byteport", "v1"], Some(&ssh_alice))
        .status
        .success());
    let out = git(
        w,
        &["push", "byteport", "--delete", "feature"],
        Some(&ssh_alice),
    );
    assert!(out.status.success(), "{}", text(&out));
    let refs = std::fs::read_dir(d.home.join("repos/site.git/refs/heads"))
        .unwrap()
        .count();
    assert_eq!(refs, 1, "feature deleted, main kept");

    // Unknown keys and non-collaborators are refused; nothing changes.
    let out = git(
        w,
        &["push", "byteport", "HEAD:refs/heads/x"],
        Some(&d.ssh_command(&mallory)),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    let out = git(
        w,
        &["push", "byteport", "HEAD:refs/heads/x"],
        Some(&d.ssh_command(&bob)),
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("no access"), "{}", text(&out));
    // Hostile repository names get a message the client shows.
    let out = git(
        w,
        &[
            "push",
            &format!("ssh://git@127.0.0.1:{}/../etc.git", d.ssh_port),
            "main",
        ],
        Some(&ssh_alice),
    );
    assert!(text(&out).contains("invalid app name"), "{}", text(&out));

    // Admin commands over SSH.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} git@127.0.0.1 apps", ssh_alice))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("site"),
        "{}",
        text(&out)
    );
    let out = d.cli(&["deploys", "site"]);
    let t = text(&out);
    assert!(
        t.contains("#3") && t.contains("failed") && t.contains("live"),
        "{t}"
    );

    // The server repo is sound.
    let out = std::process::Command::new("git")
        .args(["fsck", "--full"])
        .current_dir(d.home.join("repos/site.git"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Restarting `byteport up` brings the live deploy back without a push.
    d.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match d.get("site") {
            Ok(page) => {
                assert!(page.contains("version two"), "{page}");
                break;
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "not restored: {e}\n{}",
                    d.log()
                );
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
    d.stop();
}

#[test]
fn clone_fetch_force_push_and_hostile_protocol_input() {
    let mut d = Daemon::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = d.add_key(keys.path(), "alice");
    let ssh = d.ssh_command(&alice);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("w");
    std::fs::create_dir_all(&w).unwrap();
    git(&w, &["init", "-q"], None);
    // A few commits on a non-deploy branch (no VM needed).
    for i in 0..5 {
        std::fs::write(w.join("file.txt"), format!("line {i}\n").repeat(50 + i)).unwrap();
        git(&w, &["add", "-A"], None);
        git(&w, &["commit", "-qm", &format!("c{i}")], None);
    }
    git(&w, &["tag", "-a", "v1", "-m", "v1"], None);
    let out = git(
        &w,
        &["push", "--follow-tags", &d.remote("lib"), "main:dev", "v1"],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}", text(&out));

    // Clone, then an incremental fetch.
    let clone = work.path().join("clone");
    let out = git(
        work.path(),
        &[
            "clone",
            "-q",
            "-b",
            "dev",
            &d.remote("lib"),
            clone.to_str().unwrap(),
        ],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert_eq!(
        git(&clone, &["rev-parse", "HEAD"], None).stdout,
        git(&w, &["rev-parse", "HEAD"], None).stdout
    );
    assert!(git(&clone, &["fsck", "--full"], None).status.success());
    std::fs::write(w.join("file.txt"), "new\n").unwrap();
    git(&w, &["commit", "-qam", "c5"], None);
    assert!(git(&w, &["push", &d.remote("lib"), "main:dev"], Some(&ssh))
        .status
        .success());
    let out = git(&clone, &["fetch", "-q", "origin"], Some(&ssh));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        git(&clone, &["rev-parse", "origin/dev"], None).stdout,
        git(&w, &["rev-parse", "HEAD"], None).stdout
    );
    assert!(git(&clone, &["fsck", "--full"], None).status.success());

    // Protocol v2 (git's default) end to end through `byteport up`: the
    // trace shows the server answering `version 2`.
    let trace = work.path().join("trace-v2");
    std::fs::write(w.join("file.txt"), "v2\n").unwrap();
    git(&w, &["commit", "-qam", "c6"], None);
    assert!(git(&w, &["push", &d.remote("lib"), "main:dev"], Some(&ssh))
        .status
        .success());
    let out = std::process::Command::new("git")
        .args(["-c", "protocol.version=2", "fetch", "-q", "origin"])
        .current_dir(&clone)
        .env("GIT_SSH_COMMAND", &ssh)
        .env("GIT_TRACE_PACKET", &trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let t = std::fs::read_to_string(&trace).unwrap();
    assert!(
        t.contains("fetch< version 2") && t.contains("fetch> command=fetch"),
        "{t}"
    );
    assert_eq!(
        git(&clone, &["rev-parse", "origin/dev"], None).stdout,
        git(&w, &["rev-parse", "HEAD"], None).stdout
    );
    assert!(git(&clone, &["fsck", "--full"], None).status.success());

    // Non-fast-forward needs --force, which works.
    git(&w, &["reset", "-q", "--hard", "HEAD~2"], None);
    let out = git(&w, &["push", &d.remote("lib"), "main:dev"], Some(&ssh));
    assert!(
        !out.status.success(),
        "a non-fast-forward push is refused by the client without --force"
    );
    let out = git(
        &w,
        &["push", "--force", &d.remote("lib"), "main:dev"],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}", text(&out));

    // Push options reach the hook: deploy=false on the deploy branch.
    std::fs::write(w.join("Byteport"), MANIFEST).unwrap();
    git(&w, &["add", "-A"], None);
    git(&w, &["commit", "-qm", "manifest"], None);
    let out = git(
        &w,
        &["push", "-o", "deploy=false", &d.remote("lib"), "main"],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deploy=false: ref updated, nothing deployed"),
        "{}",
        text(&out)
    );

    // Hand-crafted hostile input over a raw SSH exec: errors, no partial refs.
    let repo = d.home.join("repos/lib.git");
    let refs_before = git(&repo, &["for-each-ref"], None).stdout;
    let head = String::from_utf8_lossy(&git(&w, &["rev-parse", "HEAD"], None).stdout)
        .trim()
        .to_string();
    let zero = "0".repeat(40);
    let cmd = format!("{zero} {head} refs/heads/evil\0report-status");
    let truncated_pack = {
        let mut v = format!("{:04x}{cmd}", cmd.len() + 4).into_bytes();
        v.extend_from_slice(b"0000PACK\0\0\0\x02\0\0\0\x05garbage");
        v
    };
    for (what, bytes) in [
        ("malformed pkt-line length", b"zzzzhello".to_vec()),
        ("oversized pkt-line", b"ffffxx".to_vec()),
        ("bad command", b"0010not-a-command0000".to_vec()),
        ("truncated pack", truncated_pack),
    ] {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{ssh} git@127.0.0.1 \"git-receive-pack 'lib.git'\""
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&bytes);
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "{what}: must fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("byteport:"),
            "{what}: {}",
            text(&out)
        );
    }
    assert_eq!(
        git(&repo, &["for-each-ref"], None).stdout,
        refs_before,
        "no partial refs"
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("objects/pack"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".pack") && !n.ends_with(".idx") && !n.ends_with(".rev"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(git(&repo, &["fsck", "--full"], None).status.success());
    d.stop();
}

#[test]
fn concurrent_pushes_to_one_app_end_consistent() {
    let mut d = Daemon::start();
    let keys = tempfile::tempdir().unwrap();
    let alice = d.add_key(keys.path(), "alice");
    let ssh = d.ssh_command(&alice);
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    git(&base, &["init", "-q"], None);
    std::fs::write(base.join("a"), "a\n").unwrap();
    git(&base, &["add", "-A"], None);
    git(&base, &["commit", "-qm", "base"], None);
    assert!(
        git(&base, &["push", &d.remote("race"), "main:dev"], Some(&ssh))
            .status
            .success()
    );

    // Two diverging commits on the same branch, pushed at the same time.
    let mut dirs = vec![];
    for who in ["x", "y"] {
        let dir = work.path().join(who);
        let out = git(
            work.path(),
            &[
                "clone",
                "-q",
                "-b",
                "dev",
                &d.remote("race"),
                dir.to_str().unwrap(),
            ],
            Some(&ssh),
        );
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(dir.join(who), format!("{who}\n").repeat(1000)).unwrap();
        git(&dir, &["add", "-A"], None);
        git(&dir, &["commit", "-qm", who], None);
        dirs.push(dir);
    }
    let handles: Vec<_> = dirs
        .iter()
        .cloned()
        .map(|dir| {
            let (ssh, remote) = (ssh.clone(), d.remote("race"));
            std::thread::spawn(move || {
                git(
                    &dir,
                    &[
                        "push",
                        &remote,
                        "HEAD:dev",
                        "HEAD:refs/heads/own-branch-of-this-clone",
                    ],
                    Some(&ssh),
                )
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners = results.iter().filter(|o| o.status.success()).count();
    assert!(
        winners >= 1,
        "at least one push wins: {:?}",
        results.iter().map(text).collect::<Vec<_>>()
    );
    // Whatever the interleaving, dev is exactly one of the two commits and
    // the repository is sound.
    let repo = d.home.join("repos/race.git");
    let dev = String::from_utf8_lossy(&git(&repo, &["rev-parse", "dev"], None).stdout)
        .trim()
        .to_string();
    let heads: Vec<String> = dirs
        .iter()
        .map(|dir| {
            String::from_utf8_lossy(&git(dir, &["rev-parse", "HEAD"], None).stdout)
                .trim()
                .to_string()
        })
        .collect();
    assert!(heads.contains(&dev), "dev = {dev}, pushed {heads:?}");
    assert!(git(&repo, &["fsck", "--full"], None).status.success());
    d.stop();
}

#[test]
fn limits_configured_for_byteport_up_reach_the_client() {
    let mut d = Daemon::start_with_env(&[
        ("BYTEPORT_MAX_PACK_SIZE", "1M"),
        ("BYTEPORT_SSH_IDLE_TIMEOUT_SECS", "2"),
    ]);
    let keys = tempfile::tempdir().unwrap();
    let alice = d.add_key(keys.path(), "alice");
    let ssh = d.ssh_command(&alice);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], None);
    // 3 MiB that does not compress, on a non-deploy branch.
    let mut noise = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(w.join("big.bin"), &noise).unwrap();
    git(w, &["add", "-A"], None);
    git(w, &["commit", "-qm", "big"], None);
    let out = git(w, &["push", &d.remote("big"), "main:dev"], Some(&ssh));
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "the pack is larger than this server accepts (1 MiB; the `max_pack_size` setting)"
        ),
        "{t}"
    );

    // A client that stalls in the middle of a git exchange is told why.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{ssh} git@127.0.0.1 \"git-receive-pack 'big.git'\""
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let t = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "nothing received from the client for 2 s: closing the connection (idle timeout)"
        ),
        "{t}"
    );
    d.stop();
}
