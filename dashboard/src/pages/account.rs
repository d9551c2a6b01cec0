//! The SSH keys page (paste to add, list with fingerprints and last use,
//! remove) and the operators' Host page (doctor, VMs, disk, gc).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{error_page, html, Nav};
use crate::auth::{PageViewer, Viewer};
use crate::host::{self, HostCheck};
use crate::views::{fmt_bytes, fmt_duration};
use crate::{Ctx, Error};

pub(crate) struct KeyRow {
    pub fingerprint: String,
    pub algorithm: String,
    pub added: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct Keys {
    nav: Option<Nav>,
    flash: Option<String>,
    keys: Vec<KeyRow>,
    csrf: String,
    sessions: usize,
}

async fn keys_page(ctx: &Ctx, v: &Viewer, flash: Option<String>) -> Result<Response, Error> {
    let store = &ctx.platform().store;
    let keys = store
        .keys_of(&v.user)
        .await?
        .into_iter()
        .map(|k| KeyRow {
            fingerprint: k.key.fingerprint,
            algorithm: k.key.algorithm,
            added: platform::time::fmt_time(k.key.created_at),
            last_used: k
                .last_used_at
                .map(platform::time::fmt_time)
                .unwrap_or_else(|| "never".into()),
        })
        .collect();
    let sessions = store.sessions_of(&v.user).await?.len();
    Ok(html(&Keys {
        nav: Nav::of(v),
        flash,
        keys,
        csrf: v.csrf().to_string(),
        sessions,
    }))
}

pub(crate) async fn keys(State(ctx): State<Ctx>, PageViewer(v): PageViewer) -> Response {
    keys_page(&ctx, &v, None)
        .await
        .unwrap_or_else(|e| error_page(Some(&v), &e))
}

#[derive(Deserialize)]
pub(crate) struct KeyForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    public_key: Option<String>,
    fingerprint: Option<String>,
}

pub(crate) async fn add_key(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) =
            form.map_err(|e| Error::BadRequest(format!("the form was malformed: {e}")))?;
        v.check_csrf(f.csrf.as_deref())?;
        let key = ctx
            .platform()
            .store
            .add_key(&v.user, f.public_key.as_deref().unwrap_or_default())
            .await?;
        keys_page(
            &ctx,
            &v,
            Some(format!("Added {} key {}", key.algorithm, key.fingerprint)),
        )
        .await
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}

pub(crate) async fn remove_key(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let result = async {
        let Form(f) =
            form.map_err(|e| Error::BadRequest(format!("the form was malformed: {e}")))?;
        v.check_csrf(f.csrf.as_deref())?;
        let fp = f.fingerprint.unwrap_or_default();
        ctx.platform()
            .store
            .remove_key_of(&v.user, fp.trim())
            .await?;
        Ok::<_, Error>(Redirect::to("/keys").into_response())
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}

pub(crate) struct VmRow {
    pub app: String,
    pub deploy: i64,
    pub vm: String,
    pub pid: Option<u32>,
    pub uptime: String,
    pub cpu_percent: f64,
    pub cpu_time: String,
    pub memory: String,
}

pub(crate) struct DiskRow {
    pub repos: String,
    pub artifacts: String,
    pub caches: String,
    pub logs: String,
    pub vms: String,
}

#[derive(Template)]
#[template(path = "host.html")]
struct Host {
    nav: Option<Nav>,
    flash: Option<String>,
    driver: String,
    checks: Vec<HostCheck>,
    vms: Vec<VmRow>,
    disk: DiskRow,
    csrf: String,
}

/// Refuses non-operators with a 404: the Host page's existence is no secret,
/// but nothing on it is theirs.
pub(crate) fn require_operator(v: &Viewer) -> Result<(), Error> {
    if v.operator {
        Ok(())
    } else {
        Err(Error::NotFound("no such page".into()))
    }
}

async fn host_page(ctx: &Ctx, v: &Viewer, flash: Option<String>) -> Result<Response, Error> {
    require_operator(v)?;
    let view = crate::api::host::host_view(ctx).await?;
    Ok(html(&Host {
        nav: Nav::of(v),
        flash,
        driver: view.driver,
        checks: view.checks,
        vms: view
            .vms
            .into_iter()
            .map(|u| VmRow {
                uptime: fmt_duration(u.uptime_secs),
                cpu_time: format!("{:.1} s", u.cpu_secs),
                memory: fmt_bytes(u.rss_bytes),
                app: u.app,
                deploy: u.deploy,
                vm: u.vm,
                pid: u.pid,
                cpu_percent: u.cpu_percent,
            })
            .collect(),
        disk: DiskRow {
            repos: fmt_bytes(view.disk.repos),
            artifacts: fmt_bytes(view.disk.artifacts),
            caches: fmt_bytes(view.disk.caches),
            logs: fmt_bytes(view.disk.logs),
            vms: fmt_bytes(view.disk.vms),
        },
        csrf: v.csrf().to_string(),
    }))
}

pub(crate) async fn host(State(ctx): State<Ctx>, PageViewer(v): PageViewer) -> Response {
    host_page(&ctx, &v, None)
        .await
        .unwrap_or_else(|e| error_page(Some(&v), &e))
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
}

pub(crate) async fn gc(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let result = async {
        require_operator(&v)?;
        let Form(f) =
            form.map_err(|e| Error::BadRequest(format!("the form was malformed: {e}")))?;
        v.check_csrf(f.csrf.as_deref())?;
        let r = host::gc(ctx.platform()).await?;
        let flash = format!(
            "Removed {} artifacts ({}); kept {}.",
            r.removed,
            fmt_bytes(r.freed_bytes),
            r.kept
        );
        host_page(&ctx, &v, Some(flash)).await
    }
    .await;
    result.unwrap_or_else(|e| error_page(Some(&v), &e))
}
