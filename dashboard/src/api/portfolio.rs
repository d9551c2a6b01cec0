//! `/api/v1/portfolio…` and `/api/v1/apps/{app}/portfolio…`: the
//! portfolio review (list, versions, diff, edit, approve, reject,
//! regenerate, screenshots) and the site's profile (operators) — the
//! same actions and access rule as `byteport portfolio …`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::body;
use crate::auth::ApiViewer;
use crate::error::ErrorBody;
use crate::review::{
    self, Against, DiffView, EditRequest, ProfileBody, ReviewSummary, ReviewView, VersionView,
};
use crate::views::JobView;
use crate::{Ctx, Error};

/// Apps with portfolio drafts the caller may review (all, for operators).
#[utoipa::path(get, path = "/api/v1/portfolio", tag = "portfolio",
    responses((status = 200, body = Vec<ReviewSummary>), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list_reviews(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
) -> Result<Json<Vec<ReviewSummary>>, Error> {
    Ok(Json(review::list(&ctx, &v).await?))
}

/// Every portfolio version of an app (oldest first), the published one
/// and the draft waiting for review.
#[utoipa::path(get, path = "/api/v1/apps/{app}/portfolio", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = ReviewView), (status = 404, body = ErrorBody)))]
pub async fn get_review(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Json<ReviewView>, Error> {
    Ok(Json(review::review(&ctx, &v, &app).await?))
}

/// Which diff.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DiffQuery {
    /// The version (default: the newest).
    pub version: Option<u32>,
    /// `previous` (default, like `byteport portfolio diff`) or `published`
    /// (what approving it would change on the site).
    pub against: Option<String>,
}

/// A unified diff of a version's text against the previous or the
/// published version.
#[utoipa::path(get, path = "/api/v1/apps/{app}/portfolio/diff", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name"), DiffQuery),
    responses((status = 200, body = DiffView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_diff(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<DiffView>, Error> {
    let against = match q.against.as_deref() {
        None | Some("previous") => Against::Previous,
        Some("published") => Against::Published,
        Some(other) => {
            // The app is checked first: a stranger learns nothing from the error.
            crate::views::visible_app(&ctx, &v, &app).await?;
            return Err(Error::BadRequest(format!(
                "against must be `previous` or `published`, not `{}`",
                other.escape_default()
            )));
        }
    };
    Ok(Json(
        review::diff(&ctx, &v, &app, q.version, against).await?,
    ))
}

/// Saves an edit of the newest version as a new version (it needs
/// approval). Lengths are checked, never silently cut: title ≤ 80,
/// summary ≤ 160, body ≤ 2000 characters, ≤ 8 tags of ≤ 32.
#[utoipa::path(post, path = "/api/v1/apps/{app}/portfolio/edit", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name")),
    request_body = EditRequest,
    responses((status = 201, description = "the new version", body = VersionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: Result<Json<EditRequest>, JsonRejection>,
) -> Result<Response, Error> {
    // The app is checked before the body: a stranger gets the same 404.
    crate::views::visible_app(&ctx, &v, &app).await?;
    let req = body(b)?;
    let version = review::edit(&ctx, &v, &app, &req).await?;
    Ok((StatusCode::CREATED, Json(version)).into_response())
}

/// Which version.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct VersionRequest {
    /// The version (default: the draft waiting for review).
    pub version: Option<u32>,
}

fn optional<T: Default + serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Error> {
    if b.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(b).map_err(|e| Error::BadRequest(format!("the JSON body is wrong: {e}")))
}

/// Publishes a version (default: the draft waiting) and rebuilds the
/// site. A version whose screenshot was refused is never published
/// (`409 conflict` with the reason).
#[utoipa::path(post, path = "/api/v1/apps/{app}/portfolio/approve", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name")),
    request_body(content = Option<VersionRequest>, description = "optional; empty body = the draft waiting"),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<VersionView>, Error> {
    crate::views::visible_app(&ctx, &v, &app).await?;
    let req: VersionRequest = optional(&b)?;
    Ok(Json(review::approve(&ctx, &v, &app, req.version).await?))
}

/// Rejects the draft waiting for review (when `version` is given, it
/// must be that draft). The published page stays.
#[utoipa::path(post, path = "/api/v1/apps/{app}/portfolio/reject", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name")),
    request_body(content = Option<VersionRequest>, description = "optional; empty body = the draft waiting"),
    responses((status = 200, body = VersionView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<VersionView>, Error> {
    crate::views::visible_app(&ctx, &v, &app).await?;
    let req: VersionRequest = optional(&b)?;
    Ok(Json(review::reject(&ctx, &v, &app, req.version).await?))
}

/// Drafts the page again from the live deploy: a `portfolio` job
/// (screenshots, facts, draft); follow it on `/api/v1/apps/{app}/events`.
#[utoipa::path(post, path = "/api/v1/apps/{app}/portfolio/regenerate", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn regenerate(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    let job = review::regenerate(&ctx, &v, &app).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// A screenshot of one of the app's versions (`image/webp`), by its
/// SHA-256 as listed in the version's `capture.screenshots`. Its ETag is
/// the hash; browsers revalidate on every use (`no-cache`), so the access
/// check runs each time — a cached copy is never shown to the next user
/// of a shared browser — and an unchanged image costs a `304`.
#[utoipa::path(get, path = "/api/v1/apps/{app}/portfolio/images/{sha256}", tag = "portfolio",
    params(("app" = String, Path, description = "the app's name"), ("sha256" = String, Path, description = "the image's content hash")),
    responses((status = 200, description = "the WebP image", content_type = "image/webp", body = Vec<u8>), (status = 304, description = "unchanged (If-None-Match)"), (status = 404, body = ErrorBody)))]
pub async fn image(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, sha256)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let etag = format!("\"{sha256}\"");
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "private, no-cache".to_string()),
    ];
    let unchanged = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .any(|t| t.trim() == etag);
    if unchanged {
        review::check_image(&ctx, &v, &app, &sha256).await?;
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let bytes = review::image(&ctx, &v, &app, &sha256).await?;
    Ok((
        StatusCode::OK,
        cache,
        [(header::CONTENT_TYPE, "image/webp")],
        bytes,
    )
        .into_response())
}

/// The portfolio site's profile (operators only; others get 404).
#[utoipa::path(get, path = "/api/v1/portfolio/profile", tag = "portfolio",
    responses((status = 200, body = ProfileBody), (status = 404, body = ErrorBody)))]
pub async fn get_profile(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
) -> Result<Json<ProfileBody>, Error> {
    Ok(Json(review::profile(&ctx, &v).await?))
}

/// Replaces the site's profile and rebuilds the site (operators only).
#[utoipa::path(put, path = "/api/v1/portfolio/profile", tag = "portfolio",
    request_body = ProfileBody,
    responses((status = 200, body = ProfileBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_profile(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    b: Result<Json<ProfileBody>, JsonRejection>,
) -> Result<Json<ProfileBody>, Error> {
    crate::pages::require_operator(&v)?;
    let p = body(b)?;
    Ok(Json(review::set_profile(&ctx, &v, &p).await?))
}
