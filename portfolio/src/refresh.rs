//! [`Portfolio::refresh`]: the one entry point the platform's job queue
//! calls after a deploy goes live (and for `regenerate`).
//!
//! Steps, in order:
//! 1. facts from the pushed commit (`facts::gather`, off the runtime) —
//!    first, because the manifest in that commit says whether a page is
//!    wanted (`publish off`) and which path to screenshot;
//! 2. the capture of the live URL (`capture`), its page facts merged in;
//! 3. the draft (`draft::draft_for`: the manifest's description, or the
//!    configured drafter with its fallbacks);
//! 4. the new version stored for review (`review::Review::record_draft`),
//!    approved at once under `publish auto` unless the capture was refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capture::{BrowserOptions, CaptureOutcome, CaptureRequest, ImageStore, Screenshotter};
use crate::draft::{draft_for, Drafter, LlmConfig, LlmDrafter, OfflineDrafter};
use crate::facts::{self, Limits, PublishPolicy};
use crate::review::{PortfolioStore, Review, ReviewError, Version};

/// Settings (the `byteport.toml` keys are named on each field).
#[derive(Debug, Clone)]
pub struct PortfolioConfig {
    /// Screenshots, content-addressed (e.g. `$BYTEPORT_HOME/portfolio/images`).
    pub images_dir: PathBuf,
    /// Chromium binary (`chromium_path`; else `$CHROME`, else `PATH`).
    pub chromium_path: Option<PathBuf>,
    /// Where per-run browser profiles go (`None` = the system temp dir).
    pub scratch_dir: Option<PathBuf>,
    /// Longest page load (`portfolio_load_timeout_secs`, default 30 s).
    pub load_timeout: Duration,
    /// The model endpoint (`llm_base_url`, `llm_model`, `llm_timeout_secs`,
    /// `llm_max_concurrent`; key from a secret or env); `None` = offline
    /// drafts only.
    pub llm: Option<LlmConfig>,
    /// Caps on repository reads.
    pub limits: Limits,
}

impl PortfolioConfig {
    /// Defaults, with images under `images_dir`.
    pub fn new(images_dir: impl Into<PathBuf>) -> Self {
        PortfolioConfig {
            images_dir: images_dir.into(),
            chromium_path: None,
            scratch_dir: None,
            load_timeout: Duration::from_secs(30),
            llm: None,
            limits: Limits::default(),
        }
    }
}

/// Errors that stop a refresh (a broken page or a failing model does not:
/// those end up in the draft).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The commit could not be read.
    #[error(transparent)]
    Facts(#[from] facts::FactsError),
    /// The draft could not be stored.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The images directory is unusable.
    #[error("images directory {dir}: {source}")]
    Images {
        /// The directory.
        dir: String,
        /// The error.
        source: std::io::Error,
    },
    /// A blocking task panicked.
    #[error("portfolio task failed: {0}")]
    Task(String),
}

/// One refresh.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// The app.
    pub app: String,
    /// Its bare repository.
    pub repo_path: PathBuf,
    /// The deployed commit, full hex id.
    pub commit: String,
    /// The app's URL through the router (`http://hello.localhost:8000`),
    /// `None` for apps without a web process.
    pub live_url: Option<String>,
    /// The repository's public URL, if the owner set one.
    pub repository_url: Option<String>,
    /// The deploy number.
    pub deploy: Option<i64>,
}

/// Time per phase of a refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimings {
    /// Reading the commit.
    pub facts: Duration,
    /// Starting Chromium (0 when running).
    pub browser_start: Duration,
    /// Tab, navigation, load and the manifest's wait.
    pub page_load: Duration,
    /// The five captures.
    pub captures: Duration,
    /// Checks, hashing and writing images.
    pub encode_store: Duration,
    /// Drafting.
    pub draft: Duration,
    /// Storing the version.
    pub store: Duration,
}

/// What a refresh did.
#[derive(Debug, Clone)]
pub struct RefreshOutcome {
    /// The new version; `None` when the manifest says `publish off` or has
    /// no `portfolio` block.
    pub version: Option<Version>,
    /// Per-phase times.
    pub timings: PhaseTimings,
}

/// The portfolio generator: screenshots, drafts and review over a store.
pub struct Portfolio<S> {
    config: PortfolioConfig,
    screenshotter: Result<Screenshotter, String>,
    drafter: Arc<dyn Drafter>,
    review: Review<S>,
}

impl<S: PortfolioStore> Portfolio<S> {
    /// Builds the generator. A missing Chromium is not an error here:
    /// refreshes then record why there are no screenshots.
    pub fn new(config: PortfolioConfig, store: S) -> Result<Self, RefreshError> {
        let images =
            ImageStore::new(&config.images_dir).map_err(|source| RefreshError::Images {
                dir: config.images_dir.display().to_string(),
                source,
            })?;
        let screenshotter = Screenshotter::new(
            BrowserOptions {
                chromium_path: config.chromium_path.clone(),
                scratch_dir: config.scratch_dir.clone(),
            },
            images,
        )
        .map_err(|e| e.to_string());
        let drafter: Arc<dyn Drafter> = match &config.llm {
            Some(llm) => Arc::new(LlmDrafter::new(llm.clone())),
            None => Arc::new(OfflineDrafter),
        };
        Ok(Portfolio {
            config,
            screenshotter,
            drafter,
            review: Review::new(store),
        })
    }

    /// Replaces the drafter (e.g. after `llm_*` settings change).
    pub fn set_drafter(&mut self, drafter: Arc<dyn Drafter>) {
        self.drafter = drafter;
    }

    /// The review flow (list, show, approve, reject, edit, diff, published).
    pub fn review(&self) -> &Review<S> {
        &self.review
    }

    /// The screenshotter, if Chromium was found.
    pub fn screenshotter(&self) -> Option<&Screenshotter> {
        self.screenshotter.as_ref().ok()
    }

    /// The image store directory.
    pub fn images_dir(&self) -> &std::path::Path {
        &self.config.images_dir
    }

    /// capture → facts → draft → stored version; see the module docs.
    pub async fn refresh(&self, request: RefreshRequest) -> Result<RefreshOutcome, RefreshError> {
        let mut timings = PhaseTimings::default();

        let started = Instant::now();
        let (app, repo, commit, limits) = (
            request.app.clone(),
            request.repo_path.clone(),
            request.commit.clone(),
            self.config.limits,
        );
        let mut facts =
            tokio::task::spawn_blocking(move || facts::gather(&app, &repo, &commit, &limits))
                .await
                .map_err(|e| RefreshError::Task(e.to_string()))??;
        facts.live_url = request.live_url.clone();
        facts.repository_url = request.repository_url.clone();
        timings.facts = started.elapsed();
        if facts.manifest.publish == PublishPolicy::Off {
            return Ok(RefreshOutcome {
                version: None,
                timings,
            });
        }

        let capture = match (&request.live_url, &facts.manifest.screenshot) {
            (Some(base), Some(shot)) => match &self.screenshotter {
                Ok(s) => {
                    let url = format!("{}{}", base.trim_end_matches('/'), shot.path);
                    match s
                        .capture(CaptureRequest {
                            url,
                            wait: Duration::from_millis(shot.wait_ms),
                            load_timeout: self.config.load_timeout,
                        })
                        .await
                    {
                        Ok((outcome, t)) => {
                            timings.browser_start = t.browser_start;
                            timings.page_load = t.page_load;
                            timings.captures = t.captures;
                            timings.encode_store = t.encode_store;
                            outcome
                        }
                        Err(e) => CaptureOutcome::Refused {
                            reason: format!("no screenshots: {e}"),
                            page: None,
                        },
                    }
                }
                Err(e) => CaptureOutcome::Refused {
                    reason: format!("no screenshots: {e}"),
                    page: None,
                },
            },
            _ => CaptureOutcome::NotRequested,
        };
        facts.page = capture.page().cloned();
        if let Some(page) = &facts.page {
            if !page.blocked_requests.is_empty() {
                facts.notes.push(format!(
                    "the page's requests to internal addresses were blocked: {}",
                    page.blocked_requests.join("; ")
                ));
            }
        }

        let started = Instant::now();
        let drafted = draft_for(self.drafter.as_ref(), &facts).await;
        timings.draft = started.elapsed();

        let started = Instant::now();
        let version = self
            .review
            .record_draft(facts, drafted, capture, request.deploy)
            .await?;
        timings.store = started.elapsed();
        Ok(RefreshOutcome {
            version: Some(version),
            timings,
        })
    }
}
