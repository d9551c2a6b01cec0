//! The review pages' actions and their bad input: edits length-checked
//! and saved as new versions (nothing partial stored), a broken capture
//! refused with its reason, regenerate as a queued job whose progress the
//! page's stream carries, and reject only what was seen.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use common::seed::{self, states, REFUSAL};
use common::*;
use http_body_util::BodyExt;
use platform::events::{EventKind, JobVerdict};

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
