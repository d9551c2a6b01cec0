//! The portfolio review, shared by the pages and the API: the same
//! actions and the same access rule as `byteport portfolio …` over SSH
//! (`src/admin/portfolio.rs`): an app's owner and collaborators review its
//! drafts, operators every app; the site's profile is the operators'.
//! Another user's app — its versions, its screenshots — is "not found".
//!
//! The drafts are untrusted text (a model's output, a README): nothing
//! here marks them safe, the templates escape them like everything else.

pub(crate) mod live;
pub mod validate;
pub mod views;

use std::sync::Arc;

use platform::jobs::JobSpec;
use platform::portfolio::{PortfolioService, PROFILE_SETTING};
use portfolio::review::{as_text, PortfolioStore as _, Version};
use serde::Serialize;
use similar::TextDiff;
use utoipa::ToSchema;

use crate::auth::Viewer;
use crate::views::{visible_app, JobView};
use crate::{Ctx, Error};

pub use validate::{EditRequest, LinkBody, ProfileBody};
pub use views::{ReviewSummary, VersionView};

/// The portfolio service, or why there is none.
pub fn service(ctx: &Ctx) -> Result<Arc<PortfolioService>, Error> {
    ctx.platform().portfolio().cloned().ok_or_else(|| {
        Error::Unavailable(
            "the portfolio is not set up on this host (byteport doctor says why)".into(),
        )
    })
}

/// The apps with drafts the viewer may review (every app for operators).
pub async fn list(ctx: &Ctx, viewer: &Viewer) -> Result<Vec<ReviewSummary>, Error> {
    let service = service(ctx)?;
    let rows = service
        .generator
        .review()
        .list()
        .await
        .map_err(|e| Error::internal("listing portfolio drafts", &e))?;
    let mut out = Vec::new();
    for r in rows {
        if viewer.operator
            || ctx
                .platform()
                .store
                .can_access(&viewer.user, &r.app)
                .await?
        {
            out.push(ReviewSummary::new(&r));
        }
    }
    Ok(out)
}

/// An app the viewer may see and its versions, oldest first (empty when
/// nothing was drafted yet).
pub async fn versions(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
) -> Result<(platform::store::App, Vec<Version>), Error> {
    let found = visible_app(ctx, viewer, app).await?;
    let service = service(ctx)?;
    let versions = service
        .generator
        .review()
        .store()
        .versions(&found.name)
        .await
        .map_err(|e| Error::internal("reading portfolio versions", &e))?;
    Ok((found, versions))
}

/// Like [`versions`], but an app without versions is "not found", with
/// the CLI's words.
async fn versions_required(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
) -> Result<(platform::store::App, Vec<Version>), Error> {
    let (found, versions) = versions(ctx, viewer, app).await?;
    if versions.is_empty() {
        return Err(no_drafts(&found.name));
    }
    Ok((found, versions))
}

fn no_drafts(app: &str) -> Error {
    Error::NotFound(format!(
        "{app} has no portfolio drafts (is there a `portfolio` block in its Byteport, and has it deployed?)"
    ))
}

fn no_version(app: &str, n: u32) -> Error {
    Error::NotFound(format!("{app} has no portfolio version {n}"))
}

/// One app's review: every version (oldest first) and which is published.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewView {
    /// The app.
    pub app: String,
    /// The version on the site, if any.
    pub published: Option<u32>,
    /// The draft waiting for review, if any.
    pub pending: Option<u32>,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
}

/// The published version among `versions`.
pub fn published(versions: &[Version]) -> Option<&Version> {
    versions
        .iter()
        .rev()
        .find(|v| v.state == portfolio::review::ReviewState::Approved)
}

/// The draft waiting for review among `versions`.
pub fn pending(versions: &[Version]) -> Option<&Version> {
    versions
        .iter()
        .rev()
        .find(|v| v.state == portfolio::review::ReviewState::Draft)
}

/// Every version of `app` as the API shows it.
pub async fn review(ctx: &Ctx, viewer: &Viewer, app: &str) -> Result<ReviewView, Error> {
    let (found, versions) = versions_required(ctx, viewer, app).await?;
    Ok(ReviewView {
        app: found.name,
        published: published(&versions).map(|v| v.number),
        pending: pending(&versions).map(|v| v.number),
        versions: versions.iter().map(VersionView::new).collect(),
    })
}

/// A diff of one version against another.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiffView {
    /// The version shown.
    pub version: u32,
    /// The version it is compared with (`None`: nothing, all is new).
    pub against: Option<u32>,
    /// A unified diff of title, summary, tags and body.
    pub unified: String,
}

/// What compares with what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    /// The version before it (`byteport portfolio diff`).
    Previous,
    /// The version on the site: what approving would change.
    Published,
}

/// Diffs version `number` (default: the newest) of `app`.
pub async fn diff(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    number: Option<u32>,
    against: Against,
) -> Result<DiffView, Error> {
    let (found, versions) = versions_required(ctx, viewer, app).await?;
    diff_of(&found.name, &versions, number, against)
}

/// [`diff`] on versions already read.
pub(crate) fn diff_of(
    app: &str,
    versions: &[Version],
    number: Option<u32>,
    against: Against,
) -> Result<DiffView, Error> {
    let idx = match number {
        None => versions
            .len()
            .checked_sub(1)
            .ok_or_else(|| no_drafts(app))?,
        Some(n) => versions
            .iter()
            .position(|v| v.number == n)
            .ok_or_else(|| no_version(app, n))?,
    };
    let new = &versions[idx];
    let old = match against {
        Against::Previous => idx.checked_sub(1).map(|i| &versions[i]),
        Against::Published => published(versions),
    };
    let old_text = old.map(|v| as_text(&v.text)).unwrap_or_default();
    let old_name = old
        .map(|v| format!("{app} v{}", v.number))
        .unwrap_or_else(|| "(nothing)".into());
    let new_text = as_text(&new.text);
    let unified = TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .header(&old_name, &format!("{app} v{}", new.number))
        .to_string();
    Ok(DiffView {
        version: new.number,
        against: old.map(|v| v.number),
        unified,
    })
}

/// Saves an owner's edit of the newest version as a new version (it
/// needs approval like any draft).
pub async fn edit(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    req: &EditRequest,
) -> Result<VersionView, Error> {
    let (found, versions) = versions_required(ctx, viewer, app).await?;
    let newest = versions.last().map(|v| v.number).unwrap_or(0);
    if let Some(base) = req.base {
        if !versions.iter().any(|v| v.number == base) {
            return Err(no_version(&found.name, base));
        }
        if base != newest {
            return Err(Error::Conflict(format!(
                "{} v{newest} arrived after v{base}, which this edit started from; nothing was saved — review v{newest} and edit it instead",
                found.name
            )));
        }
    }
    let edit = validate::edit(req)?;
    let v = service(ctx)?
        .edit(&found.name, &viewer.user, edit)
        .await
        .map_err(Error::from)?;
    Ok(VersionView::new(&v))
}

/// Approves version `number` (default: the draft waiting) and rebuilds
/// the site; a refused capture is never approved.
pub async fn approve(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    number: Option<u32>,
) -> Result<VersionView, Error> {
    let (found, versions) = versions_required(ctx, viewer, app).await?;
    if let Some(n) = number {
        if !versions.iter().any(|v| v.number == n) {
            return Err(no_version(&found.name, n));
        }
    }
    let v = service(ctx)?
        .approve(&found.name, &viewer.user, number)
        .await
        .map_err(Error::from)?;
    Ok(VersionView::new(&v))
}

/// Rejects the draft waiting (`number`, when given, must be that draft:
/// a reviewer rejects what they saw). The published page stays.
pub async fn reject(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    number: Option<u32>,
) -> Result<VersionView, Error> {
    let (found, versions) = versions_required(ctx, viewer, app).await?;
    if let Some(n) = number {
        if !versions.iter().any(|v| v.number == n) {
            return Err(no_version(&found.name, n));
        }
        match pending(&versions) {
            Some(p) if p.number == n => {}
            Some(p) => {
                return Err(Error::Conflict(format!(
                    "{} v{n} is not the draft waiting for review (v{} is); nothing was rejected",
                    found.name, p.number
                )))
            }
            None => {
                return Err(Error::Conflict(format!(
                    "{} has no draft waiting for review",
                    found.name
                )))
            }
        }
    }
    let v = service(ctx)?
        .reject(&found.name, &viewer.user)
        .await
        .map_err(Error::from)?;
    Ok(VersionView::new(&v))
}

/// Queues a `portfolio` job that drafts the app's page again from its
/// live deploy (screenshots, facts, draft); its progress is on the app's
/// event stream like every job's.
pub async fn regenerate(ctx: &Ctx, viewer: &Viewer, app: &str) -> Result<JobView, Error> {
    let found = visible_app(ctx, viewer, app).await?;
    service(ctx)?;
    let platform = ctx.platform();
    let live = platform
        .store
        .live_deploy(&found.name)
        .await?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "{} has no live deploy to draft a page from; push a commit first",
                found.name
            ))
        })?;
    let spec = JobSpec::Portfolio {
        deploy: Some(live.number),
        commit: live.commit,
    };
    // The repository and the image store are on this node: run it here.
    let job = platform
        .enqueue(&found.name, spec, Some(&viewer.user), true)
        .await?;
    Ok(JobView::new(&job))
}

/// Checks that `sha256` is a screenshot of one of `app`'s versions and
/// that the viewer may see `app`. An image of another app — even one the
/// viewer may see — is "not found" here, so an image id never opens a
/// door its app does not.
pub async fn check_image(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    sha256: &str,
) -> Result<platform::store::App, Error> {
    let (found, versions) = versions(ctx, viewer, app).await?;
    if !versions
        .iter()
        .any(|v| views::image_ids(v).contains(&sha256))
    {
        return Err(Error::NotFound(format!(
            "{} has no such screenshot",
            found.name
        )));
    }
    Ok(found)
}

/// A screenshot of one of `app`'s versions (WebP bytes, hash-checked);
/// see [`check_image`].
pub async fn image(ctx: &Ctx, viewer: &Viewer, app: &str, sha256: &str) -> Result<Vec<u8>, Error> {
    let found = check_image(ctx, viewer, app, sha256).await?;
    let images = portfolio::capture::ImageStore::new(service(ctx)?.generator.images_dir())
        .map_err(|e| Error::internal("opening the portfolio images", &e))?;
    let id = sha256.to_string();
    match tokio::task::spawn_blocking(move || images.read(&id)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!(
            "{} has no such screenshot",
            found.name
        ))),
        Ok(Err(e)) => Err(Error::internal("reading a portfolio screenshot", &e)),
        Err(e) => Err(Error::internal("reading a portfolio screenshot", &e)),
    }
}

/// Operators only (others: "not found", like the Host page).
fn operator(viewer: &Viewer) -> Result<(), Error> {
    crate::pages::require_operator(viewer)
}

/// The site's profile (operators).
pub async fn profile(ctx: &Ctx, viewer: &Viewer) -> Result<ProfileBody, Error> {
    operator(viewer)?;
    Ok(ProfileBody::of(&service(ctx)?.profile().await))
}

/// Saves the site's profile and rebuilds the site (operators). The site
/// is built with it first: a profile the site cannot use is refused and
/// nothing is saved.
pub async fn set_profile(
    ctx: &Ctx,
    viewer: &Viewer,
    body: &ProfileBody,
) -> Result<ProfileBody, Error> {
    operator(viewer)?;
    let service = service(ctx)?;
    let profile = validate::profile(body)?;
    let published = service
        .generator
        .review()
        .published()
        .await
        .map_err(|e| Error::internal("reading published versions", &e))?;
    let images = portfolio::capture::ImageStore::new(service.generator.images_dir())
        .map_err(|e| Error::internal("opening the portfolio images", &e))?;
    let trial = profile.clone();
    tokio::task::spawn_blocking(move || portfolio::site::build(&trial, &published, &images))
        .await
        .map_err(|e| Error::internal("building the portfolio site", &e))?
        .map_err(|e| match e {
            portfolio::site::SiteError::Profile(m) => Error::BadRequest(m),
            other => Error::internal("building the portfolio site", &other),
        })?;
    ctx.platform()
        .store
        .set_setting(PROFILE_SETTING, &profile)
        .await?;
    service.rebuild_site().await.map_err(Error::from)?;
    Ok(ProfileBody::of(&profile))
}
