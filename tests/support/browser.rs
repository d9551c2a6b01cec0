//! A real browser for end-to-end tests: Debian's Chromium through the
//! DevTools protocol (headless_chrome, `offline` feature only — never a
//! downloaded browser), a fresh profile, an exact viewport; plus dashboard
//! users and sign-in.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use headless_chrome::{Browser, LaunchOptions, Tab};

use super::daemon::Daemon;

/// Debian's Chromium (scripts/install-deps.sh installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `byteport users add NAME` with the password on stdin.
pub fn add_user(d: &Daemon, name: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(["users", "add", name])
        .env("BYTEPORT_HOME", &d.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "users add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Chromium with a fresh profile in `profile`.
pub fn browser(profile: &Path) -> Browser {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/install-deps.sh does)"
    );
    let args: Vec<&OsStr> = [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(CHROMIUM.into()))
        // Tests run as root, where Chromium's sandbox cannot start.
        .sandbox(false)
        .headless(true)
        .user_data_dir(Some(profile.to_path_buf()))
        .window_size(Some((1280, 900)))
        .idle_browser_timeout(Duration::from_secs(600))
        .args(args)
        .build()
        .unwrap();
    Browser::new(options).expect("launching chromium")
}

/// Exactly 1280×900 CSS pixels, whatever the window manager thinks.
pub fn exact_viewport(tab: &Tab) {
    use headless_chrome::protocol::cdp::Emulation::SetDeviceMetricsOverride;
    tab.call_method(SetDeviceMetricsOverride {
        width: 1280,
        height: 900,
        device_scale_factor: 1.0,
        mobile: false,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
}

/// `js`'s value as a string (JSON for non-strings).
pub fn eval_string(tab: &Tab, js: &str) -> String {
    let v = tab.evaluate(js, false).unwrap().value.unwrap_or_default();
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

/// Waits until `js` evaluates to true in the page; on timeout, fails
/// with the page's text and the daemon's log.
pub fn wait_for(tab: &Tab, what: &str, js: &str, timeout: Duration, d: &Daemon) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = tab
            .evaluate(js, false)
            .ok()
            .and_then(|r| r.value)
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let body = eval_string(tab, "document.body ? document.body.innerText : ''");
            panic!(
                "timed out waiting for {what}\n--- page ---\n{body}\n--- daemon ---\n{}",
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Signs in through the form (starting from a page that needs it).
pub fn sign_in(tab: &Tab, base: &str, user: &str, password: &str) {
    tab.navigate_to(&format!("{base}/apps"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("input[name=user]")
        .unwrap()
        .click()
        .unwrap();
    tab.type_str(user).unwrap();
    tab.wait_for_element("input[name=password]")
        .unwrap()
        .click()
        .unwrap();
    tab.type_str(password).unwrap();
    tab.wait_for_element("form[action='/signin'] button[type=submit]")
        .unwrap()
        .click()
        .unwrap();
    tab.wait_until_navigated().unwrap();
    tab.wait_for_element("header.top .who").unwrap();
}

/// Navigates and waits for the load.
pub fn open(tab: &Tab, url: &str) {
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
}
