//! What the review pages show and do: a hostile draft rendered inert,
//! the screenshots and facts and who drafted it, the diff against the
//! published version, edits length-checked and saved as new versions,
//! approve publishing to the public site at `/portfolio/`, a broken
//! capture refused with its reason, regenerate as a queued job whose
//! progress the page's stream carries, and bad input with stable codes.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use common::seed::{self, states, HOSTILE, REFUSAL};
use common::*;
use http_body_util::BodyExt;
use platform::events::{EventKind, JobVerdict};

fn htmx(mut req: axum::http::Request<Body>) -> axum::http::Request<Body> {
    req.headers_mut()
        .insert("hx-request", "true".parse().unwrap());
    req
}

#[tokio::test]
async fn a_hostile_draft_is_inert_text() {
    let f = Fixture::new().await;
    let s = seed::portfolio(&f).await;
    let r = f
        .send(page("GET", "/apps/hello/portfolio", Some(&f.alice), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = text(r).await;
    // The only scripts are the dashboard's own three files.
    assert_eq!(body.matches("<script").count(), 3, "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(!body.contains("onerror=alert(2)>"), "{body}");
    // …and the hostile text is there, escaped: in the edit form's value
    // attribute, the textarea, the notes, the drafter, the facts, the diff.
    let escaped =
        "&#60;script&#62;alert(1)&#60;/script&#62;&#60;img src=x onerror=alert(2)&#62;&#34;&#39;&#38;";
    let at = |needle: &str| body.contains(needle);
    assert!(
        at(&format!("value=\"Title {escaped}\"")),
        "title attribute: {body}"
    );
    assert!(at(&format!("First paragraph {escaped}")), "body");
    assert!(at(&format!("json_schema: HTTP 500 {escaped}")), "notes");
    assert!(
        at(&format!("model model {escaped} (json_object)")),
        "drafted by"
    );
    assert!(at(&format!("Readme title {escaped}")), "facts");
    assert!(at(&format!("Heading {escaped}")), "page headings");
    assert!(at(&format!("+title: Title {escaped}")), "diff");
    // The screenshots of v2 (the draft), through the access-checked route.
    for shot in [
        &s.hello_v2.desktop,
        &s.hello_v2.mobile,
        &s.hello_v2.full_page,
        &s.hello_v2.open_graph,
    ] {
        assert!(
            at(&format!(
                "src=\"/api/v1/apps/hello/portfolio/images/{}\"",
                shot.sha256
            )),
            "{body}"
        );
    }
    // Older versions render their text read-only (heading, paragraphs),
    // escaped too.
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/hello/portfolio/edit",
            Some(&f.alice.token),
            Some("{\"title\": \"A calm title\"}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = text(
        f.send(page(
            "GET",
            "/apps/hello/portfolio?version=2",
            Some(&f.alice),
            None,
        ))
        .await,
    )
    .await;
    assert!(
        !body.contains("action=\"/apps/hello/portfolio/edit\""),
        "{body}"
    );
    assert!(
        body.contains(&format!("<h4 id=\"review-title\">Title {escaped}</h4>")),
        "{body}"
    );
    assert!(
        body.contains(&format!("<p>First paragraph {escaped}</p>")),
        "{body}"
    );
    assert_eq!(body.matches("<script").count(), 3, "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    // The API returns the text as it is stored (JSON-encoded, for the
    // client to escape), never as markup of ours.
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
    assert_eq!(j["versions"][1]["title"], format!("Title {HOSTILE}"));
}

#[tokio::test]
async fn the_review_page_shows_the_draft_its_facts_and_the_diff() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let body = text(
        f.send(page("GET", "/apps/hello/portfolio", Some(&f.alice), None))
            .await,
    )
    .await;
    // The draft waiting is shown (not the published v1).
    assert!(
        body.contains("id=\"version-shown\" data-version=\"2\""),
        "{body}"
    );
    assert!(
        body.contains("Published: <a href=\"/portfolio/projects/hello/\""),
        "{body}"
    );
    assert!(
        body.contains("id=\"review-approve\">Approve and publish v2"),
        "{body}"
    );
    assert!(body.contains("id=\"review-reject\""));
    assert!(body.contains("id=\"review-regenerate\">Regenerate from the live deploy"));
    // Facts: a language bar (SVG, no inline style), frameworks, commits.
    assert!(
        body.contains("<rect class=\"lang-0\" x=\"0\" y=\"0\" width=\"700\""),
        "{body}"
    );
    assert!(body.contains("x=\"700\" y=\"0\" width=\"300\""), "{body}");
    assert!(body.contains("Rust 70.0 %"));
    assert!(
        body.contains("12 by 2 authors, 2023-11-14 … 2024-03-09"),
        "{body}"
    );
    assert!(
        !body.contains("style="),
        "an inline style the CSP would block"
    );
    // The diff is against the published v1.
    assert!(
        body.contains("Changes against the published version, v1"),
        "{body}"
    );
    assert!(
        body.contains("<div class=\"d-del\">-title: Hello, published</div>"),
        "{body}"
    );
    // The versions table.
    assert!(
        body.contains("id=\"version-1\" class=\"ver-approved\""),
        "{body}"
    );
    assert!(
        body.contains("id=\"version-2\" class=\"ver-draft shown\""),
        "{body}"
    );

    // An older version: read-only text, no edit form, diff of itself.
    let body = text(
        f.send(page(
            "GET",
            "/apps/hello/portfolio?version=1",
            Some(&f.alice),
            None,
        ))
        .await,
    )
    .await;
    assert!(
        body.contains("<h4 id=\"review-title\">Hello, published</h4>"),
        "{body}"
    );
    assert!(!body.contains("action=\"/apps/hello/portfolio/edit\""));
    assert!(body.contains("itself (this is the published version)"));
    assert!(
        body.contains("it is approved; only draft or rejected versions can be approved"),
        "{body}"
    );

    // An unknown or malformed version: 404 with words.
    for q in ["?version=9", "?version=abc"] {
        let r = f
            .send(page(
                "GET",
                &format!("/apps/hello/portfolio{q}"),
                Some(&f.alice),
                None,
            ))
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{q}");
    }
    // An app without drafts: an empty page that offers to regenerate.
    let r = f
        .send(page("GET", "/apps/bobapp/portfolio", Some(&f.bob), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = f
        .send(page("GET", "/apps/hello/portfolio", Some(&f.op), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // The API's diff: previous by default, published on request.
    let t = Some(f.alice.token.as_str());
    let j = json(
        f.send(api("GET", "/api/v1/apps/hello/portfolio/diff", t, None))
            .await,
    )
    .await;
    assert_eq!(
        (j["version"].as_u64(), j["against"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(j["unified"]
        .as_str()
        .unwrap()
        .contains("+summary: Summary of Title"));
    let j = json(
        f.send(api(
            "GET",
            "/api/v1/apps/hello/portfolio/diff?version=1",
            t,
            None,
        ))
        .await,
    )
    .await;
    assert!(j["against"].is_null());
    let r = f
        .send(api(
            "GET",
            "/api/v1/apps/hello/portfolio/diff?against=yesterday",
            t,
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json(r).await["error"]["code"], "bad_request");
    let r = f
        .send(api(
            "GET",
            "/api/v1/apps/hello/portfolio/diff?version=7",
            t,
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_edit_then_approve_reaches_the_public_site() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    // The site is public and holds only the published version.
    let r = f
        .send(page("GET", "/portfolio/projects/hello/", None, None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let site = text(r).await;
    assert!(site.contains("Hello, published"), "{site}");
    assert!(!site.contains("alert"), "a draft reached the site: {site}");
    let r = f.send(page("GET", "/portfolio", None, None)).await;
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);

    // Edit the title only: a new version, drafted by the owner, "title" changed.
    let r = f
        .send(page(
            "POST",
            "/apps/hello/portfolio/edit",
            Some(&f.alice),
            Some(&format!(
                "_csrf={}&base=2&title=A+calmer+title&summary=Summary+of+Title+{}&body=First+paragraph&tags=rust%2C+web",
                f.alice.csrf, "x"
            )),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/apps/hello/portfolio?saved=edited&version=3"
    );
    assert_eq!(
        states(&f, "hello").await,
        [(1, "approved"), (2, "superseded"), (3, "draft")]
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
    let v3 = &j["versions"][2];
    assert_eq!(v3["title"], "A calmer title");
    assert_eq!(v3["drafted_by"], "edited by alice");
    assert_eq!(v3["change"], "edited: title, summary, body");
    assert_eq!(v3["tags"], serde_json::json!(["rust", "web"]));
    let page_after = text(
        f.send(page(
            "GET",
            "/apps/hello/portfolio?saved=edited&version=3",
            Some(&f.alice),
            None,
        ))
        .await,
    )
    .await;
    assert!(
        page_after.contains("Saved as a new version"),
        "{page_after}"
    );

    // Approve v3: the site has the new title, the old one is gone.
    let r = f
        .send(htmx(page(
            "POST",
            "/apps/hello/portfolio/approve",
            Some(&f.alice),
            Some(&format!("_csrf={}&version=3", f.alice.csrf)),
        )))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["hx-redirect"],
        "/apps/hello/portfolio?saved=approved&version=3"
    );
    assert_eq!(
        states(&f, "hello").await,
        [(1, "superseded"), (2, "superseded"), (3, "approved")]
    );
    let site = text(
        f.send(page("GET", "/portfolio/projects/hello/", None, None))
            .await,
    )
    .await;
    assert!(
        site.contains("A calmer title") && !site.contains("Hello, published"),
        "{site}"
    );
    let index = text(f.send(page("GET", "/portfolio/", None, None)).await).await;
    assert!(index.contains("A calmer title"), "{index}");

    // The API edit and approve.
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/hello/portfolio/edit",
            Some(&f.alice.token),
            Some("{\"base\": 3, \"tags\": [\"Rust\", \"web app\"]}"),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v4 = json(r).await;
    assert_eq!(
        (v4["number"].as_u64(), v4["state"].as_str()),
        (Some(4), Some("draft"))
    );
    assert_eq!(v4["tags"], serde_json::json!(["rust", "web-app"]));
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/hello/portfolio/approve",
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["number"], 4);
}

#[tokio::test]
async fn edits_are_checked_and_nothing_partial_is_stored() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let c = &f.alice.csrf;
    let long = |n: usize| "x".repeat(n);
    for (form, status, words) in [
        (
            format!("_csrf={c}&base=2&title={}", long(81)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the title is 81 characters long; at most 80",
        ),
        (
            format!("_csrf={c}&base=2&title=ok&summary={}", long(161)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 160",
        ),
        (
            format!("_csrf={c}&base=2&title=ok&body={}", long(2001)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at most 2000",
        ),
        (
            format!("_csrf={c}&base=2&tags=a,b,c,d,e,f,g,h,i"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "9 tags given; at most 8",
        ),
        (
            format!("_csrf={c}&base=2&tags={}", long(33)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "longer than 32",
        ),
        (
            format!("_csrf={c}&base=2&title=+++"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the title cannot be empty",
        ),
        (
            format!("_csrf={c}&base=2"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing was changed",
        ),
        (
            format!(
                "_csrf={c}&base=v2&title=Title+{}",
                "%3Cscript%3Ealert(1)%3C%2Fscript%3E%3Cimg+src%3Dx+onerror%3Dalert(2)%3E%22%27%26"
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing was changed",
        ),
        (
            format!("_csrf={c}&base=1&title=stale"),
            StatusCode::CONFLICT,
            "v2 arrived after v1",
        ),
        (
            format!("_csrf={c}&base=9&title=x"),
            StatusCode::NOT_FOUND,
            "no portfolio version 9",
        ),
        (
            format!("_csrf={c}&base=two&title=x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a version number",
        ),
    ] {
        let r = f
            .send(page(
                "POST",
                "/apps/hello/portfolio/edit",
                Some(&f.alice),
                Some(&form),
            ))
            .await;
        let got = r.status();
        let body = text(r).await;
        assert_eq!(got, status, "{form}: {body}");
        assert!(body.contains(words), "{form}: {body}");
        // htmx gets the same message as a fragment, for the page to show.
        let r = f
            .send(htmx(page(
                "POST",
                "/apps/hello/portfolio/edit",
                Some(&f.alice),
                Some(&form),
            )))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(text(r)
            .await
            .starts_with("<p class=\"error\" role=\"alert\">"));
    }
    assert_eq!(
        states(&f, "hello").await,
        [(1, "approved"), (2, "draft")],
        "a refused edit stored something"
    );

    // The API: the same limits, stable codes.
    let t = Some(f.alice.token.as_str());
    for (body, status, code) in [
        (
            format!("{{\"title\": \"{}\"}}", long(81)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
        ),
        (
            "{\"tags\": \"not a list\"}".to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
        ),
        (
            "{}".to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
        ),
        (
            "not json".to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
        ),
        (
            "{\"base\": 1, \"title\": \"x\"}".to_string(),
            StatusCode::CONFLICT,
            "conflict",
        ),
    ] {
        let r = f
            .send(api(
                "POST",
                "/api/v1/apps/hello/portfolio/edit",
                t,
                Some(&body),
            ))
            .await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(json(r).await["error"]["code"], code, "{body}");
    }
    for (path, body, status, code) in [
        (
            "/api/v1/apps/hello/portfolio/approve",
            "{\"version\": 9}",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/api/v1/apps/hello/portfolio/approve",
            "{\"version\": \"x\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
        ),
        (
            "/api/v1/apps/hello/portfolio/approve",
            "{\"version\": 1}",
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            "/api/v1/apps/hello/portfolio/reject",
            "{\"version\": 1}",
            StatusCode::CONFLICT,
            "conflict",
        ),
    ] {
        let r = f.send(api("POST", path, t, Some(body))).await;
        assert_eq!(r.status(), status, "{path} {body}");
        assert_eq!(json(r).await["error"]["code"], code, "{path} {body}");
    }
    assert_eq!(states(&f, "hello").await, [(1, "approved"), (2, "draft")]);
    // No action answers GET, and an unknown action is a 404.
    for path in [
        "/apps/hello/portfolio/approve",
        "/api/v1/apps/hello/portfolio/approve",
        "/api/v1/apps/hello/portfolio/regenerate",
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
    let r = f
        .send(page(
            "POST",
            "/apps/hello/portfolio/publish",
            Some(&f.alice),
            Some(&format!("_csrf={c}")),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(states(&f, "hello").await, [(1, "approved"), (2, "draft")]);
    assert!(f
        .platform
        .store
        .list_jobs("hello", 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_broken_capture_shows_why_and_is_never_approved() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let body = text(
        f.send(page("GET", "/apps/broken/portfolio", Some(&f.alice), None))
            .await,
    )
    .await;
    assert!(body.contains("id=\"review-refusal\">No screenshots: the router answered HTTP 502 instead of the app &#60;b&#62;down&#60;/b&#62;"), "{body}");
    assert!(
        body.contains("<button type=\"button\" id=\"review-approve\" disabled>"),
        "{body}"
    );
    assert!(
        body.contains("v1 cannot be approved: its screenshot was refused"),
        "{body}"
    );
    assert!(!body.contains("<img src=\"/api/"), "{body}");

    // Posting anyway is refused with the crate's reason; nothing changes.
    let r = f
        .send(page(
            "POST",
            "/apps/broken/portfolio/approve",
            Some(&f.alice),
            Some(&format!("_csrf={}&version=1", f.alice.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = text(r).await;
    assert!(
        body.contains("cannot be published: its screenshot was refused"),
        "{body}"
    );
    assert!(body.contains("HTTP 502"), "{body}");
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/broken/portfolio/approve",
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let j = json(r).await;
    assert_eq!(j["error"]["code"], "conflict");
    assert!(j["error"]["message"].as_str().unwrap().contains(REFUSAL));
    assert_eq!(states(&f, "broken").await, [(1, "draft")]);
    let r = f
        .send(page("GET", "/portfolio/projects/broken/", None, None))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Reads SSE messages until `done` says so (or 10 s pass).
async fn read_until(r: &mut Response<Body>, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&seen) {
        let frame = tokio::time::timeout_at(deadline, r.body_mut().frame())
            .await
            .unwrap_or_else(|_| panic!("stream went quiet; so far:\n{seen}"))
            .expect("stream ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[tokio::test]
async fn regenerate_queues_a_job_whose_progress_the_page_streams() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let start = f.platform.events.last_id("hello");
    let mut stream = f
        .send(page(
            "GET",
            &format!("/apps/hello/portfolio/live?after={start}"),
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    let r = f
        .send(htmx(page(
            "POST",
            "/apps/hello/portfolio/regenerate",
            Some(&f.alice),
            Some(&format!("_csrf={}", f.alice.csrf)),
        )))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let fragment = text(r).await;
    assert!(fragment.contains("portfolio queued as job"), "{fragment}");
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
        platform::JobSpec::Portfolio {
            deploy: Some(2),
            commit: format!("{:040}", 2)
        }
    );
    assert_eq!(job.requested_by.as_deref(), Some("alice"));

    // The queue's own event names the job a portfolio job: its lines follow.
    let seen = read_until(&mut stream, |s| s.contains("portfolio queued by alice")).await;
    assert!(seen.contains("event: job"), "{seen}");
    // (No VMs or browser in handler tests: the worker's part — recording
    // where the job's events start, its lines — is played here.)
    let emit = |kind| f.platform.events.emit("hello", Some(2), Some(job.id), kind);
    let first = emit(EventKind::JobStarted {
        job_kind: "portfolio".into(),
    });
    f.platform
        .store
        .set_job_progress(job.id, Some(2), Some(first as i64))
        .await
        .unwrap();
    emit(EventKind::JobProgress {
        text: "-----> Portfolio: drafting a page for hello <b>".into(),
    });
    let seen = read_until(&mut stream, |s| s.contains("drafting a page")).await;
    assert!(
        seen.contains("drafting a page for hello &lt;b&gt;"),
        "{seen}"
    );
    // Another app's job, or a non-portfolio job of this app, is not shown.
    f.platform.events.emit(
        "hello",
        Some(2),
        Some(job.id + 1000),
        EventKind::JobProgress {
            text: "not ours".into(),
        },
    );
    emit(EventKind::JobFinished {
        verdict: JobVerdict::Failed,
        reason: Some("chromium <i>gone</i>".into()),
    });
    let seen = read_until(&mut stream, |s| s.contains("event: notice")).await;
    assert!(!seen.contains("not ours"), "{seen}");
    assert!(seen.contains("event: versions"), "{seen}");
    assert!(seen.contains("id=\"version-2\""), "{seen}");
    assert!(seen.contains("The newest version is v2 (draft)"), "{seen}");

    // A page loaded now shows the job's lines so far.
    let body = text(
        f.send(page("GET", "/apps/hello/portfolio", Some(&f.alice), None))
            .await,
    )
    .await;
    assert!(
        body.contains(&format!("showing job {}", job.id))
            && body.contains("drafting a page for hello &lt;b&gt;"),
        "the last job's lines: {body}"
    );

    // Without JS: a redirect with the job in the flash; the page shows it.
    let r = f
        .send(page(
            "POST",
            "/apps/hello/portfolio/regenerate",
            Some(&f.alice),
            Some(&format!("_csrf={}", f.alice.csrf)),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    let second = to
        .strip_prefix("/apps/hello/portfolio?queued=")
        .unwrap_or_else(|| panic!("{to}"))
        .to_string();
    let body = text(f.send(page("GET", &to, Some(&f.alice), None)).await).await;
    assert!(
        body.contains(&format!(
            "Portfolio job {second} queued; its progress shows below"
        )) && body.contains(&format!("showing job {second}")),
        "{body}"
    );

    // The API: 202 and the job.
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/hello/portfolio/regenerate",
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(json(r).await["kind"], "portfolio");
    // No live deploy, no regenerate.
    f.platform.store.create_app("fresh", "alice").await.unwrap();
    let r = f
        .send(api(
            "POST",
            "/api/v1/apps/fresh/portfolio/regenerate",
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(json(r).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no live deploy"));
}

#[tokio::test]
async fn reject_only_what_was_seen() {
    let f = Fixture::new().await;
    seed::portfolio(&f).await;
    let post = |form: String| {
        page(
            "POST",
            "/apps/hello/portfolio/reject",
            Some(&f.alice),
            Some(&form),
        )
    };
    let c = &f.alice.csrf;
    assert_eq!(
        f.send(post(format!("_csrf={c}&version=1"))).await.status(),
        StatusCode::CONFLICT
    );
    let r = f.send(post(format!("_csrf={c}&version=2"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        states(&f, "hello").await,
        [(1, "approved"), (2, "rejected")]
    );
    let r = f.send(post(format!("_csrf={c}"))).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(text(r).await.contains("no draft waiting"));
    // The published page stayed.
    let site = text(
        f.send(page("GET", "/portfolio/projects/hello/", None, None))
            .await,
    )
    .await;
    assert!(site.contains("Hello, published"));
}
