//! The portfolio review pages: the list of the viewer's apps with drafts,
//! an app's review page (screenshots, the text as an edit form, facts,
//! who drafted it, the diff against the published version, approve /
//! reject / regenerate, live progress of portfolio jobs), and the site's
//! profile for operators. Every change is a POST with the session's CSRF
//! token; the actions themselves live in [`crate::review`], shared with
//! the API.

use std::collections::HashSet;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use platform::events::EventId;
use serde::Deserialize;

use super::{error_page, html, is_htmx, Nav};
use crate::auth::{PageViewer, Viewer};
use crate::review::live::{JobEnd, PORTFOLIO_JOB};
use crate::review::views::{diff_lines, DiffLine};
use crate::review::{
    self, validate, Against, EditRequest, ProfileBody, ReviewSummary, VersionView,
};
use crate::views::JobView;
use crate::{ansi, Ctx, Error};

#[derive(Template)]
#[template(path = "review_list.html")]
struct ReviewList {
    nav: Option<Nav>,
    flash: Option<String>,
    rows: Vec<ReviewSummary>,
    operator: bool,
}

pub(crate) async fn list(State(ctx): State<Ctx>, PageViewer(v): PageViewer) -> Response {
    match review::list(&ctx, &v).await {
        Ok(rows) => html(&ReviewList {
            nav: Nav::of(&v),
            flash: None,
            rows,
            operator: v.operator,
        }),
        Err(e) => error_page(Some(&v), &e),
    }
}

#[derive(Template)]
#[template(path = "review_versions.html")]
struct Versions<'a> {
    app: &'a str,
    versions: &'a [VersionView],
    shown_number: u32,
}

#[derive(Template)]
#[template(path = "review_notice.html")]
struct Notice<'a> {
    app: &'a str,
    job: Option<JobEnd>,
    newest: Option<&'a VersionView>,
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    nav: Option<Nav>,
    flash: Option<String>,
    app: String,
    csrf: String,
    after: EventId,
    /// The version shown (default: the draft waiting, else the newest).
    shown: Option<VersionView>,
    is_newest: bool,
    shown_number: u32,
    published: Option<u32>,
    pending: Option<u32>,
    /// Newest first.
    versions: Vec<VersionView>,
    diff: Vec<DiffLine>,
    diff_against: String,
    job_lines: Vec<String>,
    job_id: Option<i64>,
    regenerate_blocked: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ReviewQuery {
    version: Option<String>,
    saved: Option<String>,
    queued: Option<i64>,
}

fn flash_text(q: &ReviewQuery) -> Option<String> {
    if let Some(id) = q.queued {
        return Some(format!(
            "Portfolio job {id} queued; its progress shows below."
        ));
    }
    Some(
        match q.saved.as_deref()? {
            "edited" => "Saved as a new version; approve it to publish it.",
            "approved" => "Approved: this version is on the portfolio site now.",
            "rejected" => "Rejected: the published page (if any) stays as it was.",
            _ => return None,
        }
        .into(),
    )
}

fn parse_version(s: Option<&str>) -> Result<Option<u32>, Error> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .trim_start_matches(['v', '#'])
            .parse()
            .map(Some)
            .map_err(|_| {
                Error::BadRequest(format!(
                    "`{}` is not a version number (e.g. 3 or v3)",
                    t.escape_default()
                ))
            }),
    }
}

/// The newest `portfolio` job of `app` and its lines up to `after`.
async fn latest_job(
    ctx: &Ctx,
    app: &str,
    after: EventId,
) -> Result<(Option<i64>, Vec<String>, HashSet<i64>), Error> {
    let rows = ctx.platform().store.list_jobs(app, 50).await?;
    let jobs: Vec<platform::Job> = rows
        .into_iter()
        .filter(|r| r.kind == PORTFOLIO_JOB)
        .map(platform::Job::from_row)
        .collect();
    let active = jobs
        .iter()
        .filter(|j| JobView::new(j).is_active())
        .map(|j| j.id)
        .collect();
    let Some(job) = jobs.into_iter().next() else {
        return Ok((None, Vec::new(), active));
    };
    let id = job.id;
    let (ctx2, name) = (ctx.clone(), app.to_string());
    let lines = tokio::task::spawn_blocking(move || super::app::job_lines(&ctx2, &name, &job))
        .await
        .map_err(|e| Error::internal("reading a job's log", &e))?;
    let lines = lines
        .iter()
        .filter(|e| e.id <= after)
        .map(crate::live::build_line)
        .collect();
    Ok((Some(id), lines, active))
}

pub(crate) async fn page(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    Query(q): Query<ReviewQuery>,
) -> Response {
    let result: Result<Response, Error> = async {
        let (found, versions) = review::versions(&ctx, &v, &app).await?;
        let app = found.name;
        let wanted = parse_version(q.version.as_deref())
            .map_err(|_| Error::NotFound(format!("{app} has no such portfolio version")))?;
        let shown =
            match wanted {
                Some(n) => Some(versions.iter().find(|x| x.number == n).ok_or_else(|| {
                    Error::NotFound(format!("{app} has no portfolio version {n}"))
                })?),
                None => review::pending(&versions).or(versions.last()),
            };
        let newest = versions.last().map(|x| x.number);
        let (diff, diff_against) = match shown {
            Some(s) => {
                let d = review::diff_of(&app, &versions, Some(s.number), Against::Published)?;
                let against = match d.against {
                    Some(n) if n == s.number => "itself (this is the published version)".into(),
                    Some(n) => format!("the published version, v{n}"),
                    None => "nothing (no version is published yet)".into(),
                };
                (diff_lines(&d.unified), against)
            }
            None => (Vec::new(), String::new()),
        };
        let after = ctx.platform().events.last_id(&app);
        let (job_id, job_lines, _) = latest_job(&ctx, &app, after).await?;
        let regenerate_blocked = match ctx.platform().store.live_deploy(&app).await? {
            Some(_) => None,
            None => Some("no live deploy to draft a page from; push a commit first".into()),
        };
        Ok(html(&ReviewPage {
            nav: Nav::of(&v),
            flash: flash_text(&q),
            csrf: v.csrf().to_string(),
            after,
            is_newest: shown.map(|s| s.number) == newest,
            shown_number: shown.map_or(0, |s| s.number),
            shown: shown.map(VersionView::new),
            published: review::published(&versions).map(|x| x.number),
            pending: review::pending(&versions).map(|x| x.number),
            versions: versions.iter().rev().map(VersionView::new).collect(),
            diff,
            diff_against,
            job_lines,
            job_id,
            regenerate_blocked,
            app,
        }))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}

/// The versions table and the notice the live stream sends after a
/// portfolio job ends.
pub(crate) async fn review_fragments(
    ctx: &Ctx,
    viewer: &Viewer,
    app: &str,
    job: Option<JobEnd>,
) -> Result<(String, String), Error> {
    let (found, versions) = review::versions(ctx, viewer, app).await?;
    let views: Vec<VersionView> = versions.iter().rev().map(VersionView::new).collect();
    let render = |e: askama::Error| Error::internal("rendering the review page", &e);
    let table = Versions {
        app: &found.name,
        versions: &views,
        shown_number: 0,
    }
    .render()
    .map_err(render)?;
    let notice = Notice {
        app: &found.name,
        job,
        newest: views.first(),
    }
    .render()
    .map_err(render)?;
    Ok((table, notice))
}

pub(crate) async fn live(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    Query(q): Query<AfterQuery>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let (found, _) = review::versions(&ctx, &v, &app).await?;
        let after = crate::live::resume_point(&headers, q.after);
        let active = ctx.platform().store.active_jobs(&found.name).await?;
        let jobs = active
            .into_iter()
            .filter(|r| r.kind == PORTFOLIO_JOB)
            .map(|r| r.id)
            .collect();
        Ok::<_, Error>(
            crate::review::live::review_page(ctx.clone(), v.clone(), found.name, after, jobs)
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

#[derive(Deserialize)]
pub(crate) struct AfterQuery {
    after: Option<EventId>,
}

/// The review forms' fields; each action reads the ones it needs.
#[derive(Deserialize, Default)]
pub(crate) struct ReviewForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    version: Option<String>,
    base: Option<String>,
    title: Option<String>,
    summary: Option<String>,
    body: Option<String>,
    tags: Option<String>,
}

/// The page's edit form sends every field; only the ones that differ
/// from the version it was made from become the edit (so the new
/// version's "what changed" is true).
async fn page_edit(ctx: &Ctx, v: &Viewer, app: &str, f: &ReviewForm) -> Result<u32, Error> {
    let base = parse_version(f.base.as_deref())?;
    let (_, versions) = review::versions(ctx, v, app).await?;
    let from = match base {
        Some(n) => versions.iter().find(|x| x.number == n),
        None => versions.last(),
    };
    let differs = |new: &Option<String>, old: &str| {
        new.as_ref()
            .map(|t| t.replace("\r\n", "\n"))
            .filter(|t| from.is_none_or(|_| t.trim() != old.trim()))
    };
    let text = from.map(|x| x.text.clone()).unwrap_or_default();
    let tags = f
        .tags
        .as_deref()
        .map(validate::split_tags)
        .filter(|t| from.is_none() || *t != text.tags);
    let req = EditRequest {
        base,
        title: differs(&f.title, &text.title),
        summary: differs(&f.summary, &text.summary),
        body: differs(&f.body, &text.body),
        tags,
    };
    if req.title.is_none() && req.summary.is_none() && req.body.is_none() && req.tags.is_none() {
        return Err(Error::BadRequest(
            "nothing was changed: edit the title, summary, body or tags first".into(),
        ));
    }
    Ok(review::edit(ctx, v, app, &req).await?.number)
}

/// Plain forms get a redirect back to the review page; htmx gets a
/// fragment (regenerate: the job; the others: a full reload to the new
/// state, since the whole page changes).
pub(crate) async fn action(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path((app, action)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ReviewForm>, FormRejection>,
) -> Response {
    let result: Result<(String, String), Error> = async {
        let Form(f) =
            form.map_err(|e| Error::BadRequest(format!("the form was malformed: {e}")))?;
        v.check_csrf(f.csrf.as_deref())?;
        let version = parse_version(f.version.as_deref())?;
        match action.as_str() {
            "approve" => {
                let x = review::approve(&ctx, &v, &app, version).await?;
                Ok((
                    format!("saved=approved&version={}", x.number),
                    String::new(),
                ))
            }
            "reject" => {
                let x = review::reject(&ctx, &v, &app, version).await?;
                Ok((
                    format!("saved=rejected&version={}", x.number),
                    String::new(),
                ))
            }
            "edit" => {
                let n = page_edit(&ctx, &v, &app, &f).await?;
                Ok((format!("saved=edited&version={n}"), String::new()))
            }
            "regenerate" => {
                let job = review::regenerate(&ctx, &v, &app).await?;
                Ok((
                    format!("queued={}", job.id),
                    format!(
                        "portfolio queued as job {}; its progress shows below",
                        job.id
                    ),
                ))
            }
            other => {
                // Checks the app first, so a foreign app stays a 404.
                crate::views::visible_app(&ctx, &v, &app).await?;
                Err(Error::NotFound(format!(
                    "no action `{}`",
                    other.escape_default()
                )))
            }
        }
    }
    .await;
    let back = |query: &str| format!("/apps/{app}/portfolio?{query}");
    match (result, is_htmx(&headers)) {
        (Ok((_, message)), true) if !message.is_empty() => {
            Html(format!("<p class=\"flash\">{}</p>", ansi::escape(&message))).into_response()
        }
        (Ok((query, _)), true) => {
            let mut r = Html(String::new()).into_response();
            if let Ok(to) = HeaderValue::from_str(&back(&query)) {
                r.headers_mut().insert("hx-redirect", to);
            }
            r
        }
        (Ok((query, _)), false) => Redirect::to(&back(&query)).into_response(),
        // htmx swaps only 2xx answers: the error goes into the page as text.
        (Err(e), true) => Html(format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            ansi::escape(&e.to_string())
        ))
        .into_response(),
        (Err(e), false) => error_page(Some(&v), &e),
    }
}

#[derive(Template)]
#[template(path = "review_profile.html")]
struct ProfilePage {
    nav: Option<Nav>,
    flash: Option<String>,
    csrf: String,
    p: ProfileBody,
    links_text: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct SavedQuery {
    saved: Option<String>,
}

pub(crate) async fn profile(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Query(q): Query<SavedQuery>,
) -> Response {
    match review::profile(&ctx, &v).await {
        Ok(p) => html(&ProfilePage {
            nav: Nav::of(&v),
            flash: q
                .saved
                .is_some()
                .then(|| "Profile saved; the site is rebuilt.".to_string()),
            csrf: v.csrf().to_string(),
            links_text: p.links_text(),
            p,
            error: None,
        }),
        Err(e) => error_page(Some(&v), &e),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ProfileForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    name: Option<String>,
    bio: Option<String>,
    site_url: Option<String>,
    site_title: Option<String>,
    links: Option<String>,
}

pub(crate) async fn save_profile(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    form: Result<Form<ProfileForm>, FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            let e = Error::BadRequest(format!("the form was malformed: {e}"));
            return error_page(Some(&v), &e);
        }
    };
    // CSRF first, then "operators only": nothing else is looked at before.
    if let Err(e) = v.check_csrf(f.csrf.as_deref()) {
        return error_page(Some(&v), &e);
    }
    if let Err(e) = review::profile(&ctx, &v).await {
        return error_page(Some(&v), &e);
    }
    let links_text = f.links.unwrap_or_default();
    let typed = ProfileBody {
        name: f.name.unwrap_or_default(),
        bio: f.bio.unwrap_or_default(),
        links: Vec::new(),
        site_url: f.site_url.unwrap_or_default(),
        site_title: f.site_title,
    };
    let saved = match validate::parse_links(&links_text) {
        Ok(links) => {
            let body = ProfileBody {
                links,
                ..typed.clone()
            };
            review::set_profile(&ctx, &v, &body).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Redirect::to("/review/profile?saved=1").into_response(),
        // A bad profile: the form again, with what was typed and why.
        Err(e @ Error::BadRequest(_)) => (
            e.status(),
            html(&ProfilePage {
                nav: Nav::of(&v),
                flash: None,
                csrf: v.csrf().to_string(),
                links_text,
                p: typed,
                error: Some(e.to_string()),
            }),
        )
            .into_response(),
        Err(e) => error_page(Some(&v), &e),
    }
}
