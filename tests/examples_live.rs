//! The examples a newcomer pushes first, pushed as they are in `examples/`
//! to `byteport up` with the stock `git` and OpenSSH clients: each builds,
//! boots in its own VM and serves its page through the router.

mod support;

use std::path::Path;

use support::daemon::{git, Daemon};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Pushes `examples/<example>` as app `app` and returns git's output.
fn push_example(d: &Daemon, tmp: &Path, ssh: &str, example: &str, app: &str) -> String {
    let work = tmp.join(example);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(example),
        &work,
    );
    assert!(git(&work, &["init", "-q"], None).status.success());
    git(&work, &["add", "-A"], None);
    git(&work, &["commit", "-qm", example], None);
    let out = git(&work, &["push", &d.remote(app), "main"], Some(ssh));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "push of examples/{example}:\n{text}\n--- daemon ---\n{}",
        d.log()
    );
    assert!(
        text.contains(&format!("remote: -----> Live at http://{app}.localhost:")),
        "{text}"
    );
    text
}

#[test]
fn the_static_and_python_examples_go_live_and_serve_their_pages() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);

    push_example(&d, tmp.path(), &ssh, "static-site", "hello");
    let page = d.get("hello").unwrap();
    assert!(page.contains("<h1>Hello from a microVM</h1>"), "{page}");
    let css = d.get_path("hello", "/style.css").unwrap();
    assert!(css.contains("text/css"), "{css}");

    let out = push_example(&d, tmp.path(), &ssh, "python-flask", "flask");
    assert!(out.contains("from debian:bookworm"), "{out}");
    let page = d.get("flask").unwrap();
    assert!(page.contains("<h1>Hello from a microVM</h1>"), "{page}");
    assert!(page.contains("answering from its own VM"), "{page}");
    let health = d.get_path("flask", "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Both stay up side by side, each in its own VM.
    let ps = String::from_utf8_lossy(&d.cli(&["ps"]).stdout).to_string();
    assert!(ps.contains("hello") && ps.contains("flask"), "{ps}");
    assert!(d.get("hello").unwrap().contains("Hello from a microVM"));
}
