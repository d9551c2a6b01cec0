//! `/metrics`: Prometheus text, for operators (session or API token) and
//! for tokens with the `metrics` scope.

use axum::extract::State;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::auth::{self, Via};
use crate::{Ctx, Error};

pub(crate) async fn metrics(State(ctx): State<Ctx>, parts: Parts) -> Response {
    let allowed = match auth::resolve(&ctx, &parts).await {
        Ok(Some(v)) => {
            v.operator
                || matches!(
                    v.via,
                    Via::Token {
                        scope: platform::store::TokenScope::Metrics,
                        ..
                    }
                )
        }
        Ok(None) => return Error::Unauthorized.into_response(),
        Err(e) => return e.into_response(),
    };
    if !allowed {
        return Error::Forbidden("metrics are for operators and metrics tokens (`byteport tokens create USER --metrics`)".into()).into_response();
    }
    let platform = ctx.platform();
    let queued = match platform.store.queue_length().await {
        Ok(n) => n + platform.queue.running_ids().len() as i64,
        Err(e) => return Error::from(e).into_response(),
    };
    let text = platform::metrics::metrics().render(queued, platform.status().len() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
