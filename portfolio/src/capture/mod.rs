//! Screenshots of a live app in headless Chromium.
//!
//! Steps, in the order [`Screenshotter::capture`] runs them:
//! 1. the shared browser ([`browser::BrowserHost`]), started or restarted;
//! 2. a new tab at the desktop viewport with every request checked
//!    ([`egress`]: the app's origin and public hosts only) and dialogs
//!    disabled, the main document's response recorded (status, router
//!    marker), navigation, load, then the manifest's `wait`;
//! 3. a DOM probe (title, meta description, visible headings, text and
//!    media counts) and the broken-page checks ([`check`]);
//! 4. five captures with exact viewports (`Emulation.setDeviceMetricsOverride`):
//!    desktop 1280×800, thumbnail 320×200 (the desktop view at scale ¼),
//!    full page 1280×N (`captureBeyondViewport`, N ≤ 8000), Open Graph
//!    1200×630, mobile 390×844 at DPR 2 (780×1688 pixels);
//! 5. the near-uniform check on the desktop image, then each image stored
//!    content-addressed ([`images::ImageStore`]).
//!
//! Images are lossy WebP encoded by Chromium itself (`format: webp`):
//! Chromium ships libwebp, so there is no second encoder to build or run,
//! and lossy WebP is 5–10× smaller than optimised PNG for screenshots with
//! photos or gradients (see the benchmark's figures in the README).

pub mod browser;
pub mod check;
pub mod egress;
pub mod images;
mod shots;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use browser::{BrowserHost, BrowserOptions};
pub use images::{ImageRef, ImageStore};

/// Infrastructure failures (not a broken page: that is a
/// [`CaptureOutcome::Refused`]).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No usable Chromium binary.
    #[error("no browser for screenshots: {0}")]
    NoChromium(String),
    /// The browser did not start.
    #[error("chromium did not start: {0}")]
    Launch(String),
    /// The DevTools conversation failed (browser crashed or hung).
    #[error("chromium failed while {step}: {message}")]
    Browser {
        /// What was being done.
        step: &'static str,
        /// headless_chrome's error, in words.
        message: String,
    },
    /// Storing an image failed.
    #[error("storing a screenshot in {dir}: {source}")]
    Store {
        /// The images directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The blocking task was cancelled or panicked.
    #[error("the screenshot task ended abnormally: {0}")]
    Task(String),
}

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// The page: the app's real URL through the router, e.g.
    /// `http://hello.localhost:8000/`.
    pub url: String,
    /// Extra wait after load (the manifest's `screenshot ... wait`).
    pub wait: Duration,
    /// Longest time the page may take to load.
    pub load_timeout: Duration,
}

/// The five stored images of one capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screenshots {
    /// 1280×800.
    pub desktop: ImageRef,
    /// 390×844 CSS pixels at DPR 2: 780×1688.
    pub mobile: ImageRef,
    /// 1280 wide, as tall as the page (at most 8000).
    pub full_page: ImageRef,
    /// 1200×630, for Open Graph / Twitter cards.
    pub open_graph: ImageRef,
    /// 320×200, for project cards.
    pub thumbnail: ImageRef,
}

/// What the live page says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFacts {
    /// `<title>`, at most 300 characters.
    pub title: Option<String>,
    /// `<meta name="description">`, at most 500 characters.
    pub description: Option<String>,
    /// Visible `h1`–`h3` texts, at most 20 of 200 characters.
    pub headings: Vec<String>,
    /// Requests the page made that were blocked ([`egress`]), at most 20.
    #[serde(default)]
    pub blocked_requests: Vec<String>,
}

/// The result of a capture attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaptureOutcome {
    /// Screenshots taken and stored.
    Captured {
        /// The images.
        shots: Screenshots,
        /// The page's own facts.
        page: PageFacts,
    },
    /// The page is broken; nothing publishable was captured.
    Refused {
        /// Why, for the owner.
        reason: String,
        /// Whatever facts the page gave before it was refused.
        page: Option<PageFacts>,
    },
    /// No screenshot was asked for (no `web` block, or no screenshot in
    /// the manifest).
    NotRequested,
}

impl CaptureOutcome {
    /// The images, when captured.
    pub fn shots(&self) -> Option<&Screenshots> {
        match self {
            CaptureOutcome::Captured { shots, .. } => Some(shots),
            _ => None,
        }
    }
    /// The page facts, when any.
    pub fn page(&self) -> Option<&PageFacts> {
        match self {
            CaptureOutcome::Captured { page, .. } => Some(page),
            CaptureOutcome::Refused { page, .. } => page.as_ref(),
            CaptureOutcome::NotRequested => None,
        }
    }
    /// The refusal reason, when refused.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            CaptureOutcome::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Time spent per phase of one capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureTimings {
    /// Starting Chromium (0 when it was already running).
    pub browser_start: Duration,
    /// New tab, navigation, load and the manifest's wait.
    pub page_load: Duration,
    /// The five captures (Chromium renders and WebP-encodes them).
    pub captures: Duration,
    /// Decoding for the checks, hashing and writing the files.
    pub encode_store: Duration,
}

/// Takes screenshots with one shared browser. `Clone` shares it.
#[derive(Clone)]
pub struct Screenshotter {
    host: Arc<BrowserHost>,
    images: ImageStore,
}

impl Screenshotter {
    /// A screenshotter storing into `images`. The browser starts on the
    /// first capture.
    pub fn new(options: BrowserOptions, images: ImageStore) -> Result<Self, CaptureError> {
        Ok(Screenshotter {
            host: Arc::new(BrowserHost::new(options)?),
            images,
        })
    }

    /// The shared browser host (PID, launch count).
    pub fn host(&self) -> &BrowserHost {
        &self.host
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// Captures `request.url`. Runs on a blocking thread; the async
    /// runtime is never blocked. A browser that died since the last
    /// capture (or during this one) is restarted once.
    pub async fn capture(
        &self,
        request: CaptureRequest,
    ) -> Result<(CaptureOutcome, CaptureTimings), CaptureError> {
        let host = self.host.clone();
        let images = self.images.clone();
        tokio::task::spawn_blocking(move || {
            match shots::capture_blocking(&host, &images, &request) {
                Err(CaptureError::Browser { step, message }) => {
                    tracing::warn!(%step, %message, "portfolio: capture failed; restarting chromium and retrying once");
                    host.discard();
                    shots::capture_blocking(&host, &images, &request)
                }
                other => other,
            }
        })
        .await
        .map_err(|e| CaptureError::Task(e.to_string()))?
    }
}
