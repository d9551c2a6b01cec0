//! The live streams: the app page's SSE carries log and build lines as
//! they are written and fresh tables after a job event; a reconnect with
//! `Last-Event-ID` resumes with no gap and no duplicate; the API stream
//! is JSON per event; the apps list gets a fresh row when a job changes.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use common::*;
use http_body_util::BodyExt;
use platform::events::{EventKind, OutputStream};

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

fn app_line(f: &Fixture, text: &str) -> u64 {
    f.platform.events.emit(
        "hello",
        Some(2),
        None,
        EventKind::App {
            process: "web".into(),
            stream: OutputStream::Err,
            text: text.into(),
        },
    )
}

#[tokio::test]
async fn app_page_stream_carries_lines_and_tables_and_resumes() {
    let f = Fixture::new().await;
    let start = f.platform.events.last_id("hello");
    let mut r = f
        .send(page(
            "GET",
            &format!("/apps/hello/live?after={start}"),
            Some(&f.alice),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = app_line(&f, "first <i>line</i>");
    let got = read_until(&mut r, |s| s.contains("first")).await;
    assert!(got.contains("event: log"), "{got}");
    assert!(got.contains(&format!("id: {first}")), "{got}");
    assert!(
        got.contains("first &lt;i&gt;line&lt;/i&gt;") && got.contains("data-s=\"err\""),
        "{got}"
    );

    // A job event: a build line, then fresh deploy/job tables and status.
    let job = f
        .platform
        .enqueue("hello", platform::JobSpec::Restart, Some("alice"), false)
        .await
        .unwrap();
    let got = read_until(&mut r, |s| {
        s.contains("event: history") && s.contains("event: status")
    })
    .await;
    assert!(
        got.contains("event: build") && got.contains("restart queued by alice"),
        "{got}"
    );
    assert!(got.contains(&format!("id=\"job-{}\"", job.id)), "{got}");
    drop(r);

    // Reconnect after `first`: the lines after it, each once.
    let second = app_line(&f, "second");
    let third = app_line(&f, "third");
    let mut req = page("GET", "/apps/hello/live?after=1", Some(&f.alice), None);
    req.headers_mut()
        .insert("last-event-id", first.to_string().parse().unwrap());
    let mut r = f.send(req).await;
    let got = read_until(&mut r, |s| s.contains("third")).await;
    assert!(!got.contains("first"), "resumed too early:\n{got}");
    assert_eq!(got.matches("second").count(), 1, "{got}");
    assert!(
        got.contains(&format!("id: {third}")) || got.contains(&format!("id: {second}")),
        "{got}"
    );
}

#[tokio::test]
async fn api_event_stream_is_json_and_resumes() {
    let f = Fixture::new().await;
    let before = app_line(&f, "old line");
    let mut r = f
        .send(api(
            "GET",
            &format!("/api/v1/apps/hello/events?after={}", before - 1),
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = read_until(&mut r, |s| s.contains("old line")).await;
    let data = got.lines().find(|l| l.starts_with("data: ")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(v["type"], "app");
    assert_eq!(v["text"], "old line");
    assert_eq!(v["id"].as_u64(), Some(before));
    assert!(
        got.contains("event: app") && got.contains(&format!("id: {before}")),
        "{got}"
    );
    // Another user: 404, no stream.
    let r = f
        .send(api(
            "GET",
            "/api/v1/apps/hello/events",
            Some(&f.bob.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn apps_list_stream_sends_a_fresh_row_when_a_job_changes() {
    let f = Fixture::new().await;
    let mut r = f
        .send(page("GET", "/live/apps", Some(&f.alice), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The stream follows the apps from the moment it answered.
    f.platform
        .enqueue("hello", platform::JobSpec::Stop, Some("alice"), false)
        .await
        .unwrap();
    let got = read_until(&mut r, |s| s.contains("event: app-hello")).await;
    assert!(
        got.contains("deploying") && got.contains("stop queued"),
        "{got}"
    );
    // Signed out: no stream.
    let r = f.send(page("GET", "/live/apps", None, None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// Reads until the stream ends; panics if it is still open after `secs`.
async fn wait_for_end(r: &mut Response<Body>, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, r.body_mut().frame()).await {
            Err(_) => panic!("the stream is still open {secs} s after its viewer was signed out"),
            Ok(None) => return,
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_stream_ends_when_its_session_or_token_is_revoked() {
    let f = Fixture::new().await;
    let start = f.platform.events.last_id("hello");
    let mut page_stream = f
        .send(page(
            "GET",
            &format!("/apps/hello/live?after={start}"),
            Some(&f.alice),
            None,
        ))
        .await;
    let mut api_stream = f
        .send(api(
            "GET",
            &format!("/api/v1/apps/hello/events?after={start}"),
            Some(&f.alice.token),
            None,
        ))
        .await;
    app_line(&f, "before the revocation");
    read_until(&mut page_stream, |s| s.contains("before the revocation")).await;
    read_until(&mut api_stream, |s| s.contains("before the revocation")).await;

    let store = &f.platform.store;
    store.end_sessions_of("alice").await.unwrap();
    let token = store.list_tokens(Some("alice")).await.unwrap();
    store.revoke_token(&token[0].id).await.unwrap();
    // Keep writing: a stream that stays open would keep delivering.
    let writer = {
        let events = f.platform.events.clone();
        tokio::spawn(async move {
            loop {
                events.emit(
                    "hello",
                    Some(2),
                    None,
                    EventKind::App {
                        process: "web".into(),
                        stream: OutputStream::Out,
                        text: "after the revocation".into(),
                    },
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    // The dashboard rechecks every 10 s; room for a loaded machine.
    let bound = 40;
    wait_for_end(&mut page_stream, bound).await;
    wait_for_end(&mut api_stream, bound).await;
    writer.abort();
    // And the reconnect is refused.
    let r = f
        .send(api(
            "GET",
            "/api/v1/apps/hello/events",
            Some(&f.alice.token),
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
