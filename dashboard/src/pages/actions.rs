//! The app page's forms: actions (each a job), config vars, secrets,
//! collaborators. Plain forms get a redirect back to the app page (303);
//! htmx requests get a fragment for `#action-result`, while the page's
//! stream shows the job's progress and the new deploy and job rows.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{error_page, is_htmx};
use crate::auth::{PageViewer, Viewer};
use crate::ops::{self, Action, ConfigVar};
use crate::{ansi, Ctx, Error};

/// Every form's fields; each handler reads the ones it needs.
#[derive(Deserialize, Default)]
pub(crate) struct AppForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    deploy: Option<String>,
    job: Option<String>,
    key: Option<String>,
    value: Option<String>,
    name: Option<String>,
    user: Option<String>,
}

fn parse_number(what: &str, s: Option<&str>) -> Result<Option<i64>, Error> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .trim_start_matches(['#', 'v'])
            .parse()
            .map(Some)
            .map_err(|_| {
                Error::BadRequest(format!(
                    "{what} must be a number, not `{}`",
                    t.escape_default()
                ))
            }),
    }
}

fn required<'a>(what: &str, s: &'a Option<String>) -> Result<&'a str, Error> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadRequest(format!("{what} is required")))
}

/// Checks the form's CSRF token and runs `work`; answers with a redirect
/// (plain form) or a fragment (htmx).
async fn handle<F>(
    v: &Viewer,
    headers: &HeaderMap,
    app: &str,
    form: Result<Form<AppForm>, FormRejection>,
    work: impl FnOnce(AppForm) -> F,
) -> Response
where
    F: std::future::Future<Output = Result<(String, String), Error>>,
{
    let result = async {
        let Form(f) =
            form.map_err(|e| Error::BadRequest(format!("the form was malformed: {e}")))?;
        v.check_csrf(f.csrf.as_deref())?;
        work(f).await
    }
    .await;
    match (result, is_htmx(headers)) {
        (Ok((_, message)), true) => {
            Html(format!("<p class=\"flash\">{}</p>", ansi::escape(&message))).into_response()
        }
        (Ok((query, _)), false) => Redirect::to(&format!("/apps/{app}?{query}")).into_response(),
        // htmx swaps only 2xx answers: the error goes into the page as text.
        (Err(e), true) => Html(format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            ansi::escape(&e.to_string())
        ))
        .into_response(),
        (Err(e), false) => error_page(Some(v), &e),
    }
}

pub(crate) async fn action(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path((app, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        if action == "cancel" {
            // Checks the app before the job number, so a foreign app is a 404.
            crate::views::visible_app(&c, &viewer, &app).await?;
            let job = parse_number("job", f.job.as_deref())?;
            let r = ops::cancel(&c, &viewer, &app, job).await?;
            return Ok(("saved=cancel".into(), r.message));
        }
        let deploy = parse_number("deploy", f.deploy.as_deref())?;
        let action = Action::parse(&action, deploy)
            .ok_or_else(|| Error::NotFound(format!("no action `{}`", action.escape_default())))?;
        let job = ops::act(&c, &viewer, &app, action).await?;
        Ok((
            format!("queued={}", job.id),
            format!("{} queued as job {}", job.kind, job.id),
        ))
    })
    .await
}

pub(crate) async fn set_config(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let key = required("the name", &f.key)?.to_string();
        let value = f.value.clone().unwrap_or_default();
        ops::set_config(
            &c,
            &viewer,
            &app,
            vec![ConfigVar {
                key: key.clone(),
                value,
            }],
        )
        .await?;
        Ok(("saved=config".into(), format!("{key} set")))
    })
    .await
}

pub(crate) async fn unset_config(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let key = required("the name", &f.key)?.to_string();
        ops::unset_config(&c, &viewer, &app, &key).await?;
        Ok(("saved=config".into(), format!("{key} removed")))
    })
    .await
}

pub(crate) async fn set_secret(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let name = required("the name", &f.name)?.to_string();
        let value = f.value.clone().unwrap_or_default();
        ops::set_secret(&c, &viewer, &app, &name, &value).await?;
        Ok(("saved=secret".into(), format!("secret {name} set")))
    })
    .await
}

pub(crate) async fn unset_secret(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let name = required("the name", &f.name)?.to_string();
        ops::unset_secret(&c, &viewer, &app, &name).await?;
        Ok(("saved=secret".into(), format!("secret {name} removed")))
    })
    .await
}

pub(crate) async fn add_collaborator(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let user = required("the user", &f.user)?.to_string();
        ops::add_collaborator(&c, &viewer, &app, &user).await?;
        Ok((
            "saved=collaborators".into(),
            format!("{user} may now push to {app}"),
        ))
    })
    .await
}

pub(crate) async fn remove_collaborator(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AppForm>, FormRejection>,
) -> Response {
    let (c, viewer) = (ctx.clone(), v.clone());
    handle(&v, &headers, &app.clone(), form, |f| async move {
        let user = required("the user", &f.user)?.to_string();
        ops::remove_collaborator(&c, &viewer, &app, &user).await?;
        Ok((
            "saved=collaborators".into(),
            format!("{user} removed from {app}"),
        ))
    })
    .await
}
