//! A tenant's page cannot make the host's browser fetch host services.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use portfolio::capture::{BrowserOptions, CaptureRequest, ImageStore, Screenshotter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_cannot_reach_loopback_services_through_the_browser() {
    // A "host service" with something to steal, on loopback.
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let secret = support::serve(axum::Router::new().fallback(get(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Html("<h1>ADMIN TOKEN 1234</h1>")
        }
    })))
    .await;
    let port = secret.port();
    // The tenant's page points the browser at it in every way it can.
    let page = format!(
        "<!doctype html><title>Snoop</title><h1>Innocent page</h1>\
<iframe src=\"http://127.0.0.1:{port}/admin\" width=400 height=100></iframe>\
<iframe src=\"http://localhost:{port}/admin\" width=400 height=100></iframe>\
<img src=\"http://[::ffff:127.0.0.1]:{port}/pixel\" alt=\"\">\
<link rel=stylesheet href=\"http://other.localhost:{port}/x.css\">\
<script>fetch('http://127.0.0.1:{port}/api').catch(() => {{}}); alert('blocking dialog');</script>"
    );
    let app =
        support::serve(axum::Router::new().route("/", get(move || async move { Html(page) })))
            .await;

    let dir = tempfile::tempdir().unwrap();
    let shooter = Screenshotter::new(
        BrowserOptions {
            chromium_path: None,
            scratch_dir: None,
        },
        ImageStore::new(dir.path()).unwrap(),
    )
    .unwrap();
    let (outcome, _) = shooter
        .capture(CaptureRequest {
            url: format!("http://{app}/"),
            wait: Duration::from_millis(500),
            load_timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert!(
        outcome.shots().is_some(),
        "the page itself is still captured: {outcome:?}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the browser reached the loopback service"
    );
    let blocked = &outcome.page().unwrap().blocked_requests;
    assert!(blocked.len() >= 4, "{blocked:?}");
    assert!(
        blocked
            .iter()
            .any(|b| b.contains("internal address 127.0.0.1")),
        "{blocked:?}"
    );
    assert!(
        blocked.iter().any(|b| b.contains("another local host")),
        "{blocked:?}"
    );
}
