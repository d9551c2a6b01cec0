//! One error type for every handler, with a stable machine code: the API
//! answers `{ "error": { "code", "message" } }`, pages show the message on
//! an error page. Internal failures are logged with their cause and shown
//! as "internal error" only — never a stack of store details.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use platform::jobs::JobError;
use platform::store::StoreError;
use serde::Serialize;

/// Why a request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Unknown, or not yours (the same answer, so nobody learns which).
    #[error("{0}")]
    NotFound(String),
    /// No valid session or token.
    #[error("sign in first (or send a token: Authorization: Bearer bpt_…)")]
    Unauthorized,
    /// Signed in, but this needs more (an operator, the app's owner).
    #[error("{0}")]
    Forbidden(String),
    /// The form or body is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the app's state (no live deploy, …).
    #[error("{0}")]
    Conflict(String),
    /// Too many sign-in attempts.
    #[error("{0}")]
    RateLimited(String),
    /// A state-changing request without this session's CSRF token.
    #[error(
        "this form has expired or did not come from this dashboard; reload the page and try again"
    )]
    Csrf,
    /// A part of BytePort this request needs is not running on this host
    /// (e.g. the portfolio without its image directory).
    #[error("{0}")]
    Unavailable(String),
    /// BytePort failed; the log has the cause.
    #[error("internal error; the daemon's log has the cause")]
    Internal,
}

impl Error {
    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::BadRequest(_) => "bad_request",
            Error::Conflict(_) => "conflict",
            Error::RateLimited(_) => "rate_limited",
            Error::Csrf => "csrf_failed",
            Error::Unavailable(_) => "unavailable",
            Error::Internal => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Csrf => StatusCode::FORBIDDEN,
            Error::BadRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The 404 every unknown or foreign app gets.
    pub fn no_app(app: &str) -> Error {
        Error::NotFound(format!("no app named `{}`", app.escape_default()))
    }

    /// Logs an internal failure and hides it.
    pub(crate) fn internal(context: &str, e: &dyn std::error::Error) -> Error {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(context, error = %text, "dashboard request failed");
        Error::Internal
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::NotFound { .. } => Error::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } => Error::Conflict(e.to_string()),
            StoreError::Invalid(m) => Error::BadRequest(m),
            other => Error::internal("store", &other),
        }
    }
}

impl From<JobError> for Error {
    fn from(e: JobError) -> Error {
        match e {
            JobError::Rejected { message } => Error::Conflict(message),
            other => Error::internal("job queue", &other),
        }
    }
}

/// The JSON body of every API error.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// `code` is stable; `message` is for people.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `not_found`, `unauthorized`, `forbidden`, `bad_request`, `conflict`,
    /// `rate_limited`, `csrf_failed`, `unavailable`, `internal`, `no_route`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

pub(crate) fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
        },
    };
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"byteport\""),
        );
    }
    r
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        json_error(self.status(), self.code(), self.to_string())
    }
}

/// Unknown paths: JSON under `/api/` (code `no_route`), a page elsewhere.
pub(crate) async fn fallback(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        json_error(
            StatusCode::NOT_FOUND,
            "no_route",
            format!(
                "no API endpoint at {}; see /api/v1/openapi.json",
                uri.path().escape_default()
            ),
        )
    } else {
        crate::pages::error_page(None, &Error::NotFound("no such page".into()))
    }
}
