//! `/api/v1/keys`: the caller's SSH keys.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body;
use crate::auth::ApiViewer;
use crate::error::ErrorBody;
use crate::{Ctx, Error};

/// An SSH key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// `ssh-ed25519`, …
    pub algorithm: String,
    /// The key, OpenSSH one-line form.
    pub public_key: String,
    /// Added at, Unix ms.
    pub created_at: i64,
    /// Last used to push or run a command, Unix ms.
    pub last_used_at: Option<i64>,
}

/// The caller's keys.
#[utoipa::path(get, path = "/api/v1/keys", tag = "account",
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody)))]
pub async fn list_keys(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
) -> Result<Json<Vec<KeyView>>, Error> {
    let keys = ctx.platform().store.keys_of(&v.user).await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyView {
                fingerprint: k.key.fingerprint,
                algorithm: k.key.algorithm,
                public_key: k.key.public_key,
                created_at: k.key.created_at,
                last_used_at: k.last_used_at,
            })
            .collect(),
    ))
}

/// A key to add.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewKey {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
}

/// Adds a key for the caller.
#[utoipa::path(post, path = "/api/v1/keys", tag = "account",
    request_body = NewKey,
    responses((status = 201, body = KeyView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_key(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    b: Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<KeyView>), Error> {
    let req = body(b)?;
    let k = ctx
        .platform()
        .store
        .add_key(&v.user, &req.public_key)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyView {
            fingerprint: k.fingerprint,
            algorithm: k.algorithm,
            public_key: k.public_key,
            created_at: k.created_at,
            last_used_at: None,
        }),
    ))
}

/// Which key.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Fingerprint {
    /// `SHA256:…` (fingerprints hold `/`, so it is a query parameter).
    pub fingerprint: String,
}

/// Removes one of the caller's keys.
#[utoipa::path(delete, path = "/api/v1/keys", tag = "account",
    params(Fingerprint),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn remove_key(
    State(ctx): State<Ctx>,
    ApiViewer(v): ApiViewer,
    Query(f): Query<Fingerprint>,
) -> Result<StatusCode, Error> {
    ctx.platform()
        .store
        .remove_key_of(&v.user, f.fingerprint.trim())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
