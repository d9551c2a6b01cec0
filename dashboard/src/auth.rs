//! Who is asking: a dashboard session (cookie) or an API token (bearer),
//! the CSRF token every state change from a browser carries, and the
//! sign-in rate limit.
//!
//! Sessions live in the store ([`platform::store::Session`]), so signing
//! out — or an operator deleting them — ends them everywhere at once. The
//! cookie is `HttpOnly`, `SameSite=Lax`, and `Secure` when the request
//! came over HTTPS through the trusted proxy.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use platform::store::TokenScope;

use crate::{Ctx, Error};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "bp_session";
/// The sign-in form's own CSRF cookie (before there is a session).
pub const SIGNIN_COOKIE: &str = "bp_signin";
/// The header a script or htmx sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session.
    Session {
        /// The cookie's token (to sign out).
        token: String,
        /// The token its forms must carry.
        csrf: String,
    },
    /// An API token.
    Token {
        /// Its public id.
        id: String,
        /// What it may do.
        scope: TokenScope,
    },
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The user.
    pub user: String,
    /// Sees every app and the Host page.
    pub operator: bool,
    /// How they proved it.
    pub via: Via,
}

impl Viewer {
    /// The CSRF token of a session (empty for tokens, which need none).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Token { .. } => "",
        }
    }

    /// Checks a form's CSRF token (constant time). Token requests carry
    /// no cookie a browser could be tricked into sending: they pass.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), Error> {
        match &self.via {
            Via::Token { .. } => Ok(()),
            Via::Session { csrf, .. } => match sent {
                Some(s) if constant_time_eq(s.as_bytes(), csrf.as_bytes()) => Ok(()),
                _ => Err(Error::Csrf),
            },
        }
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client's address and whether it came over HTTPS, believing the
/// trusted proxy's `X-Forwarded-*` headers and nobody else's.
pub(crate) fn client(ctx: &Ctx, parts: &Parts) -> (Option<IpAddr>, bool) {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = ctx.options().trusted_proxy;
    if peer.is_some() && peer == trusted {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let https = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        (forwarded.or(peer), https)
    } else {
        (peer, false)
    }
}

/// A `Set-Cookie` value with the attributes every cookie of ours has.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<u64>,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Finds who is asking: `Ok(None)` for nobody; a bad bearer token is an
/// error (never silently anonymous).
pub(crate) async fn resolve(ctx: &Ctx, parts: &Parts) -> Result<Option<Viewer>, Error> {
    let store = &ctx.platform().store;
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let raw = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Unauthorized)?;
        let token = store.verify_token(raw).await?.ok_or(Error::Unauthorized)?;
        let operator = store.is_operator(&token.user).await?;
        return Ok(Some(Viewer {
            user: token.user,
            operator,
            via: Via::Token {
                id: token.id,
                scope: token.scope,
            },
        }));
    }
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = store.session(token).await? else {
        return Ok(None);
    };
    let operator = store.is_operator(&session.user).await?;
    Ok(Some(Viewer {
        user: session.user,
        operator,
        via: Via::Session {
            token: token.to_string(),
            csrf: session.csrf,
        },
    }))
}

/// Is `viewer` still who they were when their request was let in: the
/// session not ended (sign-out, "sign out everywhere", expiry), the token
/// not revoked. A store error keeps the stream (it is not a revocation).
pub(crate) async fn still_signed_in(ctx: &Ctx, viewer: &Viewer) -> bool {
    let store = &ctx.platform().store;
    match &viewer.via {
        Via::Session { token, .. } => !matches!(store.session(token).await, Ok(None)),
        Via::Token { id, .. } => match store.list_tokens(Some(&viewer.user)).await {
            Ok(tokens) => tokens.iter().any(|t| &t.id == id && t.revoked_at.is_none()),
            Err(_) => true,
        },
    }
}

/// A page's viewer: signed out → the sign-in page (then back here).
#[derive(Debug, Clone)]
pub struct PageViewer(pub Viewer);

/// What a page does for a visitor who is not signed in.
pub struct SignInFirst(Response);

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Ctx> for PageViewer {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, Self::Rejection> {
        match resolve(ctx, parts).await {
            Ok(Some(v)) if matches!(v.via, Via::Session { .. }) => Ok(PageViewer(v)),
            Ok(_) | Err(Error::Unauthorized) => {
                let next = if parts.method == Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                } else {
                    "/apps"
                };
                let to = format!("/signin?next={}", crate::views::url_encode(next));
                Err(SignInFirst(Redirect::to(&to).into_response()))
            }
            Err(e) => Err(SignInFirst(crate::pages::error_page(None, &e))),
        }
    }
}

/// An API caller: a token with the `api` scope, or a session (whose
/// state-changing requests carry `X-CSRF-Token`).
#[derive(Debug, Clone)]
pub struct ApiViewer(pub Viewer);

impl FromRequestParts<Ctx> for ApiViewer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, Self::Rejection> {
        let viewer = resolve(ctx, parts).await?.ok_or(Error::Unauthorized)?;
        match &viewer.via {
            Via::Token {
                scope: TokenScope::Metrics,
                ..
            } => Err(Error::Forbidden(
                "this token may only read /metrics; create one for the API with `byteport tokens create USER`".into(),
            )),
            Via::Token { .. } => Ok(ApiViewer(viewer)),
            Via::Session { .. } => {
                let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if !safe {
                    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                    viewer.check_csrf(sent)?;
                }
                Ok(ApiViewer(viewer))
            }
        }
    }
}

/// Failed sign-ins allowed per user in [`WINDOW`].
pub const MAX_FAILURES_PER_USER: u32 = 5;
/// Failed sign-ins allowed per client address in [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered at once (oldest forgotten first).
const MAX_KEYS: usize = 50_000;

/// Counts failed sign-ins per user and per client address; past the
/// limit, sign-in is refused (even with the right password) until the
/// window passes.
#[derive(Default)]
pub struct RateLimiter {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    fn key_count(&self, key: &str, now: Instant) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((since, n)) if now.duration_since(*since) < WINDOW => *n,
            _ => 0,
        }
    }

    /// Refuses when `user` or `address` failed too often lately.
    pub fn check(&self, user: &str, address: Option<IpAddr>) -> Result<(), Error> {
        let now = Instant::now();
        let minutes = WINDOW.as_secs() / 60;
        if self.key_count(&format!("user:{user}"), now) >= MAX_FAILURES_PER_USER {
            return Err(Error::RateLimited(format!(
                "too many failed sign-ins for this user; try again in {minutes} minutes"
            )));
        }
        if let Some(a) = address {
            if self.key_count(&format!("addr:{a}"), now) >= MAX_FAILURES_PER_ADDRESS {
                return Err(Error::RateLimited(format!(
                    "too many failed sign-ins from your address; try again in {minutes} minutes"
                )));
            }
        }
        Ok(())
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
        }
        let keys =
            std::iter::once(format!("user:{user}")).chain(address.map(|a| format!("addr:{a}")));
        for key in keys {
            let entry = map.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// A successful sign-in clears the user's count (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_per_user_and_per_address() {
        let l = RateLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_USER {
            l.check("alice", Some(a)).unwrap();
            l.failed("alice", Some(a));
        }
        assert_eq!(l.check("alice", None).unwrap_err().code(), "rate_limited");
        // Another user from the same address still may, up to its limit.
        l.check("bob", Some(a)).unwrap();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(&format!("u{i}"), Some(a));
        }
        assert_eq!(
            l.check("carol", Some(a)).unwrap_err().code(),
            "rate_limited"
        );
        l.check("carol", Some("192.0.2.2".parse().unwrap()))
            .unwrap();
        l.succeeded("alice");
        l.check("alice", None).unwrap();
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; bp_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie(SESSION_COOKIE, "v", "/", Some(60), true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", "/", None, false).contains("Secure"));
    }
}
