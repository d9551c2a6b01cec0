//! Every endpoint, signed out, without its CSRF token, as another user
//! (404, never 403), as the owner and as an operator; bad input; the
//! OpenAPI document; sign-in, sessions, rate limits and security headers.

mod common;

use axum::http::StatusCode;
use common::*;

/// App-scoped page endpoints: (method, path, form without `_csrf`).
const APP_PAGES: &[(&str, &str, &str)] = &[
    ("GET", "/apps/{app}", ""),
    ("GET", "/apps/{app}/live", ""),
    ("GET", "/apps/{app}/logs/download", ""),
    ("GET", "/apps/{app}/deploys/2/log", ""),
    ("POST", "/apps/{app}/actions/restart", ""),
    ("POST", "/apps/{app}/actions/stop", ""),
    ("POST", "/apps/{app}/actions/start", ""),
    ("POST", "/apps/{app}/actions/rollback", "deploy=1"),
    ("POST", "/apps/{app}/actions/redeploy", ""),
    ("POST", "/apps/{app}/config", "key=COLOR&value=blue"),
    ("POST", "/apps/{app}/config/unset", "key=GREETING"),
    ("POST", "/apps/{app}/secrets", "name=API_KEY&value=s3cret"),
    ("POST", "/apps/{app}/secrets/unset", "name=DATABASE_URL"),
    ("POST", "/apps/{app}/collaborators", "user=carol"),
];

#[tokio::test]
async fn app_pages_refuse_strangers_and_serve_owners() {
    for &(method, path, body) in APP_PAGES {
        let f = Fixture::new().await;
        let own = with_app(path, "hello");
        let is_post = method == "POST";
        let body_for = |csrf: Option<&str>| is_post.then(|| form(body, csrf));

        // Signed out: the sign-in page, nothing done.
        let r = f
            .send(page(method, &own, None, body_for(None).as_deref()))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "{method} {path} signed out"
        );
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/signin"),
            "{path}"
        );

        // Another user: 404, the same as an unknown app.
        let r = f
            .send(page(
                method,
                &own,
                Some(&f.bob),
                body_for(Some(&f.bob.csrf)).as_deref(),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path} as bob");
        let unknown = with_app(path, "nope");
        let r = f
            .send(page(
                method,
                &unknown,
                Some(&f.alice),
                body_for(Some(&f.alice.csrf)).as_deref(),
            ))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} unknown app"
        );

        if is_post {
            // No CSRF token, or another session's: refused, nothing done.
            let jobs_before = f
                .platform
                .store
                .list_jobs("hello", 100)
                .await
                .unwrap()
                .len();
            let r = f
                .send(page(
                    method,
                    &own,
                    Some(&f.alice),
                    body_for(None).as_deref(),
                ))
                .await;
            assert_eq!(
                r.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} without CSRF"
            );
            let r = f
                .send(page(
                    method,
                    &own,
                    Some(&f.alice),
                    body_for(Some(&f.bob.csrf)).as_deref(),
                ))
                .await;
            assert_eq!(
                r.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} with bob's CSRF"
            );
            assert_eq!(
                f.platform
                    .store
                    .list_jobs("hello", 100)
                    .await
                    .unwrap()
                    .len(),
                jobs_before
            );
        }

        // The owner.
        let r = f
            .send(page(
                method,
                &own,
                Some(&f.alice),
                body_for(Some(&f.alice.csrf)).as_deref(),
            ))
            .await;
        let want = if is_post {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::OK
        };
        assert_eq!(
            r.status(),
            want,
            "{method} {path} as alice: {}",
            text(r).await
        );

        // An operator sees (and may act on) every app.
        if !is_post {
            let r = f.send(page(method, &own, Some(&f.op), None)).await;
            assert_eq!(r.status(), StatusCode::OK, "{method} {path} as operator");
        }
    }
}

#[tokio::test]
async fn actions_queue_jobs_and_htmx_gets_a_fragment() {
    let f = Fixture::new().await;
    let r = f
        .send({
            let mut req = page(
                "POST",
                "/apps/hello/actions/restart",
                Some(&f.alice),
                Some(&form("", Some(&f.alice.csrf))),
            );
            req.headers_mut()
                .insert("hx-request", "true".parse().unwrap());
            req
        })
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(r).await;
    assert!(body.contains("restart queued as job"), "{body}");
    let jobs = f.platform.store.list_jobs("hello", 10).await.unwrap();
    assert_eq!(jobs[0].kind, "restart");
    assert_eq!(jobs[0].requested_by.as_deref(), Some("alice"));

    // Redeploy = a deploy job of the live commit.
    f.send(page(
        "POST",
        "/apps/hello/actions/redeploy",
        Some(&f.alice),
        Some(&form("", Some(&f.alice.csrf))),
    ))
    .await;
    let job = platform::Job::from_row(
        f.platform
            .store
            .list_jobs("hello", 1)
            .await
            .unwrap()
            .remove(0),
    );
    assert_eq!(
        job.spec,
        platform::JobSpec::Deploy {
            commit: format!("{:040}", 2),
            git_ref: "refs/heads/main".into(),
            push_options: vec![]
        }
    );

    // Cancel the newest queued job by number: it never runs.
    let r = f
        .send(page(
            "POST",
            "/apps/hello/actions/cancel",
            Some(&f.alice),
            Some(&form(&format!("job={}", job.id), Some(&f.alice.csrf))),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let after = f.platform.store.job(job.id).await.unwrap().unwrap();
    assert_eq!(after.state, "cancelled");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_message() {
    let f = Fixture::new().await;
    let c = &f.alice.csrf;
    for (path, body, status, words) in [
        (
            "/apps/hello/config",
            format!("_csrf={c}&key=lower&value=x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid variable name",
        ),
        (
            "/apps/hello/config",
            format!("_csrf={c}&value=x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "required",
        ),
        (
            "/apps/hello/secrets",
            format!("_csrf={c}&name=A%00B&value=x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid variable name",
        ),
        (
            "/apps/hello/actions/rollback",
            format!("_csrf={c}&deploy=abc"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must be a number",
        ),
        (
            "/apps/hello/actions/rollback",
            format!("_csrf={c}&deploy=99"),
            StatusCode::NOT_FOUND,
            "no deploy #99",
        ),
        (
            "/apps/hello/actions/explode",
            format!("_csrf={c}"),
            StatusCode::NOT_FOUND,
            "no action",
        ),
        (
            "/apps/hello/collaborators",
            format!("_csrf={c}&user=nobody"),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "/keys",
            format!("_csrf={c}&public_key=hello"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not an OpenSSH public key",
        ),
    ] {
        let r = f
            .send(page("POST", path, Some(&f.alice), Some(&body)))
            .await;
        assert_eq!(r.status(), status, "{path} {body}");
        let t = text(r).await;
        assert!(t.contains(words), "{path}: {t}");
    }
    // A body past the limit is refused before any handler reads it.
    let big = format!("_csrf={c}&key=BIG&value={}", "x".repeat(300 * 1024));
    let r = f
        .send(page(
            "POST",
            "/apps/hello/config",
            Some(&f.alice),
            Some(&big),
        ))
        .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(!f
        .platform
        .store
        .config_vars("hello")
        .await
        .unwrap()
        .contains_key("BIG"));
}

#[tokio::test]
async fn collaborators_are_the_owners_business() {
    let f = Fixture::new().await;
    f.platform.store.share_app("hello", "bob").await.unwrap();
    // bob collaborates: he sees hello and may restart it, but not manage collaborators.
    let r = f.send(page("GET", "/apps/hello", Some(&f.bob), None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = f
        .send(page(
            "POST",
            "/apps/hello/collaborators",
            Some(&f.bob),
            Some(&form("user=carol", Some(&f.bob.csrf))),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = f
        .send(api(
            "DELETE",
            "/api/v1/apps/hello/collaborators/bob",
            Some(&f.bob.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The owner adds and removes.
    let r = f
        .send(page(
            "POST",
            "/apps/hello/collaborators",
            Some(&f.alice),
            Some(&form("user=carol", Some(&f.alice.csrf))),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = f
        .send(page(
            "POST",
            "/apps/hello/collaborators/remove",
            Some(&f.alice),
            Some(&form("user=bob", Some(&f.alice.csrf))),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let app = f.platform.store.app("hello").await.unwrap().unwrap();
    assert_eq!(app.collaborators, vec!["carol".to_string()]);
    let r = f.send(page("GET", "/apps/hello", Some(&f.bob), None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_apps_list_shows_only_your_apps() {
    let f = Fixture::new().await;
    let a = text(f.send(page("GET", "/apps", Some(&f.alice), None)).await).await;
    assert!(a.contains("/apps/hello") && !a.contains("bobapp"), "{a}");
    let b = text(f.send(page("GET", "/apps", Some(&f.bob), None)).await).await;
    assert!(
        b.contains("/apps/bobapp") && !b.contains("/apps/hello"),
        "{b}"
    );
    let o = text(f.send(page("GET", "/apps", Some(&f.op), None)).await).await;
    assert!(
        o.contains("/apps/bobapp") && o.contains("/apps/hello"),
        "{o}"
    );
    let j = json(
        f.send(api("GET", "/api/v1/apps", Some(&f.bob.token), None))
            .await,
    )
    .await;
    let names: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bobapp"]);
}

#[tokio::test]
async fn the_app_page_shows_history_failures_and_inert_logs() {
    let f = Fixture::new().await;
    let r = f
        .send(page("GET", "/apps/hello", Some(&f.alice), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = text(r).await;
    // Failure with the manifest's location; live deploy; rollback target.
    assert!(
        h.contains("<code class=\"loc\">Byteport:11:8</code>"),
        "{h}"
    );
    assert!(h.contains("Roll back to #1"), "{h}");
    // Secrets: the name, never the value.
    assert!(
        h.contains("DATABASE_URL") && !h.contains("secret-value"),
        "{h}"
    );
    // The log line's HTML is text, its colour a class.
    assert!(
        h.contains("&lt;script&gt;alert(1)&lt;/script&gt;<span class=\"a-f1\">red</span>"),
        "{h}"
    );
    assert!(!h.contains("<script>alert"), "{h}");
    // Every form carries the session's CSRF token.
    let forms = h.matches("<form method=\"post\"").count();
    let tokens = h
        .matches(&format!("name=\"_csrf\" value=\"{}\"", f.alice.csrf))
        .count();
    assert!(
        forms > 5 && forms == tokens,
        "{forms} forms, {tokens} tokens"
    );
    // No inline script: every <script> has a src.
    assert_eq!(
        h.matches("<script").count(),
        h.matches("<script src=\"/static/").count()
    );
    // The no-JS filter: only stderr lines.
    let only_err = text(
        f.send(page("GET", "/apps/hello?stream=err", Some(&f.alice), None))
            .await,
    )
    .await;
    assert!(
        !only_err.contains("alert(1)"),
        "filtered page still shows stdout"
    );
}

#[tokio::test]
async fn log_download_and_build_log() {
    let f = Fixture::new().await;
    let r = f
        .send(page(
            "GET",
            "/apps/hello/logs/download",
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("hello.log"));
    let t = text(r).await;
    assert!(t.contains("web  <script>alert(1)</script>"), "{t}");
    let r = f
        .send(page(
            "GET",
            "/apps/hello/deploys/3/log",
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = f
        .send(page(
            "GET",
            "/apps/hello/deploys/x/log",
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Account-level endpoints.
#[tokio::test]
async fn keys_host_and_gc() {
    let f = Fixture::new().await;
    let c = &f.alice.csrf;
    // Signed out.
    for p in ["/keys", "/host"] {
        assert_eq!(
            f.send(page("GET", p, None, None)).await.status(),
            StatusCode::SEE_OTHER
        );
    }
    // Keys: add by pasting, list with fingerprint, remove; CSRF needed.
    let add = format!(
        "_csrf={c}&public_key={}",
        KEY.replace('+', "%2B").replace(' ', "+")
    );
    let r = f
        .send(page(
            "POST",
            "/keys",
            Some(&f.alice),
            Some(&add.replace(c.as_str(), "wrong")),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = f
        .send(page("POST", "/keys", Some(&f.alice), Some(&add)))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fp = "SHA256:PRY7B6eirUeF1p7xN4CFtngUbddBXG46xMLkOAGDseM";
    let h = text(f.send(page("GET", "/keys", Some(&f.alice), None)).await).await;
    assert!(h.contains(fp) && h.contains("never"), "{h}");
    // bob cannot see or remove it.
    let hb = text(f.send(page("GET", "/keys", Some(&f.bob), None)).await).await;
    assert!(!hb.contains(fp));
    let rm = |csrf: &str| format!("_csrf={csrf}&fingerprint={}", fp.replace('+', "%2B"));
    let r = f
        .send(page(
            "POST",
            "/keys/remove",
            Some(&f.bob),
            Some(&rm(&f.bob.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    f.platform.store.touch_key(fp).await.unwrap();
    let h = text(f.send(page("GET", "/keys", Some(&f.alice), None)).await).await;
    assert!(!h.contains(">never<"), "last use shown: {h}");
    let r = f
        .send(page("POST", "/keys/remove", Some(&f.alice), Some(&rm(c))))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(f.platform.store.keys_of("alice").await.unwrap().is_empty());

    // Host: operators only (others get 404), gc needs CSRF.
    assert_eq!(
        f.send(page("GET", "/host", Some(&f.alice), None))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let h = text(f.send(page("GET", "/host", Some(&f.op), None)).await).await;
    assert!(
        h.contains("/dev/kvm") && h.contains("load kvm") && h.contains("Artifacts"),
        "{h}"
    );
    let r = f
        .send(page(
            "POST",
            "/host/gc",
            Some(&f.alice),
            Some(&format!("_csrf={c}")),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = f
        .send(page("POST", "/host/gc", Some(&f.op), Some("_csrf=nope")))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = f
        .send(page(
            "POST",
            "/host/gc",
            Some(&f.op),
            Some(&format!("_csrf={}", f.op.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("Removed 0 artifacts"));
}

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
