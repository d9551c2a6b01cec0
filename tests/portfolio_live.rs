//! The portfolio through a real `byteport up`: a pushed example with a
//! `portfolio` block gets a drafted page with real Chromium screenshots of
//! its live URL; the owner approves it over SSH and it is on the exported
//! site; a page regenerated while the app is stopped (the router answers
//! 502) is refused with the reason and never published.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::{git, Daemon};
use testvm::git::text;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn wait_for(d: &Daemon, what: &str, secs: u64, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- daemon ---\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_deployed_example_gets_a_reviewed_page_with_real_screenshots() {
    if !testvm::have("chromium") {
        panic!(
            "chromium is needed for portfolio screenshots: apt-get install chromium (.ci/run does)"
        );
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let ssh = d.ssh_command(&key);
    let work = tmp.path().join("site");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/static-site"),
        &work,
    );
    git(&work, &["init", "-q"], None);
    git(&work, &["add", "-A"], None);
    git(&work, &["commit", "-qm", "first"], None);
    let out = git(
        &work,
        &["push", "-q", &d.remote("hello"), "HEAD:main"],
        Some(&ssh),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());

    // The portfolio job runs after the deploy: a draft with screenshots.
    let list = wait_for(&d, "a portfolio draft", 240, || {
        let out = d.ssh(&key, "portfolio list");
        let t = text(&out);
        t.contains("hello").then_some(t)
    });
    assert!(list.contains("v1") && list.contains("draft"), "{list}");
    let show = text(&d.ssh(&key, "portfolio show hello"));
    assert!(show.contains("screenshots:"), "{show}");
    for shot in ["desktop", "mobile", "full_page", "open_graph", "thumbnail"] {
        assert!(show.contains(shot), "no {shot} capture: {show}");
    }

    // Another user cannot see or approve it.
    let bob = d.add_key(tmp.path(), "bob");
    let out = d.ssh(&bob, "portfolio approve hello");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&d.ssh(&bob, "portfolio list")).contains("hello"));

    // The owner approves; the exported site has the page, its images with
    // alt text and Open Graph tags.
    let out = d.ssh(&key, "portfolio approve hello");
    assert!(out.status.success(), "{}", text(&out));
    let export = tmp.path().join("export");
    let out = d.cli(&["portfolio", "export", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let page = std::fs::read_to_string(export.join("projects/hello/index.html"))
        .unwrap_or_else(|e| panic!("no page for hello in the export ({e})"));
    assert!(page.contains("og:image"), "{page}");
    assert!(page.contains("alt="), "{page}");
    let index = std::fs::read_to_string(export.join("index.html")).unwrap();
    assert!(index.contains("hello"), "{index}");

    // Regenerated while the app is stopped: the router's 502 is refused
    // with the reason, and the published page stays.
    let out = d.ssh(&key, "stop hello");
    assert!(out.status.success(), "{}", text(&out));
    let out = d.ssh(&key, "portfolio regenerate hello");
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    let show = text(&d.ssh(&key, "portfolio show hello"));
    assert!(show.contains("v2"), "{show}");
    assert!(
        show.contains("no screenshots:") && show.contains("502"),
        "{show}"
    );
    let out = d.ssh(&key, "portfolio approve hello 2");
    assert!(
        !out.status.success(),
        "a broken capture was published: {}",
        text(&out)
    );
    let list = text(&d.ssh(&key, "portfolio list"));
    assert!(list.contains("published v1"), "{list}");
}
