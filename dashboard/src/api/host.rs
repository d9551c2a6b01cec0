//! `/api/v1/host` (operators): doctor, VMs, disk, gc.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ApiViewer;
use crate::error::ErrorBody;
use crate::host::{self, DiskUsage, GcReport, HostCheck, VmUsage};
use crate::{Ctx, Error};

/// The host as operators see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HostView {
    /// The runtime driver and why.
    pub driver: String,
    /// `byteport doctor`'s checks.
    pub checks: Vec<HostCheck>,
    /// Running VMs with CPU and memory.
    pub vms: Vec<VmUsage>,
    /// Disk used under `$BYTEPORT_HOME`.
    pub disk: DiskUsage,
}

/// Gathers the host's facts (doctor and du run off the async workers).
pub(crate) async fn host_view(ctx: &Ctx) -> Result<HostView, Error> {
    let info = ctx.host().clone();
    let home = ctx.platform().home().to_path_buf();
    let (checks, disk) =
        tokio::task::spawn_blocking(move || (info.doctor(), host::disk_usage(&home)))
            .await
            .map_err(|e| Error::internal("host facts", &e))?;
    Ok(HostView {
        driver: ctx.host().driver(),
        checks,
        vms: host::vm_usage(ctx.platform()),
        disk,
    })
}

/// Doctor results, running VMs, disk use (operators only; others get 404).
#[utoipa::path(get, path = "/api/v1/host", tag = "host",
    responses((status = 200, body = HostView), (status = 404, body = ErrorBody)))]
pub async fn get_host(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
) -> Result<Json<HostView>, Error> {
    crate::pages::require_operator(&v)?;
    Ok(Json(host_view(&ctx).await?))
}

/// Deletes artifacts no live or rollback-able deploy needs (operators only).
#[utoipa::path(post, path = "/api/v1/host/gc", tag = "host",
    responses((status = 200, body = GcReport), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn gc(State(ctx): State<Ctx>, ApiViewer(v): ApiViewer) -> Result<Json<GcReport>, Error> {
    crate::pages::require_operator(&v)?;
    Ok(Json(host::gc(ctx.platform()).await?))
}
