//! Serving the site from memory: the daemon mounts [`router`] at
//! `/portfolio` on the dashboard's address and swaps in a new [`Site`]
//! after each approval or profile change.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Site;

/// The site being served; cloning shares it.
#[derive(Clone, Default)]
pub struct SiteHandle(Arc<RwLock<Arc<Site>>>);

impl SiteHandle {
    /// Serves `site`.
    pub fn new(site: Site) -> Self {
        SiteHandle(Arc::new(RwLock::new(Arc::new(site))))
    }

    /// Replaces the site (requests in flight finish with the old one).
    pub fn replace(&self, site: Site) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(site);
    }

    /// The current site.
    pub fn get(&self) -> Arc<Site> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Pages are self-contained: no scripts, images and CSS from the site only.
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where the daemon serves the site.
pub const MOUNT: &str = "/portfolio";

/// An axum 0.8 router serving the site at `/portfolio/`; add it with
/// `dashboard.merge(portfolio::site::router(handle))` (it carries its own
/// `/portfolio` prefix: axum's `nest` would not match `/portfolio/`).
/// `/portfolio` redirects to `/portfolio/` so relative links resolve.
pub fn router(handle: SiteHandle) -> Router {
    Router::new()
        .route(MOUNT, get(redirect_to_slash))
        .route(&format!("{MOUNT}/"), get(serve))
        .route(&format!("{MOUNT}/{{*path}}"), get(serve))
        .with_state(handle)
}

async fn redirect_to_slash() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, format!("{MOUNT}/"))],
    )
        .into_response()
}

async fn serve(State(handle): State<SiteHandle>, uri: Uri) -> Response {
    let path = uri.path().strip_prefix(MOUNT).unwrap_or("/");
    let site = handle.get();
    let (status, (content_type, bytes)) = match site.render(path) {
        Some(found) => (StatusCode::OK, found),
        None => (StatusCode::NOT_FOUND, site.not_found()),
    };
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // Images are content-addressed: cache forever. Pages change on approval.
    let cache = if path.starts_with("/img/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
