//! Every page endpoint, signed out, without its CSRF token, as another
//! user (404, never 403), as the owner and as an operator; actions, bad
//! input, collaborators, the apps list, an app's page and its logs, keys
//! and the Host page.

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
