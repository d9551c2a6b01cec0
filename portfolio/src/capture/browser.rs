//! One shared Chromium process: found, launched, restarted when it dies, and
//! never left behind.
//!
//! Why the launch goes through a dedicated thread and a launcher script:
//! `headless_chrome` spawns Chromium itself (`std::process::Command`), so we
//! cannot set `PR_SET_PDEATHSIG` in the child between fork and exec. The
//! launcher script (`exec setpriv --pdeathsig KILL -- chromium "$@"`) sets it
//! right before Chromium's own exec, keeping the PID headless_chrome knows.
//! The kernel sends the signal when the *thread* that forked the child ends,
//! so the fork happens on [`BrowserHost`]'s own long-lived thread (a tokio
//! blocking thread may be retired after 10 s idle and would take Chromium
//! with it). When the owning process dies — even by SIGKILL — the browser
//! process gets SIGKILL, and its zygote and renderers exit when their
//! browser's IPC channels close (proven by `tests/chromium_lifetime.rs`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::{Browser, LaunchOptions};

use super::CaptureError;

/// Flags for a machine whose network may be closed: nothing phones home,
/// nothing updates itself, no first-run UI. Each one removes background
/// traffic or a feature a screenshot does not need.
const CHROMIUM_FLAGS: &[&str] = &[
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-crash-reporter",
    "--disable-notifications",
    "--mute-audio",
    "--hide-scrollbars",
    "--font-render-hinting=none",
];

/// How a browser process is found and started.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Chromium binary; `None` = `$CHROME`, then `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH`.
    pub chromium_path: Option<PathBuf>,
    /// Where per-run profile directories go (`None` = the system temp dir).
    pub scratch_dir: Option<PathBuf>,
}

/// Finds the Chromium binary: explicit path, `$CHROME`, then `PATH`.
pub fn find_chromium(explicit: Option<&Path>) -> Result<PathBuf, CaptureError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(CaptureError::NoChromium(format!(
                "chromium_path {} does not exist",
                p.display()
            )))
        };
    }
    if let Some(p) = std::env::var_os("CHROME").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(CaptureError::NoChromium(format!(
                "$CHROME={} does not exist",
                p.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(CaptureError::NoChromium(
        "no chromium on PATH; install Debian's `chromium` package (scripts/install-deps.sh) or set chromium_path / $CHROME".into(),
    ))
}

/// A running browser and what must live exactly as long as it.
struct Running {
    browser: Arc<Browser>,
    // Dropped after `browser` (field order): the profile and launcher go
    // once the process is gone.
    _profile: tempfile::TempDir,
}

type LaunchReply = Result<Running, CaptureError>;

/// Owns the shared browser. Cheap to share behind an `Arc`; all methods
/// block, so call them from `spawn_blocking`.
pub struct BrowserHost {
    options: BrowserOptions,
    chromium: PathBuf,
    launcher_tx: Mutex<Option<mpsc::Sender<mpsc::Sender<LaunchReply>>>>,
    launcher_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    current: Mutex<Option<Running>>,
    launches: std::sync::atomic::AtomicU32,
}

impl BrowserHost {
    /// Resolves the binary and starts the launcher thread (not the browser:
    /// that starts on first use).
    pub fn new(options: BrowserOptions) -> Result<Self, CaptureError> {
        let chromium = find_chromium(options.chromium_path.as_deref())?;
        if find_on_path("setpriv").is_none() {
            return Err(CaptureError::NoChromium(
                "`setpriv` (util-linux) is missing; it ties Chromium's life to BytePort's".into(),
            ));
        }
        let (tx, rx) = mpsc::channel::<mpsc::Sender<LaunchReply>>();
        let chromium_for_thread = chromium.clone();
        let opts = options.clone();
        let thread = std::thread::Builder::new()
            .name("portfolio-chromium".into())
            .spawn(move || {
                // Lives until the host is dropped: Chromium's parent-death
                // signal is tied to this thread.
                while let Ok(reply) = rx.recv() {
                    let _ = reply.send(launch(&chromium_for_thread, &opts));
                }
            })
            .map_err(|e| CaptureError::Launch(format!("starting the launcher thread: {e}")))?;
        Ok(BrowserHost {
            options,
            chromium,
            launcher_tx: Mutex::new(Some(tx)),
            launcher_thread: Mutex::new(Some(thread)),
            current: Mutex::new(None),
            launches: Default::default(),
        })
    }

    /// The Chromium binary in use.
    pub fn chromium_path(&self) -> &Path {
        &self.chromium
    }

    /// How many times a browser process was started (1 after the first
    /// capture; more after restarts).
    pub fn launches(&self) -> u32 {
        self.launches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The browser's PID, if one is running.
    pub fn pid(&self) -> Option<u32> {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        cur.as_ref().and_then(|r| r.browser.get_process_id())
    }

    /// The running browser, started (or restarted, when the last one died)
    /// as needed. Returns whether it was launched by this call.
    pub fn browser(&self) -> Result<(Arc<Browser>, bool), CaptureError> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = cur.as_ref() {
            if alive(&running.browser) {
                return Ok((running.browser.clone(), false));
            }
            tracing::warn!("portfolio: chromium is gone; starting a new one");
            *cur = None;
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        {
            let tx = self.launcher_tx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = tx
                .as_ref()
                .ok_or_else(|| CaptureError::Launch("the browser host is shutting down".into()))?;
            tx.send(reply_tx)
                .map_err(|_| CaptureError::Launch("the launcher thread ended".into()))?;
        }
        let running = reply_rx
            .recv()
            .map_err(|_| CaptureError::Launch("the launcher thread ended".into()))??;
        self.launches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let browser = running.browser.clone();
        *cur = Some(running);
        Ok((browser, true))
    }

    /// Forgets the current browser (killing it), e.g. after it hung.
    pub fn discard(&self) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = None;
    }

    /// The profile/scratch settings this host was built with.
    pub fn options(&self) -> &BrowserOptions {
        &self.options
    }
}

impl Drop for BrowserHost {
    fn drop(&mut self) {
        // Kill the browser first (headless_chrome kills and reaps on drop),
        // then let the launcher thread end.
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.launcher_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = self
            .launcher_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
    }
}

/// A browser whose DevTools connection still answers.
fn alive(browser: &Browser) -> bool {
    if let Some(pid) = browser.get_process_id() {
        // A zombie or vanished process means the browser died.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next());
                if matches!(state, Some("Z") | Some("X") | None) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    browser.get_version().is_ok()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| {
            let p = Path::new("/usr/bin").join(name);
            p.is_file().then_some(p)
        })
}

/// Single-quotes `s` for `/bin/sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs on the launcher thread.
fn launch(chromium: &Path, options: &BrowserOptions) -> LaunchReply {
    let mut builder = tempfile::Builder::new();
    builder.prefix("byteport-chromium-");
    let profile = match &options.scratch_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                CaptureError::Launch(format!("creating scratch dir {}: {e}", dir.display()))
            })?;
            builder.tempdir_in(dir)
        }
        None => builder.tempdir(),
    }
    .map_err(|e| CaptureError::Launch(format!("creating a profile directory: {e}")))?;
    let user_data = profile.path().join("profile");
    let launcher = profile.path().join("launch-chromium");
    let setpriv = find_on_path("setpriv").unwrap_or_else(|| PathBuf::from("/usr/bin/setpriv"));
    let script = format!(
        "#!/bin/sh\n# Written by BytePort's portfolio: Chromium dies with its owner.\nexec {} --pdeathsig KILL -- {} \"$@\"\n",
        sh_quote(&setpriv.to_string_lossy()),
        sh_quote(&chromium.to_string_lossy())
    );
    write_executable(&launcher, &script)
        .map_err(|e| CaptureError::Launch(format!("writing {}: {e}", launcher.display())))?;

    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let args: Vec<&OsStr> = CHROMIUM_FLAGS.iter().map(OsStr::new).collect();
    let launch_options = LaunchOptions::default_builder()
        .path(Some(launcher.clone()))
        .user_data_dir(Some(user_data))
        .headless(true)
        // Chromium refuses to run its sandbox as root; as any other user
        // the sandbox stays on.
        .sandbox(!root)
        .enable_gpu(false)
        .window_size(Some((1280, 800)))
        // The DevTools connection is only closed by us (restart or drop).
        .idle_browser_timeout(Duration::from_secs(24 * 3600))
        .args(args)
        .build()
        .map_err(|e| CaptureError::Launch(format!("launch options: {e}")))?;
    let browser = Browser::new(launch_options).map_err(|e| {
        CaptureError::Launch(format!("starting {} failed: {e:#}", chromium.display()))
    })?;
    Ok(Running {
        browser: Arc::new(browser),
        _profile: profile,
    })
}

fn write_executable(path: &Path, body: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(path)?;
    std::io::Write::write_all(&mut f, body.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn explicit_missing_path_is_refused_with_its_name() {
        let e = find_chromium(Some(Path::new("/nonexistent/chromium"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/chromium"), "{e}");
    }
}
