//! Sign-in (argon2 passwords from the store, rate-limited per user and
//! per address), sign-out, and sign-out everywhere.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{error_page, html, Nav};
use crate::auth::{self, PageViewer, SESSION_COOKIE, SIGNIN_COOKIE};
use crate::{Ctx, Error};

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn {
    nav: Option<Nav>,
    flash: Option<String>,
    error: Option<String>,
    csrf: String,
    next: String,
    user: String,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

/// Only a local path: never an open redirect to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.starts_with("/signin") =>
        {
            n.to_string()
        }
        _ => "/apps".to_string(),
    }
}

pub(crate) async fn root(State(ctx): State<Ctx>, parts: Parts) -> Response {
    match auth::resolve(&ctx, &parts).await {
        Ok(Some(_)) => Redirect::to("/apps").into_response(),
        _ => Redirect::to("/signin").into_response(),
    }
}

fn signin_page(
    ctx: &Ctx,
    parts_https: bool,
    next: String,
    user: String,
    error: Option<String>,
    status: axum::http::StatusCode,
) -> Response {
    let _ = ctx;
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let page = SignIn {
        nav: None,
        flash: None,
        error,
        csrf: csrf.clone(),
        next,
        user,
    };
    let cookie = auth::set_cookie(SIGNIN_COOKIE, &csrf, "/signin", Some(3600), parts_https);
    (status, [(header::SET_COOKIE, cookie)], html(&page)).into_response()
}

pub(crate) async fn form(
    State(ctx): State<Ctx>,
    Query(q): Query<NextQuery>,
    parts: Parts,
) -> Response {
    if let Ok(Some(_)) = auth::resolve(&ctx, &parts).await {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    let (_, https) = auth::client(&ctx, &parts);
    signin_page(
        &ctx,
        https,
        safe_next(q.next.as_deref()),
        String::new(),
        None,
        axum::http::StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub(crate) async fn submit(
    State(ctx): State<Ctx>,
    parts: Parts,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return error_page(
            None,
            &Error::BadRequest("the sign-in form was malformed".into()),
        );
    };
    let (address, https) = auth::client(&ctx, &parts);
    let next = safe_next(f.next.as_deref());
    // The sign-in form's own CSRF token: a double-submit cookie, so a
    // foreign site cannot sign a browser into its attacker's account.
    let cookie = auth::cookie(&parts.headers, SIGNIN_COOKIE);
    let csrf_ok = matches!((cookie, f.csrf.as_deref()), (Some(c), Some(s)) if auth::constant_time_eq(c.as_bytes(), s.as_bytes()));
    if !csrf_ok {
        return signin_page(
            &ctx,
            https,
            next,
            f.user,
            Some(Error::Csrf.to_string()),
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    let user = f.user.trim().to_string();
    if let Err(e) = ctx.limiter().check(&user, address) {
        return signin_page(&ctx, https, next, user, Some(e.to_string()), e.status());
    }
    let ok = !user.is_empty()
        && f.password.len() <= 1024
        && ctx
            .platform()
            .store
            .verify_password(&user, &f.password)
            .await
            .unwrap_or(false);
    if !ok {
        ctx.limiter().failed(&user, address);
        tracing::info!(user = %user.escape_default(), address = ?address, "dashboard sign-in failed");
        return signin_page(
            &ctx,
            https,
            next,
            user,
            Some("wrong user name or password".into()),
            axum::http::StatusCode::UNAUTHORIZED,
        );
    }
    ctx.limiter().succeeded(&user);
    let lifetime = auth::SESSION_LIFETIME;
    let session = match ctx
        .platform()
        .store
        .create_session(
            &user,
            lifetime.as_millis() as i64,
            address.map(|a| a.to_string()).as_deref(),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => return error_page(None, &Error::from(e)),
    };
    let cookie = auth::set_cookie(
        SESSION_COOKIE,
        &session.token,
        "/",
        Some(lifetime.as_secs()),
        https,
    );
    let clear = auth::set_cookie(SIGNIN_COOKIE, "", "/signin", Some(0), https);
    let mut res = Redirect::to(&next).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, cookie.parse().expect("cookie is ASCII"));
    res.headers_mut()
        .append(header::SET_COOKIE, clear.parse().expect("cookie is ASCII"));
    res
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
}

fn signed_out(headers: &HeaderMap, https: bool) -> Response {
    let _ = headers;
    let clear = auth::set_cookie(SESSION_COOKIE, "", "/", Some(0), https);
    ([(header::SET_COOKIE, clear)], Redirect::to("/signin")).into_response()
}

pub(crate) async fn signout(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    parts: Parts,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = v.check_csrf(f.csrf.as_deref()) {
        return error_page(Some(&v), &e);
    }
    if let auth::Via::Session { token, .. } = &v.via {
        if let Err(e) = ctx.platform().store.end_session(token).await {
            return error_page(Some(&v), &e.into());
        }
    }
    let (_, https) = auth::client(&ctx, &parts);
    signed_out(&parts.headers, https)
}

pub(crate) async fn signout_everywhere(
    State(ctx): State<Ctx>,
    PageViewer(v): PageViewer,
    parts: Parts,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(e) = v.check_csrf(f.csrf.as_deref()) {
        return error_page(Some(&v), &e);
    }
    if let Err(e) = ctx.platform().store.end_sessions_of(&v.user).await {
        return error_page(Some(&v), &e.into());
    }
    let (_, https) = auth::client(&ctx, &parts);
    signed_out(&parts.headers, https)
}

#[cfg(test)]
mod tests {
    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(super::safe_next(Some("/apps/x")), "/apps/x");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/signin?next=/x",
        ] {
            assert_eq!(super::safe_next(Some(bad)), "/apps", "{bad}");
        }
        assert_eq!(super::safe_next(None), "/apps");
    }
}
