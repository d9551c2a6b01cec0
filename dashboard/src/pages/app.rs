//! The apps list, an app's page (status, actions, build and runtime logs,
//! deploys and jobs, config, secrets, collaborators), its live stream, a
//! deploy's build log and the full log download.

use std::collections::BTreeSet;

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use platform::events::{Event, EventId, Item};
use serde::Deserialize;

use super::{error_page, html, Nav};
use crate::auth::PageViewer;
use crate::live;
use crate::views::{self, AppDetail, AppSummary};
use crate::{Ctx, Error};

/// Runtime log lines on the page when it loads.
pub(crate) const TAIL_LINES: usize = 300;

#[derive(Template)]
#[template(path = "apps.html")]
struct Apps {
    nav: Option<Nav>,
    flash: Option<String>,
    apps: Vec<AppSummary>,
    show_owner: bool,
}

pub(crate) async fn list(State(ctx): State<Ctx>, PageViewer(v): PageViewer) -> Response {
    match views::app_list(&ctx, &v).await {
        Ok(apps) => html(&Apps {
            nav: Nav::of(&v),
            flash: None,
            apps,
            show_owner: v.operator,
        }),
        Err(e) => error_page(Some(&v), &e),
    }
}

pub(crate) async fn list_live(State(ctx): State<Ctx>, PageViewer(v): PageViewer) -> Response {
    match views::visible_apps(&ctx, &v).await {
        Ok(apps) => {
            let names = apps.into_iter().map(|a| a.name).collect();
            live::apps_page(ctx, v, names).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A secret as the page lists it.
pub(crate) struct SecretRow {
    pub name: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    nav: Option<Nav>,
    flash: Option<String>,
    d: AppDetail,
    csrf: String,
    after: EventId,
    log_lines: Vec<String>,
    build_lines: Vec<String>,
    build_job: Option<i64>,
    processes: Vec<String>,
    filter_process: String,
    filter_stream: String,
    secrets: Vec<SecretRow>,
}

#[derive(Deserialize, Default)]
pub(crate) struct DetailQuery {
    process: Option<String>,
    stream: Option<String>,
    queued: Option<i64>,
    saved: Option<String>,
}

fn flash_text(q: &DetailQuery) -> Option<String> {
    if let Some(id) = q.queued {
        return Some(format!("Job {id} queued; its progress shows below."));
    }
    match q.saved.as_deref() {
        Some("config") => Some("Config saved; it applies on the next deploy or restart.".into()),
        Some("secret") => Some("Secret saved; it applies on the next deploy or restart.".into()),
        Some("collaborators") => Some("Collaborators saved.".into()),
        Some("cancel") => Some("Cancel requested.".into()),
        _ => None,
    }
}

/// The log lines of job `id` of `app` (its progress, build output, phases).
pub(crate) fn job_lines(ctx: &Ctx, app: &str, job: &platform::Job) -> Vec<Event> {
    let Some(first) = job.first_event else {
        return Vec::new();
    };
    let last = job.last_event.map_or(EventId::MAX, |l| l as EventId);
    let id = job.id;
    ctx.platform()
        .events
        .range(app, first as EventId, last, |e| e.job == Some(id))
        .into_iter()
        .map(|e| (*e).clone())
        .collect()
}

pub(crate) async fn detail(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    let result: Result<Response, Error> = async {
        let found = views::visible_app(&ctx, &v, &app).await?;
        let d = views::app_detail(&ctx, &v, &found).await?;
        let events = ctx.platform().events.clone();
        let name = found.name.clone();
        let (tail, follower) = tokio::task::spawn_blocking(move || {
            events.tail(&name, TAIL_LINES, |e: &Event| e.kind.is_runtime_log())
        })
        .await
        .map_err(|e| Error::internal("reading the log", &e))?;
        let after = follower.last_id();
        drop(follower);
        let filter_process = q.process.clone().unwrap_or_default();
        let filter_stream = q.stream.clone().unwrap_or_default();
        let mut processes: BTreeSet<String> = ["byteport", "router"].map(String::from).into();
        let mut log_lines = Vec::new();
        for e in &tail {
            let (p, s) = match &e.kind {
                platform::EventKind::App {
                    process, stream, ..
                } => {
                    processes.insert(process.clone());
                    (
                        process.as_str(),
                        if *stream == platform::events::OutputStream::Err {
                            "err"
                        } else {
                            "out"
                        },
                    )
                }
                platform::EventKind::Request { .. } => ("router", "out"),
                _ => ("byteport", "out"),
            };
            if (filter_process.is_empty() || filter_process == p)
                && (filter_stream.is_empty() || filter_stream == s)
            {
                log_lines.push(live::log_line(e));
            }
        }
        // The build log panel starts with the running job, else the last one.
        let jobs = ctx.platform().store.list_jobs(&found.name, 1).await?;
        let (build_job, build_lines) = match jobs.into_iter().next().map(platform::Job::from_row) {
            Some(job) => {
                let ctx2 = ctx.clone();
                let name = found.name.clone();
                let id = job.id;
                let lines = tokio::task::spawn_blocking(move || job_lines(&ctx2, &name, &job))
                    .await
                    .map_err(|e| Error::internal("reading a job's log", &e))?;
                (
                    Some(id),
                    lines
                        .iter()
                        .filter(|e| e.id <= after)
                        .map(live::build_line)
                        .collect(),
                )
            }
            None => (None, Vec::new()),
        };
        let secrets = d
            .secrets
            .iter()
            .map(|s| SecretRow {
                name: s.name.clone(),
                updated: platform::time::fmt_time(s.updated_at),
            })
            .collect();
        Ok(html(&AppPage {
            nav: Nav::of(&v),
            flash: flash_text(&q),
            csrf: v.csrf().to_string(),
            d,
            after,
            log_lines,
            build_lines,
            build_job,
            processes: processes.into_iter().collect(),
            filter_process,
            filter_stream,
            secrets,
        }))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}

#[derive(Deserialize)]
pub(crate) struct AfterQuery {
    after: Option<EventId>,
}

pub(crate) async fn detail_live(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
    Query(q): Query<AfterQuery>,
    headers: HeaderMap,
) -> Response {
    match views::visible_app(&ctx, &v, &app).await {
        Ok(found) => {
            let after = live::resume_point(&headers, q.after);
            live::app_page(ctx, v, found.name, after).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The whole runtime log as text (what the journal still keeps), streamed.
pub(crate) async fn download_log(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path(app): Path<String>,
) -> Response {
    match views::visible_app(&ctx, &v, &app).await {
        Ok(found) => full_log(&ctx, &found.name),
        Err(e) => error_page(Some(&v), &e),
    }
}

/// Every runtime log line of `app` up to now, as `text/plain`, read from
/// the journal in batches (never all in memory).
pub(crate) fn full_log(ctx: &Ctx, app: &str) -> Response {
    let events = &ctx.platform().events;
    let end = events.last_id(app);
    let follower = events.follow(app, Some(0));
    let lines = futures::stream::unfold(follower, move |mut f| async move {
        if f.last_id() >= end {
            return None;
        }
        let item = f.next().await?;
        let text = match item {
            Item::Event(e) if e.id > end => return None,
            Item::Event(e) if e.kind.is_runtime_log() => format!("{}\n", e.to_line()),
            Item::Event(_) => String::new(),
            Item::Skipped(n) => format!("… {n} lines skipped\n"),
        };
        Some((Ok::<_, std::convert::Infallible>(text), f))
    })
    .filter(|r| futures::future::ready(!matches!(r, Ok(s) if s.is_empty())));
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{app}.log\""),
            ),
        ],
        Body::from_stream(lines),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "deploy_log.html")]
struct DeployLog {
    nav: Option<Nav>,
    flash: Option<String>,
    app: String,
    number: i64,
    status: String,
    failure: Option<String>,
    lines: Vec<String>,
}

pub(crate) async fn deploy_log(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    Path((app, number)): Path<(String, String)>,
) -> Response {
    let result: Result<Response, Error> = async {
        let (found, deploy, lines) = deploy_events(&ctx, &v, &app, &number).await?;
        Ok(html(&DeployLog {
            nav: Nav::of(&v),
            flash: None,
            app: found.name,
            number: deploy.number,
            status: deploy.status.as_str().to_string(),
            failure: deploy.failure_reason,
            lines: lines.iter().map(live::build_line).collect(),
        }))
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}

/// A deploy of a visible app and its job's events.
pub(crate) async fn deploy_events(
    ctx: &Ctx,
    v: &crate::auth::Viewer,
    app: &str,
    number: &str,
) -> Result<(platform::store::App, platform::store::Deploy, Vec<Event>), Error> {
    let found = views::visible_app(ctx, v, app).await?;
    let n: i64 = number.trim_start_matches(['#', 'v']).parse().map_err(|_| {
        Error::NotFound(format!(
            "{} has no deploy {}",
            found.name,
            number.escape_default()
        ))
    })?;
    let deploy = ctx
        .platform()
        .store
        .deploy(&found.name, n)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{} has no deploy #{n}", found.name)))?;
    let job = match deploy.job_id {
        Some(id) => ctx.platform().job(&found.name, id).await?,
        None => None,
    };
    let lines = match job {
        Some(job) => {
            let (ctx2, name) = (ctx.clone(), found.name.clone());
            tokio::task::spawn_blocking(move || job_lines(&ctx2, &name, &job))
                .await
                .map_err(|e| Error::internal("reading a job's log", &e))?
        }
        None => Vec::new(),
    };
    Ok((found, deploy, lines))
}
