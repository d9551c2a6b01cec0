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
    let alice = keygen(keys.path(), "alice");
    let bob = keygen(keys.path(), "bob");
    let mallory = keygen(keys.path(), "mallory");
    for (name, key) in [("alice", &alice), ("bob", &bob)] {
        let out = d.cli(&[
            "keys",
            "add",
            name,
            key.with_extension("pub").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
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
    d.stop();
}
