//! The JSON API under `/api/v1`: every page action, for scripts (bearer
//! tokens from `byteport tokens create`) and for the browser (session
//! cookie plus `X-CSRF-Token` on changes). The OpenAPI 3.1 document at
//! `/api/v1/openapi.json` is generated from these handlers' annotations
//! and registered with the same calls that route them, so the two cannot
//! drift. Errors are `{ "error": { "code", "message" } }`.

pub mod apps;
pub mod host;
pub mod keys;
pub mod metrics;
pub mod portfolio;

use axum::extract::rejection::JsonRejection;
use axum::routing::get;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Ctx, Error};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "BytePort API",
        description = "Apps, deploys, jobs, logs, portfolio review and the host of a BytePort server. Authenticate with `Authorization: Bearer bpt_…` (`byteport tokens create USER`). Errors are `{\"error\": {\"code\", \"message\"}}` with stable codes.",
        version = "1"
    ),
    modifiers(&Security),
    security(("token" = [])),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("bpt_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The API's routes and its OpenAPI document.
pub fn router() -> (axum::Router<Ctx>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(apps::me))
        .routes(routes!(apps::list_apps))
        .routes(routes!(apps::get_app))
        .routes(routes!(apps::list_deploys))
        .routes(routes!(apps::deploy_log))
        .routes(routes!(apps::list_jobs))
        .routes(routes!(apps::get_job))
        .routes(routes!(apps::restart))
        .routes(routes!(apps::stop))
        .routes(routes!(apps::start))
        .routes(routes!(apps::rollback))
        .routes(routes!(apps::redeploy))
        .routes(routes!(apps::cancel))
        .routes(routes!(apps::logs))
        .routes(routes!(apps::download_log))
        .routes(routes!(apps::events))
        .routes(routes!(apps::get_config, apps::set_config))
        .routes(routes!(apps::unset_config))
        .routes(routes!(apps::list_secrets))
        .routes(routes!(apps::set_secret, apps::unset_secret))
        .routes(routes!(apps::list_collaborators, apps::add_collaborator))
        .routes(routes!(apps::remove_collaborator))
        .routes(routes!(keys::list_keys, keys::add_key, keys::remove_key))
        .routes(routes!(host::get_host))
        .routes(routes!(host::gc))
        .routes(routes!(portfolio::list_reviews))
        .routes(routes!(portfolio::get_profile, portfolio::set_profile))
        .routes(routes!(portfolio::get_review))
        .routes(routes!(portfolio::get_diff))
        .routes(routes!(portfolio::edit))
        .routes(routes!(portfolio::approve))
        .routes(routes!(portfolio::reject))
        .routes(routes!(portfolio::regenerate))
        .routes(routes!(portfolio::image))
        .split_for_parts();
    let served = doc.clone();
    let router = router.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = served.clone();
            async move { Json(doc) }
        }),
    );
    (router, doc)
}

/// The OpenAPI document as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().1
}

/// A JSON body, or a `bad_request` error that says what is wrong with it.
pub(crate) fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    b.map(|Json(t)| t)
        .map_err(|e| Error::BadRequest(format!("the JSON body is wrong: {}", e.body_text())))
}
