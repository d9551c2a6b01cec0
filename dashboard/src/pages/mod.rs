//! The HTML pages: sign-in, apps, an app, a deploy's build log, SSH keys,
//! the Host page, the portfolio review. Every page works as plain HTML forms and links; htmx
//! attributes and one SSE stream per page make them live when JavaScript
//! runs. State changes are POST with the session's CSRF token.

mod account;
mod actions;
mod app;
mod review;
mod signin;

pub(crate) use account::require_operator;
pub(crate) use app::{deploy_events, full_log};
pub(crate) use review::review_fragments;

use askama::Template;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::Viewer;
use crate::views::{AppSummary, DeployView, JobView};
use crate::{Ctx, Error};

/// What the layout's navigation needs.
#[derive(Debug, Clone)]
pub(crate) struct Nav {
    pub user: String,
    pub operator: bool,
    pub csrf: String,
}

impl Nav {
    pub(crate) fn of(v: &Viewer) -> Option<Nav> {
        Some(Nav {
            user: v.user.clone(),
            operator: v.operator,
            csrf: v.csrf().to_string(),
        })
    }
}

pub(crate) fn router() -> axum::Router<Ctx> {
    axum::Router::new()
        .route("/", get(signin::root))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route("/signout/all", post(signin::signout_everywhere))
        .route("/apps", get(app::list))
        .route("/live/apps", get(app::list_live))
        .route("/apps/{app}", get(app::detail))
        .route("/apps/{app}/live", get(app::detail_live))
        .route("/apps/{app}/logs/download", get(app::download_log))
        .route("/apps/{app}/deploys/{number}/log", get(app::deploy_log))
        .route("/apps/{app}/actions/{action}", post(actions::action))
        .route("/apps/{app}/config", post(actions::set_config))
        .route("/apps/{app}/config/unset", post(actions::unset_config))
        .route("/apps/{app}/secrets", post(actions::set_secret))
        .route("/apps/{app}/secrets/unset", post(actions::unset_secret))
        .route("/apps/{app}/collaborators", post(actions::add_collaborator))
        .route(
            "/apps/{app}/collaborators/remove",
            post(actions::remove_collaborator),
        )
        .route("/review", get(review::list))
        .route(
            "/review/profile",
            get(review::profile).post(review::save_profile),
        )
        .route("/apps/{app}/portfolio", get(review::page))
        .route("/apps/{app}/portfolio/live", get(review::live))
        .route("/apps/{app}/portfolio/{action}", post(review::action))
        .route("/keys", get(account::keys).post(account::add_key))
        .route("/keys/remove", post(account::remove_key))
        .route("/host", get(account::host))
        .route("/host/gc", post(account::gc))
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: Option<Nav>,
    flash: Option<String>,
    title: &'a str,
    message: String,
}

/// An error as a page with its status.
pub(crate) fn error_page(viewer: Option<&Viewer>, e: &Error) -> Response {
    let title = match e {
        Error::NotFound(_) => "Not found",
        Error::Unauthorized => "Sign in first",
        Error::Forbidden(_) | Error::Csrf => "Not allowed",
        Error::RateLimited(_) => "Slow down",
        Error::Internal => "Something broke",
        Error::Unavailable(_) => "Not available here",
        _ => "That did not work",
    };
    let page = ErrorPage {
        nav: viewer.and_then(Nav::of),
        flash: None,
        title,
        message: e.to_string(),
    };
    (e.status(), html(&page)).into_response()
}

/// Renders a template; a template that fails to render is an internal error.
pub(crate) fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(s) => Html(s).into_response(),
        Err(e) => Error::internal("rendering a page", &e).into_response(),
    }
}

/// An htmx request (it swaps a fragment instead of following a redirect).
pub(crate) fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

#[derive(Template)]
#[template(path = "app_row.html")]
struct AppRow<'a> {
    a: &'a AppSummary,
    show_owner: bool,
}

pub(crate) fn app_row_fragment(a: &AppSummary, viewer: &Viewer) -> Result<String, askama::Error> {
    AppRow {
        a,
        show_owner: viewer.operator,
    }
    .render()
}

#[derive(Template)]
#[template(path = "history.html")]
pub(crate) struct History {
    pub app: String,
    pub deploys: Vec<DeployView>,
    pub jobs: Vec<JobView>,
    pub csrf: String,
}

pub(crate) async fn history_fragment(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &platform::store::App,
) -> Result<String, Error> {
    let (deploys, jobs) = crate::views::history(ctx, &app.name).await?;
    History {
        app: app.name.clone(),
        deploys,
        jobs,
        csrf: viewer.csrf().to_string(),
    }
    .render()
    .map_err(|e| Error::internal("rendering the history", &e))
}

#[derive(Template)]
#[template(path = "app_status.html")]
pub(crate) struct Status {
    pub s: AppSummary,
    pub csrf: String,
}

pub(crate) async fn status_fragment(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &platform::store::App,
) -> Result<String, Error> {
    let s = crate::views::summary(ctx, app, &crate::views::running(ctx)).await?;
    Status {
        s,
        csrf: viewer.csrf().to_string(),
    }
    .render()
    .map_err(|e| Error::internal("rendering the status", &e))
}
