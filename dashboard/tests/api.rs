//! Every JSON API endpoint, as for the pages: strangers, owners,
//! operators; bad input with stable error codes; the OpenAPI document.

mod common;

use axum::http::StatusCode;
use common::*;

/// API endpoints: (method, path, JSON body).
const APP_API: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/apps/{app}", ""),
    ("GET", "/api/v1/apps/{app}/deploys", ""),
    ("GET", "/api/v1/apps/{app}/deploys/2/log", ""),
    ("GET", "/api/v1/apps/{app}/jobs", ""),
    ("GET", "/api/v1/apps/{app}/logs?n=5", ""),
    ("GET", "/api/v1/apps/{app}/logs/download", ""),
    ("GET", "/api/v1/apps/{app}/events", ""),
    ("GET", "/api/v1/apps/{app}/config", ""),
    ("GET", "/api/v1/apps/{app}/secrets", ""),
    ("GET", "/api/v1/apps/{app}/collaborators", ""),
    ("POST", "/api/v1/apps/{app}/restart", ""),
    ("POST", "/api/v1/apps/{app}/stop", ""),
    ("POST", "/api/v1/apps/{app}/start", ""),
    ("POST", "/api/v1/apps/{app}/rollback", "{\"deploy\": 1}"),
    ("POST", "/api/v1/apps/{app}/redeploy", ""),
    (
        "PUT",
        "/api/v1/apps/{app}/config",
        "{\"vars\": {\"COLOR\": \"blue\"}}",
    ),
    ("DELETE", "/api/v1/apps/{app}/config/GREETING", ""),
    (
        "PUT",
        "/api/v1/apps/{app}/secrets/API_KEY",
        "{\"value\": \"s3cret\"}",
    ),
    ("DELETE", "/api/v1/apps/{app}/secrets/DATABASE_URL", ""),
    (
        "POST",
        "/api/v1/apps/{app}/collaborators",
        "{\"user\": \"carol\"}",
    ),
];

#[tokio::test]
async fn api_refuses_strangers_and_serves_owners() {
    for &(method, path, body) in APP_API {
        let f = Fixture::new().await;
        let own = with_app(path, "hello");
        let b = (!body.is_empty()).then_some(body);
        let r = f.send(api(method, &own, None, b)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(json(r).await["error"]["code"], "unauthorized");
        let r = f
            .send(api(method, &own, Some("bpt_0000000000000000_00"), b))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} bad token"
        );
        let r = f.send(api(method, &own, Some(&f.metrics_token), b)).await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} metrics token"
        );
        let r = f.send(api(method, &own, Some(&f.bob.token), b)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path} as bob");
        assert_eq!(json(r).await["error"]["code"], "not_found");
        // A session cookie without X-CSRF-Token may read, not change.
        let mut req = api(method, &own, None, b);
        req.headers_mut()
            .insert("cookie", f.alice.cookie.parse().unwrap());
        let r = f.send(req).await;
        if method == "GET" {
            assert_eq!(r.status(), StatusCode::OK, "{method} {path} by session");
        } else {
            assert_eq!(
                r.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} session without CSRF"
            );
            assert_eq!(json(r).await["error"]["code"], "csrf_failed");
            let mut req = api(method, &own, None, b);
            req.headers_mut()
                .insert("cookie", f.alice.cookie.parse().unwrap());
            req.headers_mut()
                .insert("x-csrf-token", f.alice.csrf.parse().unwrap());
            assert!(
                f.send(req).await.status().is_success(),
                "{method} {path} session with CSRF"
            );
            continue;
        }
        let r = f.send(api(method, &own, Some(&f.alice.token), b)).await;
        assert!(
            r.status().is_success(),
            "{method} {path} as alice: {}",
            r.status()
        );
        let r = f.send(api(method, &own, Some(&f.op.token), b)).await;
        assert!(
            r.status().is_success(),
            "{method} {path} as operator: {}",
            r.status()
        );
    }
}

#[tokio::test]
async fn api_bad_input_has_stable_codes() {
    let f = Fixture::new().await;
    let t = Some(f.alice.token.as_str());
    for (method, path, body, status, code) in [
        (
            "PUT",
            "/api/v1/apps/hello/config",
            Some("{\"vars\": {\"bad-name\": \"x\"}}"),
            422,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/apps/hello/config",
            Some("not json"),
            422,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/apps/hello/config",
            Some("{\"wrong\": 1}"),
            422,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/apps/hello/rollback",
            Some("{\"deploy\": \"x\"}"),
            422,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/apps/hello/rollback",
            Some("{\"deploy\": 42}"),
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/apps/bobapp/redeploy",
            None,
            404,
            "not_found",
        ),
        ("POST", "/api/v1/apps/hello/cancel", None, 409, "conflict"),
        ("GET", "/api/v1/apps/hello/jobs/999", None, 404, "not_found"),
        (
            "DELETE",
            "/api/v1/apps/hello/config/NOPE",
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/api/v1/keys",
            Some("{\"public_key\": \"ssh-rsa nope\"}"),
            422,
            "bad_request",
        ),
        ("GET", "/api/v1/host", None, 404, "not_found"),
        ("GET", "/api/v1/nothing-here", None, 404, "no_route"),
    ] {
        let r = f.send(api(method, path, t, body)).await;
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let j = json(r).await;
        assert_eq!(j["error"]["code"], code, "{method} {path}: {j}");
        assert!(j["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Cancel a queued job through the API.
    let job = json(
        f.send(api("POST", "/api/v1/apps/hello/restart", t, None))
            .await,
    )
    .await;
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/hello/cancel",
            t,
            Some(&format!("{{\"job\": {}}}", job["id"])),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["outcome"], "dequeued");
}

#[tokio::test]
async fn api_keys_host_and_me() {
    let f = Fixture::new().await;
    let t = Some(f.alice.token.as_str());
    assert_eq!(
        json(f.send(api("GET", "/api/v1/me", t, None)).await).await["user"],
        "alice"
    );
    let body = serde_json::json!({ "public_key": KEY }).to_string();
    assert_eq!(
        f.send(api("POST", "/api/v1/keys", t, Some(&body)))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        f.send(api("POST", "/api/v1/keys", Some(&f.bob.token), Some(&body)))
            .await
            .status(),
        StatusCode::CONFLICT
    );
    let keys = json(f.send(api("GET", "/api/v1/keys", t, None)).await).await;
    let fp = keys[0]["fingerprint"].as_str().unwrap().to_string();
    let q = format!(
        "/api/v1/keys?fingerprint={}",
        fp.replace('+', "%2B").replace('/', "%2F")
    );
    assert_eq!(
        f.send(api("DELETE", &q, Some(&f.bob.token), None))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.send(api("DELETE", &q, t, None)).await.status(),
        StatusCode::NO_CONTENT
    );
    let host = json(
        f.send(api("GET", "/api/v1/host", Some(&f.op.token), None))
            .await,
    )
    .await;
    assert_eq!(host["checks"][0]["name"], "/dev/kvm");
    assert_eq!(
        f.send(api("POST", "/api/v1/host/gc", t, None))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.send(api("POST", "/api/v1/host/gc", Some(&f.op.token), None))
            .await
            .status(),
        StatusCode::OK
    );
    // A revoked token is refused at once.
    let id = f.op.token.split('_').nth(1).unwrap();
    f.platform.store.revoke_token(id).await.unwrap();
    assert_eq!(
        f.send(api("GET", "/api/v1/me", Some(&f.op.token), None))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn openapi_document_parses_and_every_path_answers() {
    let f = Fixture::new().await;
    let r = f.send(api("GET", "/api/v1/openapi.json", None, None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let doc = json(r).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete"].contains(&method.as_str()) {
                continue;
            }
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
            let concrete = path
                .replace("{app}", "hello")
                .replace("{number}", "2")
                .replace("{id}", "1")
                .replace("{key}", "GREETING")
                .replace("{name}", "DATABASE_URL")
                .replace("{user}", "carol");
            let concrete = if concrete == "/api/v1/keys" && method == "delete" {
                format!("{concrete}?fingerprint=SHA256:none")
            } else {
                concrete
            };
            let body = match (method.as_str(), path.as_str()) {
                ("put", p) if p.ends_with("/config") => Some("{\"vars\": {}}"),
                ("put", _) => Some("{\"value\": \"v\"}"),
                ("post", p) if p.ends_with("/collaborators") => Some("{\"user\": \"carol\"}"),
                ("post", "/api/v1/keys") => Some("{\"public_key\": \"x\"}"),
                _ => None,
            };
            let r = f
                .send(api(
                    &method.to_uppercase(),
                    &concrete,
                    Some(&f.op.token),
                    body,
                ))
                .await;
            let status = r.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                let j = json(r).await;
                assert_ne!(
                    j["error"]["code"], "no_route",
                    "{method} {path} is documented but not routed"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked}");
}
