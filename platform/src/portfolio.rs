//! The portfolio inside the platform: after a deploy goes live whose
//! manifest asks for it, a `portfolio` job (queued behind the deploy, so it
//! never delays or fails it) screenshots the live app, gathers facts,
//! drafts a write-up and records a version for the owner's review
//! ([`::portfolio`] does the work; the state store keeps the versions).
//! Approving, rejecting or editing rebuilds the site served at
//! `/portfolio/`.

use std::sync::Arc;

use ::portfolio::review::{ReviewError, TextEdit, Version};
use ::portfolio::site::{Profile, Site, SiteHandle};
use ::portfolio::{Portfolio, PortfolioConfig, RefreshRequest};

use crate::apps::Platform;
use crate::events::EventKind;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::store::Store;

/// The settings document holding the site's profile.
pub const PROFILE_SETTING: &str = "portfolio.profile";
/// The settings document holding where `publish` pushes.
pub const PUBLISH_SETTING: &str = "portfolio.publish";

/// Where `byteport portfolio publish` pushes the exported site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishSettings {
    /// A git remote (URL or path) the daemon's user can push to.
    pub remote: String,
    /// Its branch (e.g. `gh-pages` or `main`).
    pub branch: String,
}

/// The generator and the live site, as the platform holds them.
pub struct PortfolioService {
    /// Screenshots, drafts and review over the state store.
    pub generator: Portfolio<Store>,
    /// The site served at `/portfolio/`, rebuilt after each review.
    pub site: SiteHandle,
    /// The profile until the operator sets one (`byteport portfolio
    /// profile`): named after the host, served by this daemon.
    default_profile: Profile,
    /// The dashboard's base URL (the site's URL without `portfolio/`).
    dashboard_url: String,
}

fn review_error(e: ReviewError) -> JobError {
    match e {
        // Two reviewers at once: the second is told, not given a 500.
        ReviewError::Store(::portfolio::review::StoreError::Conflict(what)) => JobError::Rejected {
            message: format!(
                "someone else changed this portfolio version first ({what}); reload it and try again"
            ),
        },
        ReviewError::Store(s) => JobError::Internal {
            message: s.to_string(),
        },
        other => JobError::Rejected {
            message: other.to_string(),
        },
    }
}

impl PortfolioService {
    /// Builds the generator over `store` with `config`; the site starts
    /// from the versions already approved.
    pub async fn new(
        config: PortfolioConfig,
        store: Store,
        site_url: &str,
    ) -> Result<PortfolioService, String> {
        let default_profile = Profile {
            name: "BytePort".into(),
            bio: "Projects deployed on this BytePort.".into(),
            site_url: site_url.to_string(),
            ..Profile::default()
        };
        let generator = Portfolio::new(config, store).map_err(|e| e.to_string())?;
        let images = ::portfolio::capture::ImageStore::new(generator.images_dir())
            .map_err(|e| format!("portfolio images: {e}"))?;
        let empty: Site = ::portfolio::site::build(&default_profile, &[], &images)
            .map_err(|e| format!("building the portfolio site: {e}"))?;
        let service = PortfolioService {
            generator,
            site: SiteHandle::new(empty),
            default_profile,
            dashboard_url: site_url
                .strip_suffix("portfolio/")
                .unwrap_or(site_url)
                .to_string(),
        };
        if let Err(e) = service.rebuild_site().await {
            tracing::warn!(error = %e, "the portfolio site cannot be built yet");
        }
        Ok(service)
    }

    /// The profile the site shows (a default naming BytePort until the
    /// operator sets one).
    pub async fn profile(&self) -> Profile {
        match self
            .generator
            .review()
            .store()
            .setting::<Profile>(PROFILE_SETTING)
            .await
        {
            Ok(Some(p)) => p,
            _ => self.default_profile.clone(),
        }
    }

    /// Rebuilds the site from the approved versions (after approve, reject,
    /// edit or a profile change).
    pub async fn rebuild_site(&self) -> Result<(), JobError> {
        let published = self
            .generator
            .review()
            .published()
            .await
            .map_err(review_error)?;
        let profile = self.profile().await;
        let images =
            ::portfolio::capture::ImageStore::new(self.generator.images_dir()).map_err(|e| {
                JobError::Internal {
                    message: format!("portfolio images: {e}"),
                }
            })?;
        let site = ::portfolio::site::build(&profile, &published, &images).map_err(|e| {
            JobError::Internal {
                message: format!("building the portfolio site: {e}"),
            }
        })?;
        self.site.replace(site);
        Ok(())
    }

    /// Approves version `number` (default: the newest) of `app`.
    pub async fn approve(
        &self,
        app: &str,
        by: &str,
        number: Option<u32>,
    ) -> Result<Version, JobError> {
        let v = self
            .generator
            .review()
            .approve(app, by, number)
            .await
            .map_err(review_error)?;
        self.rebuild_site().await?;
        Ok(v)
    }

    /// Rejects the newest draft of `app`.
    pub async fn reject(&self, app: &str, by: &str) -> Result<Version, JobError> {
        let v = self
            .generator
            .review()
            .reject(app, by)
            .await
            .map_err(review_error)?;
        self.rebuild_site().await?;
        Ok(v)
    }

    /// The owner's edit: a new version that needs approval.
    pub async fn edit(&self, app: &str, by: &str, edit: TextEdit) -> Result<Version, JobError> {
        self.generator
            .review()
            .edit(app, by, edit)
            .await
            .map_err(review_error)
    }
}

impl Platform {
    /// The portfolio, when it could be set up on this host.
    pub fn portfolio(&self) -> Option<&Arc<PortfolioService>> {
        self.portfolio.as_ref()
    }

    /// Queues a `portfolio` job for a deploy that just went live, when its
    /// manifest asks for a page.
    pub(crate) async fn queue_portfolio(
        &self,
        app: &str,
        deploy: i64,
        commit: &str,
        manifest: &manifest_spec::Manifest,
    ) {
        let wanted = manifest
            .portfolio
            .as_ref()
            .is_some_and(|p| p.publish != manifest_spec::Publish::Off);
        if !wanted || self.portfolio.is_none() {
            return;
        }
        let spec = crate::jobs::JobSpec::Portfolio {
            deploy: Some(deploy),
            commit: commit.to_string(),
        };
        if let Err(e) = self.enqueue(app, spec, Some("byteport"), true).await {
            tracing::warn!(app, error = %e, "cannot queue the portfolio refresh");
        }
    }

    /// The `portfolio` job: screenshots, facts, draft, a new version.
    pub(crate) async fn refresh_portfolio(
        &self,
        ctx: &JobCtx,
        deploy: Option<i64>,
        commit: &str,
    ) -> Result<(), JobError> {
        let Some(service) = self.portfolio.clone() else {
            return Err(JobError::Rejected {
                message: "the portfolio is not set up on this host (see byteport doctor)".into(),
            });
        };
        if let Some(n) = deploy {
            ctx.set_deploy(n).await;
        }
        ctx.say(&format!(
            "-----> Portfolio: drafting a page for {}",
            ctx.app
        ));
        let request = RefreshRequest {
            app: ctx.app.clone(),
            repo_path: self.repo_path(&ctx.app),
            commit: commit.to_string(),
            live_url: Some(self.app_url(&ctx.app)),
            repository_url: None,
            deploy,
        };
        let outcome = ctx
            .control
            .guard(service.generator.refresh(request))
            .await?
            .map_err(|e| JobError::Rejected {
                message: format!("portfolio refresh failed: {e}"),
            })?;
        let t = outcome.timings;
        for (phase, d) in [
            ("portfolio_facts", t.facts),
            ("portfolio_browser", t.browser_start),
            ("portfolio_page_load", t.page_load),
            ("portfolio_captures", t.captures),
            ("portfolio_encode", t.encode_store),
            ("portfolio_draft", t.draft),
        ] {
            ctx.phase(phase, d.as_millis() as i64);
        }
        match outcome.version {
            None => ctx.say("-----> Portfolio: the manifest says publish off; nothing drafted"),
            Some(v) => {
                let state = v.state.as_str();
                let line = match &v.capture {
                    ::portfolio::capture::CaptureOutcome::Refused { reason, .. } => format!(
                        "portfolio draft v{} ({state}) has no screenshots: {reason}",
                        v.number
                    ),
                    _ if v.state == ::portfolio::review::ReviewState::Draft => format!(
                        "Portfolio draft v{} ready for review: {}apps/{}/portfolio",
                        v.number, service.dashboard_url, ctx.app
                    ),
                    _ => format!("portfolio v{} is {state}", v.number),
                };
                // The app's log (`logs`) shows notes, not progress lines;
                // the requester follows progress lines.
                self.events.emit(
                    &ctx.app,
                    deploy,
                    Some(ctx.id),
                    EventKind::Note { text: line.clone() },
                );
                ctx.say(&format!("-----> {line}"));
                if v.state == ::portfolio::review::ReviewState::Approved {
                    service.rebuild_site().await?;
                }
            }
        }
        Ok(())
    }
}
