//! The dashboard in a real browser (Debian's Chromium through the DevTools
//! protocol) against a real `byteport up` with a real pushed app in a QEMU
//! VM: sign in, see the app, watch a push's build log and a request's log
//! line arrive live, press Restart and watch the jobs table change without
//! a reload, check the apps page renders (a screenshot that is not blank),
//! and a second user sees none of the first user's apps.

mod support;

use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use support::browser::{add_user, browser, eval_string, exact_viewport, sign_in, wait_for};
use support::daemon::{git, Daemon};

const MANIFEST: &str = "app site\nfrom busybox\n\nbuild {\n  copy public /srv\n}\n\nweb {\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n  health GET /index.html every 1s timeout 1s\n}\n";

/// Share of pixels that differ from the most common colour.
fn non_background_share(png_bytes: &[u8]) -> f64 {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let mut counts = std::collections::HashMap::new();
    for p in &pixels {
        *counts.entry(&p[..3]).or_insert(0usize) += 1;
    }
    let most = counts.values().max().copied().unwrap_or(0);
    1.0 - most as f64 / pixels.len() as f64
}

#[test]
fn dashboard_in_a_real_browser() {
    let d = Daemon::start();
    let base = format!("http://127.0.0.1:{}", d.http_port);
    add_user(&d, "alice", "alice-password-1");
    add_user(&d, "bob", "bob-password-12");
    let keys = tempfile::tempdir().unwrap();
    let alice_key = d.add_key(keys.path(), "alice");
    let ssh = d.ssh_command(&alice_key);

    // A first push creates the app.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], None);
    std::fs::create_dir_all(w.join("public")).unwrap();
    std::fs::write(w.join("Byteport"), MANIFEST).unwrap();
    std::fs::write(w.join("public/index.html"), "version one\n").unwrap();
    git(w, &["add", "-A"], None);
    git(w, &["commit", "-qm", "one"], None);
    git(w, &["remote", "add", "byteport", &d.remote("site")], None);
    let out = git(w, &["push", "byteport", "main"], Some(&ssh));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );

    let profile = tempfile::tempdir().unwrap();
    let b = browser(profile.path());
    let tab = b.new_tab().unwrap();
    exact_viewport(&tab);

    // Sign in; the apps page lists the app, running.
    sign_in(&tab, &base, "alice", "alice-password-1");
    tab.wait_for_element("#app-site").unwrap();
    wait_for(
        &tab,
        "the app running",
        "document.querySelector('#app-site .state').textContent === 'running'",
        Duration::from_secs(30),
        &d,
    );
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let share = non_background_share(&shot);
    assert!(
        share > 0.02,
        "the apps page screenshot is blank ({share:.4} non-background)"
    );
    std::fs::write(
        std::env::temp_dir().join("byteport-dashboard-apps.png"),
        &shot,
    )
    .unwrap();

    // Open the app; its page connects its one event stream.
    tab.find_element("#app-site a").unwrap().click().unwrap();
    tab.wait_until_navigated().unwrap();
    tab.wait_for_element("#runtime-lines").unwrap();
    wait_for(&tab, "the SSE stream to open", "!!document.querySelector('[sse-connect]') && document.querySelector('[sse-connect]')['htmx-internal-data'] && !!document.querySelector('[sse-connect]')['htmx-internal-data'].sseEventSource && document.querySelector('[sse-connect]')['htmx-internal-data'].sseEventSource.readyState === 1", Duration::from_secs(20), &d);
    tab.evaluate("window.__noReload = 'still here'", false)
        .unwrap();

    // A request to the app: its router line appears in the runtime log.
    d.get_path("site", "/index.html?from-the-browser-test")
        .unwrap();
    wait_for(
        &tab,
        "the request's log line",
        "[...document.querySelectorAll('#runtime-lines .ln')].some(l => l.dataset.p === 'router' && l.textContent.includes('from-the-browser-test'))",
        Duration::from_secs(20),
        &d,
    );

    // A second push: its build log lines arrive while it runs.
    std::fs::write(w.join("public/index.html"), "version two\n").unwrap();
    git(w, &["commit", "-qam", "two"], None);
    let ssh2 = ssh.clone();
    let wdir = w.to_path_buf();
    let push = std::thread::spawn(move || git(&wdir, &["push", "byteport", "main"], Some(&ssh2)));
    wait_for(
        &tab,
        "a live build log line during the push",
        "document.querySelector('#build-lines').textContent.includes('Building rootfs')",
        Duration::from_secs(120),
        &d,
    );
    assert!(
        !push.is_finished(),
        "the build log line arrived only after the push had ended"
    );
    let pushed = push.join().unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    wait_for(
        &tab,
        "deploy #2 in the deploys table",
        "!!document.querySelector('#deploy-2.dep-live')",
        Duration::from_secs(30),
        &d,
    );

    // Restart: the jobs table shows the restart job and its end, live.
    tab.find_element("#action-restart")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the restart's confirmation",
        "document.querySelector('#action-result').textContent.includes('restart queued as job')",
        Duration::from_secs(10),
        &d,
    );
    wait_for(
        &tab,
        "the restart job to succeed in the jobs table",
        "[...document.querySelectorAll('table.jobs tr')].some(r => r.textContent.includes('restart') && r.classList.contains('job-succeeded'))",
        Duration::from_secs(180),
        &d,
    );
    assert_eq!(
        eval_string(&tab, "window.__noReload"),
        "still here",
        "the page reloaded"
    );
    let shot = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(
        std::env::temp_dir().join("byteport-dashboard-app.png"),
        &shot,
    )
    .unwrap();

    // Log lines are text: a request with markup in its path renders inert.
    let _ = d.get_path("site", "/%3Cimg%20src=x%20onerror=alert(1)%3E");
    wait_for(
        &tab,
        "the hostile request line",
        "document.querySelector('#runtime-lines').textContent.includes('onerror')",
        Duration::from_secs(20),
        &d,
    );
    assert_eq!(
        eval_string(
            &tab,
            "String(document.querySelectorAll('#runtime-lines img').length)"
        ),
        "0"
    );

    // Sign out; bob signs in and sees none of alice's apps.
    tab.find_element("form.signout button")
        .unwrap()
        .click()
        .unwrap();
    wait_for(
        &tab,
        "the sign-in page after signing out",
        "location.pathname === '/signin'",
        Duration::from_secs(10),
        &d,
    );
    // The old session is dead server-side: the apps page asks to sign in.
    tab.navigate_to(&format!("{base}/apps"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    wait_for(
        &tab,
        "the sign-in form",
        "location.pathname === '/signin' && !!document.querySelector('input[name=user]')",
        Duration::from_secs(10),
        &d,
    );
    sign_in(&tab, &base, "bob", "bob-password-12");
    let body = eval_string(&tab, "document.body.innerText");
    assert!(!body.contains("site"), "bob sees alice's app:\n{body}");
    assert!(body.contains("No apps yet"), "{body}");
    tab.navigate_to(&format!("{base}/apps/site"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    let body = eval_string(&tab, "document.body.innerText");
    assert!(
        body.contains("Not found") && !body.contains("version"),
        "{body}"
    );
}
