//! Static files, compiled into the binary: the vendored htmx and its SSE
//! extension (see `static/VENDORED.md`), our small script and stylesheet.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Ctx;

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "htmx-2.0.11.min.js",
        "text/javascript",
        include_bytes!("../static/htmx-2.0.11.min.js"),
    ),
    (
        "htmx-ext-sse-2.2.4.js",
        "text/javascript",
        include_bytes!("../static/htmx-ext-sse-2.2.4.js"),
    ),
    (
        "dashboard.js",
        "text/javascript",
        include_bytes!("../static/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css",
        include_bytes!("../static/dashboard.css"),
    ),
];

pub(crate) fn router() -> axum::Router<Ctx> {
    axum::Router::new().route("/static/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
