//! Sign-in, sessions, rate limits, security headers on every answer,
//! `/metrics` access, and the vendored front-end files.

mod common;

use axum::http::StatusCode;
use common::*;

#[tokio::test]
async fn sign_in_sessions_and_rate_limit() {
    let f = Fixture::new().await;
    // The form sets its own CSRF cookie.
    let r = f
        .send(page("GET", "/signin?next=/apps/hello", None, None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure")
    );
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .split('=')
        .nth(1)
        .unwrap()
        .to_string();
    let signin = |user: &str, pw: &str, csrf: &str| {
        let mut r = page(
            "POST",
            "/signin",
            None,
            Some(&format!(
                "_csrf={csrf}&user={user}&password={}&next=/apps/hello",
                pw.replace(' ', "+")
            )),
        );
        r.headers_mut()
            .insert("cookie", format!("bp_signin={token}").parse().unwrap());
        r
    };
    // Without the matching token: refused, even with the right password.
    let r = f.send(signin("alice", PASSWORD, "forged")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = f.send(signin("alice", "wrong password", &token)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(text(r).await.contains("wrong user name or password"));
    // Right password: a session cookie and back to where we were going.
    let r = f.send(signin("alice", PASSWORD, &token)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/apps/hello");
    let set: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set.iter().find(|c| c.starts_with("bp_session=")).unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    let cookie = session.split(';').next().unwrap().to_string();
    let me = Who {
        cookie: cookie.clone(),
        csrf: String::new(),
        token: String::new(),
    };
    assert_eq!(
        f.send(page("GET", "/apps/hello", Some(&me), None))
            .await
            .status(),
        StatusCode::OK
    );
    // Sign out ends the session server-side: the old cookie is dead.
    let csrf = f
        .platform
        .store
        .session(cookie.split('=').nth(1).unwrap())
        .await
        .unwrap()
        .unwrap()
        .csrf;
    let r = f
        .send(page(
            "POST",
            "/signout",
            Some(&me),
            Some(&format!("_csrf={csrf}")),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        f.send(page("GET", "/apps/hello", Some(&me), None))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // Five wrong passwords lock the user out, even with the right one.
    for _ in 0..5 {
        assert_eq!(
            f.send(signin("bob", "nope nope", &token)).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = f.send(signin("bob", PASSWORD, &token)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(text(r).await.contains("too many failed sign-ins"));
    // Unknown users are told the same as wrong passwords.
    let r = f.send(signin("mallory", "whatever1", &token)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_everywhere_revokes_every_session() {
    let f = Fixture::new().await;
    let other = f
        .platform
        .store
        .create_session("alice", 60_000, None)
        .await
        .unwrap();
    let r = f
        .send(page(
            "POST",
            "/signout/all",
            Some(&f.alice),
            Some(&format!("_csrf={}", f.alice.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(f
        .platform
        .store
        .session(&other.token)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        f.send(page("GET", "/apps", Some(&f.alice), None))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn security_headers_everywhere_and_no_get_changes_state() {
    let f = Fixture::new().await;
    for path in [
        "/signin",
        "/apps",
        "/apps/hello",
        "/static/dashboard.js",
        "/api/v1/apps",
        "/nope",
    ] {
        let r = f.send(page("GET", path, Some(&f.alice), None)).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    // No action answers GET.
    for path in [
        "/apps/hello/actions/restart",
        "/apps/hello/config",
        "/signout",
        "/host/gc",
        "/api/v1/apps/hello/restart",
    ] {
        let r = f.send(page("GET", path, Some(&f.alice), None)).await;
        assert!(
            matches!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND
            ),
            "GET {path}: {}",
            r.status()
        );
    }
    assert!(f
        .platform
        .store
        .list_jobs("hello", 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn metrics_for_operators_and_metrics_tokens() {
    let f = Fixture::new().await;
    platform::metrics::metrics().job_finished("deploy", "succeeded");
    assert_eq!(
        f.send(api("GET", "/metrics", None, None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.send(api("GET", "/metrics", Some(&f.alice.token), None))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = f
        .send(api("GET", "/metrics", Some(&f.metrics_token), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = text(r).await;
    for want in [
        "byteport_deploys_total{outcome=\"succeeded\"}",
        "byteport_queue_length 0",
        "byteport_vms_running 0",
        "# EOF",
    ] {
        assert!(t.contains(want), "{want} missing:\n{t}");
    }
    assert_eq!(
        f.send(page("GET", "/metrics", Some(&f.op), None))
            .await
            .status(),
        StatusCode::OK
    );
}

#[test]
fn vendored_files_match_their_recorded_hashes() {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let table = std::fs::read_to_string(dir.join("VENDORED.md")).unwrap();
    for file in ["htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.js"] {
        let hash = hex::encode(Sha256::digest(std::fs::read(dir.join(file)).unwrap()));
        assert!(
            table.contains(&hash),
            "{file}: {hash} is not the recorded hash"
        );
    }
}
