//! Who may review what: every portfolio page and API endpoint signed
//! out, without its CSRF token, as another user (404, never 403 — and
//! nothing changed), for an unknown app, as the owner, a collaborator and
//! an operator; the profile is the operators'; screenshots are served
//! only through their own app.

mod common;

use axum::http::StatusCode;
use common::seed::{self, states};
use common::*;

/// Page endpoints of an app's review: (method, path, form without `_csrf`).
const REVIEW_PAGES: &[(&str, &str, &str)] = &[
    ("GET", "/apps/{app}/portfolio", ""),
    ("GET", "/apps/{app}/portfolio?version=1", ""),
    ("GET", "/apps/{app}/portfolio/live", ""),
    ("POST", "/apps/{app}/portfolio/approve", "version=1"),
    ("POST", "/apps/{app}/portfolio/reject", "version=1"),
    (
        "POST",
        "/apps/{app}/portfolio/edit",
        "base=1&title=A+new+title&summary=s&body=b&tags=x",
    ),
    ("POST", "/apps/{app}/portfolio/regenerate", ""),
];

/// Everything a review action could change: versions, jobs.
async fn snapshot(f: &Fixture) -> (Vec<(u32, &'static str)>, Vec<(u32, &'static str)>, usize) {
    (
        states(f, "hello").await,
        states(f, "bobapp").await,
        f.platform
            .store
            .list_jobs("hello", 100)
            .await
            .unwrap()
            .len()
            + f.platform
                .store
                .list_jobs("bobapp", 100)
                .await
                .unwrap()
                .len(),
    )
}

#[tokio::test]
async fn review_pages_refuse_strangers_and_serve_owners() {
    for &(method, path, body) in REVIEW_PAGES {
        let f = Fixture::new().await;
        seed::portfolio(&f).await;
        // bob's app has a v1 draft; hello's v1 is approved: the owner's
        // requests below act on bobapp as bob and on hello as alice.
        let is_post = method == "POST";
        let body_for = |csrf: Option<&str>| is_post.then(|| form(body, csrf));
        let own = with_app(path, "bobapp");
        let before = snapshot(&f).await;

        // Signed out: the sign-in page, nothing done.
        let r = f
            .send(page(method, &own, None, body_for(None).as_deref()))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "{method} {path} signed out"
        );
        assert!(r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin"));

        // Another user: 404, exactly like an unknown app.
        let r = f
            .send(page(
                method,
                &own,
                Some(&f.alice),
                body_for(Some(&f.alice.csrf)).as_deref(),
            ))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} as alice"
        );
        let stranger = text(r).await;
        assert!(!stranger.contains("Bob&#39;s app") && !stranger.contains("Bob's app"));
        let r = f
            .send(page(
                method,
                &with_app(path, "nope"),
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
            // No CSRF token, or another session's: refused.
            for csrf in [None, Some(f.alice.csrf.as_str())] {
                let r = f
                    .send(page(method, &own, Some(&f.bob), body_for(csrf).as_deref()))
                    .await;
                assert_eq!(
                    r.status(),
                    StatusCode::FORBIDDEN,
                    "{method} {path} csrf {csrf:?}"
                );
            }
        }
        assert_eq!(
            snapshot(&f).await,
            before,
            "{method} {path} changed something"
        );

        // The owner.
        let r = f
            .send(page(
                method,
                &own,
                Some(&f.bob),
                body_for(Some(&f.bob.csrf)).as_deref(),
            ))
            .await;
        let want = if is_post {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::OK
        };
        let status = r.status();
        assert_eq!(status, want, "{method} {path} as bob: {}", text(r).await);

        // An operator sees every app's review.
        if !is_post {
            let r = f.send(page(method, &own, Some(&f.op), None)).await;
            assert_eq!(r.status(), StatusCode::OK, "{method} {path} as operator");
        }
    }
}

#[tokio::test]
async fn collaborators_and_operators_review_too() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    f.platform.store.share_app("hello", "carol").await.unwrap();
    let carol = {
        let s = f
            .platform
            .store
            .create_session("carol", 3_600_000, None)
            .await
            .unwrap();
        (format!("bp_session={}", s.token), s.session.csrf)
    };
    let mut req = page(
        "POST",
        "/apps/hello/portfolio/reject",
        None,
        Some(&format!("_csrf={}&version=2", carol.1)),
    );
    req.headers_mut().insert("cookie", carol.0.parse().unwrap());
    assert_eq!(f.send(req).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        states(&f, "hello").await,
        [(1, "approved"), (2, "rejected")]
    );
    let j = json(
        f.send(api(
            "GET",
            "/api/v1/apps/hello/portfolio",
            Some(&f.alice.token),
            None,
        ))
        .await,
    )
    .await;
    assert_eq!(j["versions"][1]["reviewed_by"], "carol");

    // An operator approves a rejected version by number.
    let r = f
        .send(page(
            "POST",
            "/apps/hello/portfolio/approve",
            Some(&f.op),
            Some(&format!("_csrf={}&version=2", f.op.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        states(&f, "hello").await,
        [(1, "superseded"), (2, "approved")]
    );
}

#[tokio::test]
async fn the_review_list_shows_only_your_apps() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let r = f.send(page("GET", "/review", Some(&f.alice), None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(r).await;
    assert!(
        body.contains("id=\"review-hello\"") && body.contains("id=\"review-broken\""),
        "{body}"
    );
    assert!(!body.contains("bobapp"), "{body}");
    // Why the broken one cannot be published, escaped.
    assert!(
        body.contains("cannot be published: the router answered HTTP 502"),
        "{body}"
    );
    assert!(!body.contains("<b>down</b>"));
    let body = text(f.send(page("GET", "/review", Some(&f.op), None)).await).await;
    assert!(body.contains("review-bobapp") && body.contains("review-hello"));
    assert!(
        body.contains("/review/profile"),
        "operators get the profile link"
    );

    let j = json(
        f.send(api("GET", "/api/v1/portfolio", Some(&f.alice.token), None))
            .await,
    )
    .await;
    let apps: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["app"].as_str().unwrap())
        .collect();
    assert_eq!(apps, ["broken", "hello"]);
    assert_eq!(j[1]["latest"], 2);
    assert_eq!(j[1]["latest_state"], "draft");
    assert_eq!(j[1]["published"], 1);
    assert!(j[0]["blocked"].as_str().unwrap().contains("502"));
    let j = json(
        f.send(api("GET", "/api/v1/portfolio", Some(&f.bob.token), None))
            .await,
    )
    .await;
    assert_eq!(j.as_array().unwrap().len(), 1);
    assert_eq!(
        f.send(api("GET", "/api/v1/portfolio", None, None))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// API endpoints of an app's review: (method, path, JSON body).
const REVIEW_API: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/apps/{app}/portfolio", ""),
    ("GET", "/api/v1/apps/{app}/portfolio/diff", ""),
    (
        "GET",
        "/api/v1/apps/{app}/portfolio/diff?version=1&against=published",
        "",
    ),
    ("GET", "/api/v1/apps/{app}/portfolio/images/{image}", ""),
    (
        "POST",
        "/api/v1/apps/{app}/portfolio/edit",
        "{\"title\": \"From the API\"}",
    ),
    (
        "POST",
        "/api/v1/apps/{app}/portfolio/approve",
        "{\"version\": 1}",
    ),
    ("POST", "/api/v1/apps/{app}/portfolio/reject", ""),
    ("POST", "/api/v1/apps/{app}/portfolio/regenerate", ""),
];

#[tokio::test]
async fn api_review_refuses_strangers_and_serves_owners() {
    for &(method, path, body) in REVIEW_API {
        let f = Fixture::new().await;
        let seeded = seed::portfolio(&f).await;
        let own = with_app(path, "bobapp").replace("{image}", &seeded.bob_v1.desktop.sha256);
        let b = (!body.is_empty()).then_some(body);
        let before = snapshot(&f).await;

        let r = f.send(api(method, &own, None, b)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(json(r).await["error"]["code"], "unauthorized");
        let r = f.send(api(method, &own, Some(&f.metrics_token), b)).await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} metrics token"
        );
        let r = f.send(api(method, &own, Some(&f.alice.token), b)).await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} as alice"
        );
        assert_eq!(json(r).await["error"]["code"], "not_found");
        let r = f
            .send(api(
                method,
                &with_app(path, "nope").replace("{image}", "00"),
                Some(&f.alice.token),
                b,
            ))
            .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} unknown app"
        );
        // A session without X-CSRF-Token may read, not change.
        let mut req = api(method, &own, None, b);
        req.headers_mut()
            .insert("cookie", f.bob.cookie.parse().unwrap());
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
        }
        assert_eq!(
            snapshot(&f).await,
            before,
            "{method} {path} changed something"
        );

        let r = f.send(api(method, &own, Some(&f.bob.token), b)).await;
        assert!(
            r.status().is_success(),
            "{method} {path} as bob: {}",
            r.status()
        );
        if method == "GET" {
            let r = f.send(api(method, &own, Some(&f.op.token), b)).await;
            assert!(
                r.status().is_success(),
                "{method} {path} as operator: {}",
                r.status()
            );
        }
    }
}

#[tokio::test]
async fn screenshots_are_served_only_through_their_own_app() {
    let f = Fixture::new().await;
    let s = seed::portfolio(&f).await;
    let url = |app: &str, sha: &str| format!("/api/v1/apps/{app}/portfolio/images/{sha}");

    // The owner's session (an <img> in the page) gets the bytes.
    let r = f
        .send(page(
            "GET",
            &url("hello", &s.hello_v2.desktop.sha256),
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/webp");
    // Revalidated on every use, so the access check always runs: a shared
    // browser never shows alice's cached screenshot to the next user.
    assert_eq!(r.headers()["cache-control"], "private, no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", s.hello_v2.desktop.sha256));
    let bytes = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&bytes[..], &s.hello_v2_desktop[..]);
    // An older version's images too.
    let r = f
        .send(page(
            "GET",
            &url("hello", &s.hello_v1.mobile.sha256),
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    for (who, path, why) in [
        (
            &f.bob,
            url("hello", &s.hello_v2.desktop.sha256),
            "bob, alice's image",
        ),
        // An image id of bob's app through an app alice may see: no door.
        (
            &f.alice,
            url("hello", &s.bob_v1.desktop.sha256),
            "bob's image via alice's app",
        ),
        (
            &f.alice,
            url("bobapp", &s.bob_v1.desktop.sha256),
            "bob's app",
        ),
        (&f.alice, url("hello", &"0".repeat(64)), "an unknown image"),
        (&f.alice, url("hello", "..%2F..%2Fstate.db"), "a path"),
        (
            &f.alice,
            url("broken", &s.hello_v1.desktop.sha256),
            "another app's id",
        ),
    ] {
        let r = f.send(page("GET", &path, Some(who), None)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{why}");
    }
    // A revalidation: 304 for alice, 404 for bob.
    let revalidate = |who: &Who| {
        let mut req = page(
            "GET",
            &url("hello", &s.hello_v2.desktop.sha256),
            Some(who),
            None,
        );
        req.headers_mut()
            .insert("if-none-match", etag.parse().unwrap());
        req
    };
    assert_eq!(
        f.send(revalidate(&f.alice)).await.status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        f.send(revalidate(&f.bob)).await.status(),
        StatusCode::NOT_FOUND
    );

    // The operator sees every app's screenshots.
    let r = f
        .send(page(
            "GET",
            &url("bobapp", &s.bob_v1.desktop.sha256),
            Some(&f.op),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A file changed on disk is not served as the captured image.
    let dir = f
        .platform
        .portfolio()
        .unwrap()
        .generator
        .images_dir()
        .to_path_buf();
    std::fs::write(dir.join(s.hello_v2.mobile.file_name()), b"tampered").unwrap();
    let r = f
        .send(page(
            "GET",
            &url("hello", &s.hello_v2.mobile.sha256),
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn the_profile_is_the_operators() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    for who in [&f.alice, &f.bob] {
        let r = f
            .send(page("GET", "/review/profile", Some(who), None))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = f
            .send(page(
                "POST",
                "/review/profile",
                Some(who),
                Some(&format!(
                    "_csrf={}&name=Mallory&site_url=https://evil.example/",
                    who.csrf
                )),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = f
            .send(api(
                "GET",
                "/api/v1/portfolio/profile",
                Some(&who.token),
                None,
            ))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = f
            .send(api(
                "PUT",
                "/api/v1/portfolio/profile",
                Some(&who.token),
                Some("{\"name\": \"Mallory\", \"site_url\": \"https://evil.example/\"}"),
            ))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Without the CSRF token even an operator changes nothing.
    let r = f
        .send(page(
            "POST",
            "/review/profile",
            Some(&f.op),
            Some("name=Mallory&site_url=https://evil.example/"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let site = text(f.send(page("GET", "/portfolio/", None, None)).await).await;
    assert!(!site.contains("Mallory"));

    let r = f
        .send(page("GET", "/review/profile", Some(&f.op), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(r).await;
    assert!(body.contains("name=\"site_url\""), "{body}");

    // A bad profile is refused with the reason and the typed values kept.
    let r = f
        .send(page(
            "POST",
            "/review/profile",
            Some(&f.op),
            Some(&format!(
                "_csrf={}&name=Ada&bio=Hi&site_url=ftp://x&links=GitHub%3Dhttps://github.com/ada",
                f.op.csrf
            )),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = text(r).await;
    assert!(
        body.contains("absolute http(s) URL") && body.contains("value=\"Ada\""),
        "{body}"
    );
    assert!(body.contains("GitHub=https://github.com/ada"), "{body}");
    let r = f
        .send(page(
            "POST",
            "/review/profile",
            Some(&f.op),
            Some(&format!(
                "_csrf={}&name=Ada&site_url=https://ada.example/&links=no-equals",
                f.op.csrf
            )),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(r).await.contains("LABEL=URL"));
    let site = text(f.send(page("GET", "/portfolio/", None, None)).await).await;
    assert!(!site.contains("Ada"), "a refused profile reached the site");

    // A good one is saved and the site rebuilt.
    let r = f
        .send(page(
            "POST",
            "/review/profile",
            Some(&f.op),
            Some(&format!(
                "_csrf={}&name=Ada+Lovelace&bio=Engines.&site_url=https%3A%2F%2Fada.example%2F&site_title=&links=GitHub%3Dhttps%3A%2F%2Fgithub.com%2Fada",
                f.op.csrf
            )),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let site = text(f.send(page("GET", "/portfolio/", None, None)).await).await;
    assert!(
        site.contains("Ada Lovelace") && site.contains("https://github.com/ada"),
        "{site}"
    );

    // The API: read, then replace.
    let j = json(
        f.send(api(
            "GET",
            "/api/v1/portfolio/profile",
            Some(&f.op.token),
            None,
        ))
        .await,
    )
    .await;
    assert_eq!(j["name"], "Ada Lovelace");
    assert_eq!(j["links"][0]["label"], "GitHub");
    let r = f
        .send(api(
            "PUT",
            "/api/v1/portfolio/profile",
            Some(&f.op.token),
            Some("{\"name\": \"Grace\", \"site_url\": \"https://grace.example/\", \"links\": [{\"label\": \"x\", \"url\": \"javascript:alert(1)\"}]}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["code"], "bad_request");
    let r = f
        .send(api(
            "PUT",
            "/api/v1/portfolio/profile",
            Some(&f.op.token),
            Some("{\"name\": \"Grace\", \"site_url\": \"https://grace.example/\"}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let site = text(f.send(page("GET", "/portfolio/", None, None)).await).await;
    assert!(site.contains("Grace") && !site.contains("Ada Lovelace"));
}

#[tokio::test]
async fn without_the_portfolio_the_pages_say_so() {
    let f = Fixture::without_portfolio().await;
    let r = f.send(page("GET", "/review", Some(&f.alice), None)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(r).await.contains("not set up on this host"));
    let r = f
        .send(api("GET", "/api/v1/portfolio", Some(&f.alice.token), None))
        .await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(r).await["error"]["code"], "unavailable");
    // A stranger still learns nothing about the app.
    let r = f
        .send(api(
            "GET",
            "/api/v1/apps/hello/portfolio",
            Some(&f.bob.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = f.send(page("GET", "/portfolio/", None, None)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
