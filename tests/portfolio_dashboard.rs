//! The portfolio review in the dashboard, in a real browser (Debian's
//! Chromium through the DevTools protocol) against a real `byteport up`
//! with a real pushed app whose `Byteport` has a `portfolio { … }` block:
//! the owner signs in, opens the review page, sees the real screenshots
//! load, edits the title, approves, and finds the project page with the
//! edited title on the public site at `/portfolio/`; a regenerate's
//! progress arrives live without a reload; a second user gets 404 for
//! the review page and its screenshots.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use support::browser::{add_user, browser, eval_string, exact_viewport, open, sign_in, wait_for};
use support::daemon::{git, Daemon};
use testvm::git::text;

const EDITED: &str = "Edited in a real browser";

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

/// Polls `f` until it returns something (or fails with the daemon's log).
fn poll(d: &Daemon, what: &str, secs: u64, mut f: impl FnMut() -> Option<String>) -> String {
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

/// The review page's event stream is open (htmx's SSE extension).
const SSE_OPEN: &str = "(() => { const el = document.querySelector('[sse-connect]'); const d = el && el['htmx-internal-data']; return !!(d && d.sseEventSource && d.sseEventSource.readyState === 1); })()";

#[test]
fn review_a_portfolio_draft_in_a_real_browser() {
    let d = Daemon::start();
    let base = format!("http://127.0.0.1:{}", d.http_port);
    add_user(&d, "alice", "alice-password-1");
    add_user(&d, "bob", "bob-password-12");
    let keys = tempfile::tempdir().unwrap();
    let key = d.add_key(keys.path(), "alice");

    // A real app with a `portfolio { … }` block (the static-site example).
    let work = tempfile::tempdir().unwrap();
    let w = work.path().join("site");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/static-site"),
        &w,
    );
    git(&w, &["init", "-q"], None);
    git(&w, &["add", "-A"], None);
    git(&w, &["commit", "-qm", "first"], None);
    let out = git(
        &w,
        &["push", "-q", &d.remote("hello"), "HEAD:main"],
        Some(&d.ssh_command(&key)),
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());

    // The portfolio job after the deploy drafts v1 with real screenshots.
    poll(&d, "the portfolio draft", 300, || {
        let t = text(&d.ssh(&key, "portfolio list"));
        (t.contains("hello") && t.contains("draft")).then_some(t)
    });

    let profile = tempfile::tempdir().unwrap();
    let b = browser(profile.path());
    let tab = b.new_tab().unwrap();
    exact_viewport(&tab);
    sign_in(&tab, &base, "alice", "alice-password-1");

    // The nav's Portfolio link → the review list → the app's review page.
    tab.find_element("header.top nav a[href='/review']")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the review list",
        "location.pathname === '/review' && !!document.querySelector('#review-hello a')",
        Duration::from_secs(20),
        &d,
    );
    tab.find_element("#review-hello a")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the review page",
        "location.pathname === '/apps/hello/portfolio' && !!document.querySelector('#version-shown')",
        Duration::from_secs(20),
        &d,
    );

    // The four screenshots load, at their real sizes.
    wait_for(
        &tab,
        "the screenshots to load",
        "(() => { const i = [...document.querySelectorAll('.shots img')]; return i.length === 4 && i.every(x => x.complete && x.naturalWidth > 0); })()",
        Duration::from_secs(30),
        &d,
    );
    let sizes = eval_string(
        &tab,
        "[...document.querySelectorAll('.shots img')].map(i => i.dataset.kind + ' ' + i.naturalWidth + 'x' + i.naturalHeight).join(', ')",
    );
    for want in ["desktop 1280x800", "mobile 780x1688", "open_graph 1200x630"] {
        assert!(sizes.contains(want), "screenshot sizes: {sizes}");
    }
    assert!(sizes.contains("full_page 1280x"), "{sizes}");
    assert_eq!(
        eval_string(
            &tab,
            "document.querySelector('#review-drafted-by').textContent"
        ),
        "offline drafter",
        "no model is configured: the offline drafter wrote it"
    );
    assert_eq!(
        eval_string(
            &tab,
            "String(document.querySelectorAll('.langbar rect').length > 0)"
        ),
        "true",
        "the languages bar"
    );
    let image_url = eval_string(
        &tab,
        "document.querySelector('.shots img').getAttribute('src')",
    );
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(
        std::env::temp_dir().join("byteport-portfolio-review.png"),
        &shot,
    )
    .unwrap();

    tab.evaluate(
        "document.querySelector('#review-diff').scrollIntoView()",
        false,
    )
    .unwrap();
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(
        std::env::temp_dir().join("byteport-portfolio-review-facts.png"),
        &shot,
    )
    .unwrap();

    // Edit the title: a new version (v2), drafted by alice.
    tab.evaluate(
        "(() => { const t = document.querySelector('input[name=title]'); t.focus(); t.select(); return true; })()",
        false,
    )
    .unwrap();
    tab.type_str(EDITED).unwrap();
    tab.find_element("#review-save").unwrap().click().unwrap();
    wait_for(
        &tab,
        "the edit to be saved",
        "location.search.includes('saved=edited') && !!document.querySelector('#version-shown[data-version=\"2\"]')",
        Duration::from_secs(20),
        &d,
    );
    assert_eq!(
        eval_string(&tab, "document.querySelector('input[name=title]').value"),
        EDITED
    );
    assert_eq!(
        eval_string(
            &tab,
            "document.querySelector('#review-drafted-by').textContent"
        ),
        "edited by alice"
    );

    // Approve it.
    tab.find_element("#review-approve")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the approval",
        "location.search.includes('saved=approved') && !!document.querySelector('#review-site-link')",
        Duration::from_secs(20),
        &d,
    );

    // The public site has the project page with the edited title.
    open(&tab, &format!("{base}/portfolio/"));
    wait_for(
        &tab,
        "the site's index with the edited title",
        &format!("document.body.innerText.includes({EDITED:?})"),
        Duration::from_secs(10),
        &d,
    );
    tab.find_element("a[href*='projects/hello']")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the project page",
        &format!(
            "location.pathname.startsWith('/portfolio/projects/hello') && document.body.innerText.includes({EDITED:?})"
        ),
        Duration::from_secs(10),
        &d,
    );
    wait_for(
        &tab,
        "the project page's screenshots",
        "document.images.length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)",
        Duration::from_secs(20),
        &d,
    );

    // Regenerate: the job's progress and the new version arrive live.
    open(&tab, &format!("{base}/apps/hello/portfolio"));
    wait_for(
        &tab,
        "the review page's stream",
        SSE_OPEN,
        Duration::from_secs(20),
        &d,
    );
    tab.evaluate("window.__noReload = 'still here'", false)
        .unwrap();
    tab.find_element("#review-regenerate")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the regenerate's confirmation",
        "document.querySelector('#review-result').textContent.includes('portfolio queued as job')",
        Duration::from_secs(10),
        &d,
    );
    wait_for(
        &tab,
        "the portfolio job's lines, live",
        "document.querySelector('#job-lines').textContent.includes('drafting a page for hello')",
        Duration::from_secs(120),
        &d,
    );
    wait_for(
        &tab,
        "the notice of the new version",
        "document.querySelector('#review-notice').textContent.includes('The newest version is v3')",
        Duration::from_secs(240),
        &d,
    );
    assert_eq!(
        eval_string(&tab, "window.__noReload"),
        "still here",
        "the page reloaded"
    );
    assert_eq!(
        eval_string(
            &tab,
            "String(!!document.querySelector('#versions #version-3'))"
        ),
        "true",
        "the versions table was not refreshed"
    );

    // Sign out; bob gets 404 for the review page and its screenshots.
    tab.find_element("form.signout button")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the sign-in page",
        "location.pathname === '/signin'",
        Duration::from_secs(10),
        &d,
    );
    sign_in(&tab, &base, "bob", "bob-password-12");
    open(&tab, &format!("{base}/apps/hello/portfolio"));
    let body = eval_string(&tab, "document.body.innerText");
    assert!(
        body.contains("Not found") && !body.contains(EDITED),
        "bob sees alice's review page:\n{body}"
    );
    let status = tab
        .evaluate(&format!("fetch({image_url:?}).then(r => r.status)"), true)
        .unwrap()
        .value
        .unwrap();
    assert_eq!(status, 404, "bob fetched alice's screenshot");
    open(&tab, &format!("{base}/review"));
    let body = eval_string(&tab, "document.body.innerText");
    assert!(
        !body.contains("hello"),
        "bob's review list shows alice's app:\n{body}"
    );
}
