//! `Portfolio::refresh` end to end: a real repository, real Chromium on a
//! page served by this test, the offline drafter, a real SQLite store.

mod support;

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::get;
use portfolio::capture::CaptureOutcome;
use portfolio::draft::DraftedBy;
use portfolio::review::{ReviewState, Version};
use portfolio::{Portfolio, PortfolioConfig, RefreshRequest};

fn manifest(publish: &str, path: &str) -> Vec<u8> {
    format!(
        "app hello\nfrom busybox\nweb {{\n  run busybox httpd -f -p 8080\n  port 8080\n}}\nportfolio {{\n  title \"Hello page\"\n  tags demo\n  screenshot {path} wait 100ms\n  publish {publish}\n}}\n"
    )
    .into_bytes()
}

async fn refresh(
    p: &Portfolio<support::SqliteStore>,
    repo: &std::path::Path,
    commit: &str,
    url: &str,
) -> Option<Version> {
    p.refresh(RefreshRequest {
        app: "hello".into(),
        repo_path: repo.to_path_buf(),
        commit: commit.into(),
        live_url: Some(url.into()),
        repository_url: None,
        deploy: Some(7),
    })
    .await
    .unwrap()
    .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_captures_drafts_and_stores_or_refuses() {
    let addr = support::serve(
        axum::Router::new()
            .route("/", get(|| async { Html("<!doctype html><title>Hello page</title><meta name=description content=\"Says hello.\"><h1>Hello!</h1><p>Welcome.</p>") }))
            .route(
                "/down",
                get(|| async {
                    let mut h = HeaderMap::new();
                    h.insert("x-byteport-router", "error".parse().unwrap());
                    (StatusCode::BAD_GATEWAY, h, Html("<h1>App not running</h1>"))
                }),
            ),
    )
    .await;
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let mut config = PortfolioConfig::new(dir.path().join("images"));
    config.load_timeout = Duration::from_secs(30);
    let store = support::SqliteStore::open(&dir.path().join("state.db")).await;
    let p = Portfolio::new(config, store).unwrap();

    // publish auto, healthy page: captured, drafted offline, published.
    let (repo, commit) = support::bare_repo(
        &dir.path().join("r1"),
        &[(
            "a@example.invalid",
            1_767_225_600,
            vec![
                ("Byteport", manifest("auto", "/")),
                (
                    "README.md",
                    b"# Hello\n\nA page that says hello.\n".to_vec(),
                ),
            ],
        )],
    );
    let out = p
        .refresh(RefreshRequest {
            app: "hello".into(),
            repo_path: repo.clone(),
            commit: commit.clone(),
            live_url: Some(url.clone()),
            repository_url: None,
            deploy: Some(7),
        })
        .await
        .unwrap();
    let v = out.version.unwrap();
    assert!(
        matches!(v.capture, CaptureOutcome::Captured { .. }),
        "{:?}",
        v.capture
    );
    assert_eq!(
        v.facts.page.as_ref().unwrap().title.as_deref(),
        Some("Hello page")
    );
    assert_eq!(
        v.facts.page.as_ref().unwrap().description.as_deref(),
        Some("Says hello.")
    );
    assert_eq!(v.drafted_by, DraftedBy::Offline);
    assert_eq!(v.text.summary, "A page that says hello.");
    assert_eq!(v.state, ReviewState::Approved, "publish auto");
    let t = out.timings;
    assert!(
        t.facts > Duration::ZERO
            && t.page_load > Duration::ZERO
            && t.captures > Duration::ZERO
            && t.draft > Duration::ZERO
    );

    // The app goes down: the router's page is refused; the draft says why
    // and the published version stays.
    let (repo2, commit2) = support::bare_repo(
        &dir.path().join("r2"),
        &[(
            "a@example.invalid",
            1_767_225_600,
            vec![("Byteport", manifest("auto", "/down"))],
        )],
    );
    let v2 = refresh(&p, &repo2, &commit2, &url).await.unwrap();
    assert_eq!(v2.state, ReviewState::Draft);
    assert!(
        v2.capture.refusal().unwrap().contains("router answered"),
        "{:?}",
        v2.capture
    );
    assert!(v2
        .notes
        .iter()
        .any(|n| n.starts_with("not published automatically")));
    assert_eq!(p.review().published().await.unwrap()[0].number, 1);

    // publish off: nothing is made.
    let (repo3, commit3) = support::bare_repo(
        &dir.path().join("r3"),
        &[(
            "a@example.invalid",
            1_767_225_600,
            vec![("Byteport", manifest("off", "/"))],
        )],
    );
    assert!(refresh(&p, &repo3, &commit3, &url).await.is_none());
    assert_eq!(p.review().show("hello").await.unwrap().len(), 2);
}
