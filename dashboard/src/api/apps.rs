//! `/api/v1/apps…`: apps, deploys, jobs, actions, logs, config, secrets,
//! collaborators.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use platform::events::{Event, EventKind, OutputStream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body;
use crate::auth::ApiViewer;
use crate::error::ErrorBody;
use crate::ops::{self, Action, CancelView, ConfigVar};
use crate::views::{self, AppDetail, AppSummary, DeployView, JobView, SecretView};
use crate::{live, Ctx, Error};

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user.
    pub user: String,
    /// Sees every app and the host.
    pub operator: bool,
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(ApiViewer(v): ApiViewer) -> Json<Me> {
    Json(Me {
        user: v.user,
        operator: v.operator,
    })
}

/// The apps the caller owns or collaborates on (all, for operators).
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps",
    responses((status = 200, body = Vec<AppSummary>), (status = 401, body = ErrorBody)))]
pub async fn list_apps(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
) -> Result<Json<Vec<AppSummary>>, Error> {
    Ok(Json(views::app_list(&ctx, &v).await?))
}

/// One app: state, deploys, jobs, config, secret names, collaborators.
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = AppDetail), (status = 404, body = ErrorBody)))]
pub async fn get_app(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Json<AppDetail>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    Ok(Json(views::app_detail(&ctx, &v, &found).await?))
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Limit {
    /// How many, newest first (default 30, at most 1000).
    pub limit: Option<i64>,
}

/// Deploy history, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/deploys", tag = "deploys",
    params(("app" = String, Path, description = "the app's name"), Limit),
    responses((status = 200, body = Vec<DeployView>), (status = 404, body = ErrorBody)))]
pub async fn list_deploys(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    Query(l): Query<Limit>,
) -> Result<Json<Vec<DeployView>>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let n = l.limit.unwrap_or(30).clamp(1, 1000);
    let deploys = ctx.platform().store.list_deploys(&found.name, n).await?;
    Ok(Json(deploys.iter().map(DeployView::new).collect()))
}

/// A log line, typed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogEntry {
    /// The event id (increasing per app; resume streams after it).
    pub id: u64,
    /// When, Unix ms.
    pub at: i64,
    /// The deploy it concerns.
    pub deploy: Option<i64>,
    /// The job it belongs to.
    pub job: Option<i64>,
    /// The event's type: `app`, `request`, `vm`, `note`, `job_queued`,
    /// `job_started`, `job_progress`, `job_phase`, `job_finished`, `build_output`.
    #[serde(rename = "type")]
    pub kind: String,
    /// For `app` lines: the process.
    pub process: Option<String>,
    /// For `app` lines: `out` or `err`.
    pub stream: Option<String>,
    /// The text (raw: may hold ANSI codes; escape it before showing it as HTML).
    pub text: String,
}

impl LogEntry {
    /// From an event.
    pub fn new(e: &Event) -> LogEntry {
        let kind = live::event_type(&e.kind).to_string();
        let (process, stream, text) = match &e.kind {
            EventKind::App {
                process,
                stream,
                text,
            } => (
                Some(process.clone()),
                Some(
                    if *stream == OutputStream::Err {
                        "err"
                    } else {
                        "out"
                    }
                    .to_string(),
                ),
                text.clone(),
            ),
            EventKind::JobProgress { text } | EventKind::BuildOutput { text } => {
                (None, None, text.clone())
            }
            other => (None, None, other.describe()),
        };
        LogEntry {
            id: e.id,
            at: e.at,
            deploy: e.deploy,
            job: e.job,
            kind,
            process,
            stream,
            text,
        }
    }
}

/// A deploy with its build log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployLog {
    /// The deploy.
    pub deploy: DeployView,
    /// Its job's events: progress, build output, phases (empty once pruned).
    pub lines: Vec<LogEntry>,
}

/// A deploy's build log.
#[utoipa::path(get, path = "/api/v1/apps/{app}/deploys/{number}/log", tag = "deploys",
    params(("app" = String, Path, description = "the app's name"), ("number" = String, Path, description = "the deploy's number")),
    responses((status = 200, body = DeployLog), (status = 404, body = ErrorBody)))]
pub async fn deploy_log(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, number)): Path<(String, String)>,
) -> Result<Json<DeployLog>, Error> {
    let (_, deploy, lines) = crate::pages::deploy_events(&ctx, &v, &app, &number).await?;
    Ok(Json(DeployLog {
        deploy: DeployView::new(&deploy),
        lines: lines.iter().map(LogEntry::new).collect(),
    }))
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/jobs", tag = "jobs",
    params(("app" = String, Path, description = "the app's name"), Limit),
    responses((status = 200, body = Vec<JobView>), (status = 404, body = ErrorBody)))]
pub async fn list_jobs(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    Query(l): Query<Limit>,
) -> Result<Json<Vec<JobView>>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let n = l.limit.unwrap_or(30).clamp(1, 1000);
    let rows = ctx.platform().store.list_jobs(&found.name, n).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| JobView::new(&platform::Job::from_row(r)))
            .collect(),
    ))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/apps/{app}/jobs/{id}", tag = "jobs",
    params(("app" = String, Path, description = "the app's name"), ("id" = i64, Path, description = "the job's id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, id)): Path<(String, String)>,
) -> Result<Json<JobView>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let id: i64 = id.parse().map_err(|_| {
        Error::NotFound(format!("{} has no job {}", found.name, id.escape_default()))
    })?;
    let job = ctx
        .platform()
        .job(&found.name, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("{} has no job {id}", found.name)))?;
    Ok(Json(JobView::new(&job)))
}

async fn queue(
    ctx: &Ctx,
    v: &crate::auth::Viewer,
    app: &str,
    action: Action,
) -> Result<Response, Error> {
    let job = ops::act(ctx, v, app, action).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// Boots a fresh VM of the live deploy (today's config and secrets) and switches to it.
#[utoipa::path(post, path = "/api/v1/apps/{app}/restart", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody)))]
pub async fn restart(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    queue(&ctx, &v, &app, Action::Restart).await
}

/// Stops serving the app until it is started.
#[utoipa::path(post, path = "/api/v1/apps/{app}/stop", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    queue(&ctx, &v, &app, Action::Stop).await
}

/// Starts a stopped app on its live deploy.
#[utoipa::path(post, path = "/api/v1/apps/{app}/start", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody)))]
pub async fn start(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    queue(&ctx, &v, &app, Action::Start).await
}

/// Which deploy to roll back to.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// The deploy's number (default: the previous live one).
    pub deploy: Option<i64>,
}

/// Runs an earlier deploy's artifact again as a new deploy.
#[utoipa::path(post, path = "/api/v1/apps/{app}/rollback", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    request_body(content = Option<RollbackRequest>, description = "optional; empty body = previous live deploy"),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    headers: HeaderMap,
    b: axum::body::Bytes,
) -> Result<Response, Error> {
    let req: RollbackRequest = if b.is_empty() {
        RollbackRequest::default()
    } else {
        let _ = headers;
        serde_json::from_slice(&b)
            .map_err(|e| Error::BadRequest(format!("the JSON body is wrong: {e}")))?
    };
    queue(&ctx, &v, &app, Action::Rollback(req.deploy)).await
}

/// Builds and deploys the live commit again.
#[utoipa::path(post, path = "/api/v1/apps/{app}/redeploy", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 202, description = "queued", body = JobView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn redeploy(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    queue(&ctx, &v, &app, Action::Redeploy).await
}

/// Which job to cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CancelRequest {
    /// The job (default: the running one, else the oldest queued).
    pub job: Option<i64>,
}

/// Cancels a job: queued ones never run, running ones stop before their switch.
#[utoipa::path(post, path = "/api/v1/apps/{app}/cancel", tag = "actions",
    params(("app" = String, Path, description = "the app's name")),
    request_body(content = Option<CancelRequest>, description = "optional; empty body = the running job"),
    responses((status = 200, body = CancelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: axum::body::Bytes,
) -> Result<Json<CancelView>, Error> {
    let req: CancelRequest = if b.is_empty() {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&b)
            .map_err(|e| Error::BadRequest(format!("the JSON body is wrong: {e}")))?
    };
    views::visible_app(&ctx, &v, &app).await?;
    Ok(Json(ops::cancel(&ctx, &v, &app, req.job).await?))
}

/// Which runtime log lines.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogQuery {
    /// How many of the last lines (default 100, at most 10 000).
    pub n: Option<usize>,
    /// Only this process (`web`, `router`, `byteport`, a worker).
    pub process: Option<String>,
    /// Only `out` or `err`.
    pub stream: Option<String>,
}

/// The runtime log's last lines (app output, requests, BytePort's events).
#[utoipa::path(get, path = "/api/v1/apps/{app}/logs", tag = "logs",
    params(("app" = String, Path, description = "the app's name"), LogQuery),
    responses((status = 200, body = Vec<LogEntry>), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Vec<LogEntry>>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let n = q.n.unwrap_or(100).min(10_000);
    let events = ctx.platform().events.clone();
    let (process, stream) = (q.process, q.stream);
    let entries = tokio::task::spawn_blocking(move || {
        let keep = |e: &Event| {
            e.kind.is_runtime_log() && {
                let l = LogEntry::new(e);
                let p = l.process.as_deref().unwrap_or(match e.kind {
                    EventKind::Request { .. } => "router",
                    _ => "byteport",
                });
                process.as_deref().is_none_or(|w| w == p)
                    && stream
                        .as_deref()
                        .is_none_or(|w| w == l.stream.as_deref().unwrap_or("out"))
            }
        };
        let (tail, _) = events.tail(&found.name, n, keep);
        tail.iter().map(|e| LogEntry::new(e)).collect::<Vec<_>>()
    })
    .await
    .map_err(|e| Error::internal("reading the log", &e))?;
    Ok(Json(entries))
}

/// The whole runtime log the journal keeps, as text.
#[utoipa::path(get, path = "/api/v1/apps/{app}/logs/download", tag = "logs",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, description = "the log", content_type = "text/plain"), (status = 404, body = ErrorBody)))]
pub async fn download_log(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Response, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    Ok(crate::pages::full_log(&ctx, &found.name))
}

/// Where to resume a stream.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AfterQuery {
    /// Resume after this event id (a `Last-Event-ID` header wins); default: only new events.
    pub after: Option<u64>,
}

/// The app's events as Server-Sent Events: each event as JSON, its type
/// as the SSE event name, its id as the SSE id; `skipped` when the reader
/// fell behind.
#[utoipa::path(get, path = "/api/v1/apps/{app}/events", tag = "logs",
    params(("app" = String, Path, description = "the app's name"), AfterQuery),
    responses((status = 200, description = "an SSE stream", content_type = "text/event-stream"), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    Query(q): Query<AfterQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let after = live::resume_point(&headers, q.after);
    Ok(live::api_events(ctx, &v, found.name, after).into_response())
}

/// The app's config vars.
#[utoipa::path(get, path = "/api/v1/apps/{app}/config", tag = "config",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = BTreeMap<String, String>), (status = 404, body = ErrorBody)))]
pub async fn get_config(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Json<BTreeMap<String, String>>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    Ok(Json(ctx.platform().store.config_vars(&found.name).await?))
}

/// Config vars to set.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetConfig {
    /// NAME → value; all or nothing.
    pub vars: BTreeMap<String, String>,
}

/// Sets config vars (applied on the next deploy or restart).
#[utoipa::path(put, path = "/api/v1/apps/{app}/config", tag = "config",
    params(("app" = String, Path, description = "the app's name")),
    request_body = SetConfig,
    responses((status = 200, body = BTreeMap<String, String>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_config(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: Result<Json<SetConfig>, JsonRejection>,
) -> Result<Json<BTreeMap<String, String>>, Error> {
    views::visible_app(&ctx, &v, &app).await?;
    let req = body(b)?;
    let vars = req
        .vars
        .into_iter()
        .map(|(key, value)| ConfigVar { key, value })
        .collect();
    ops::set_config(&ctx, &v, &app, vars).await?;
    Ok(Json(ctx.platform().store.config_vars(&app).await?))
}

/// Removes a config var.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/config/{key}", tag = "config",
    params(("app" = String, Path, description = "the app's name"), ("key" = String, Path, description = "the var")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn unset_config(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, key)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    ops::unset_config(&ctx, &v, &app, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Secret names and when each was set (never values).
#[utoipa::path(get, path = "/api/v1/apps/{app}/secrets", tag = "config",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = Vec<SecretView>), (status = 404, body = ErrorBody)))]
pub async fn list_secrets(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Json<Vec<SecretView>>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    let list = ctx.platform().store.secrets_info(&found.name).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| SecretView {
                name: s.name,
                updated_at: s.updated_at,
            })
            .collect(),
    ))
}

/// A secret's value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SecretValue {
    /// Sealed at rest; never returned.
    pub value: String,
}

/// Sets a secret (write-only).
#[utoipa::path(put, path = "/api/v1/apps/{app}/secrets/{name}", tag = "config",
    params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "the secret")),
    request_body = SecretValue,
    responses((status = 204, description = "set"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_secret(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, name)): Path<(String, String)>,
    b: Result<Json<SecretValue>, JsonRejection>,
) -> Result<StatusCode, Error> {
    views::visible_app(&ctx, &v, &app).await?;
    let req = body(b)?;
    ops::set_secret(&ctx, &v, &app, &name, &req.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a secret.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/secrets/{name}", tag = "config",
    params(("app" = String, Path, description = "the app's name"), ("name" = String, Path, description = "the secret")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn unset_secret(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, name)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    ops::unset_secret(&ctx, &v, &app, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An app's owner and collaborators.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collaborators {
    /// The owner.
    pub owner: String,
    /// Users who may also push.
    pub collaborators: Vec<String>,
}

/// Who may push to the app.
#[utoipa::path(get, path = "/api/v1/apps/{app}/collaborators", tag = "collaborators",
    params(("app" = String, Path, description = "the app's name")),
    responses((status = 200, body = Collaborators), (status = 404, body = ErrorBody)))]
pub async fn list_collaborators(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
) -> Result<Json<Collaborators>, Error> {
    let found = views::visible_app(&ctx, &v, &app).await?;
    Ok(Json(Collaborators {
        owner: found.owner,
        collaborators: found.collaborators,
    }))
}

/// A user to add.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserRequest {
    /// The user's name.
    pub user: String,
}

/// Adds a collaborator (the owner or an operator only).
#[utoipa::path(post, path = "/api/v1/apps/{app}/collaborators", tag = "collaborators",
    params(("app" = String, Path, description = "the app's name")),
    request_body = UserRequest,
    responses((status = 200, body = Collaborators), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_collaborator(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path(app): Path<String>,
    b: Result<Json<UserRequest>, JsonRejection>,
) -> Result<Json<Collaborators>, Error> {
    views::visible_app(&ctx, &v, &app).await?;
    let req = body(b)?;
    ops::add_collaborator(&ctx, &v, &app, &req.user).await?;
    let found = views::visible_app(&ctx, &v, &app).await?;
    Ok(Json(Collaborators {
        owner: found.owner,
        collaborators: found.collaborators,
    }))
}

/// Removes a collaborator (the owner or an operator only).
#[utoipa::path(delete, path = "/api/v1/apps/{app}/collaborators/{user}", tag = "collaborators",
    params(("app" = String, Path, description = "the app's name"), ("user" = String, Path, description = "the collaborator")),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_collaborator(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Path((app, user)): Path<(String, String)>,
) -> Result<StatusCode, Error> {
    ops::remove_collaborator(&ctx, &v, &app, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
