//! Real Chromium against pages served by an HTTP server this test starts.

mod support;

use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use portfolio::capture::{
    BrowserOptions, CaptureOutcome, CaptureRequest, ImageRef, ImageStore, Screenshotter,
};

fn pages() -> Router {
    let dir = support::static_site_dir();
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let css = std::fs::read_to_string(dir.join("style.css")).unwrap();
    Router::new()
        .route("/", get(move || async move { Html(index) }))
        .route(
            "/style.css",
            get(move || async move { ([(header::CONTENT_TYPE, "text/css")], css) }),
        )
        // The router's own 502 page, with the marker it will carry.
        .route(
            "/router-502",
            get(|| async {
                let mut h = HeaderMap::new();
                h.insert("x-byteport-router", "error".parse().unwrap());
                (
                    StatusCode::BAD_GATEWAY,
                    h,
                    Html("<!doctype html><title>App not running</title><h1>App not running</h1><p>The app <code>hello</code> is not answering right now: it is starting.</p><p><small>BytePort router</small></p>"),
                )
            }),
        )
        // The router's page for an unknown host, marked in the page only
        // (as if a proxy in front had dropped the header).
        .route(
            "/router-404-meta",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Html("<!doctype html><meta name=\"byteport-router\" content=\"error\"><title>No app here</title><h1>No app here</h1>"),
                )
            }),
        )
        .route(
            "/app-500",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, Html("<h1>Internal Server Error</h1>")) }),
        )
        // Text exists but is invisible: the image is one colour.
        .route(
            "/white-on-white",
            get(|| async {
                Html("<!doctype html><title>Blank</title><body style=\"margin:0;background:#fff\"><p style=\"color:#fff\">nothing to see</p></body>")
            }),
        )
        .route(
            "/empty",
            get(|| async { Html("<!doctype html><html><head><title>Empty</title></head><body></body></html>") }),
        )
        .route(
            "/tall",
            get(|| async {
                Html("<!doctype html><title>Tall</title><body style=\"margin:0\"><div style=\"height:3000px;background:linear-gradient(#08f,#f80)\"><h1 style=\"margin:0\">Tall page</h1></div></body>")
            }),
        )
}

fn webp_size(store: &ImageStore, image: &ImageRef) -> (u32, u32) {
    let bytes = store.read(&image.sha256).unwrap();
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP).unwrap();
    (decoded.width(), decoded.height())
}

fn request(url: String) -> CaptureRequest {
    CaptureRequest {
        url,
        wait: Duration::from_millis(200),
        load_timeout: Duration::from_secs(30),
    }
}

/// One browser for all cases, as in the daemon: also shows it is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_and_refusals_with_one_shared_browser() {
    let addr = support::serve(pages()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path().join("images")).unwrap();
    let shooter = Screenshotter::new(
        BrowserOptions {
            chromium_path: None,
            scratch_dir: Some(dir.path().join("scratch")),
        },
        store.clone(),
    )
    .expect("chromium is installed (scripts/install-deps.sh)");

    // A real page: five images with exact sizes, not blank, facts captured.
    let (outcome, timings) = shooter
        .capture(request(format!("http://{addr}/")))
        .await
        .unwrap();
    let CaptureOutcome::Captured { shots, page } = outcome else {
        panic!("expected a capture, got {outcome:?}");
    };
    assert_eq!(page.title.as_deref(), Some("Hello from a microVM"));
    assert_eq!(
        page.headings[..4],
        ["Hello from a microVM", "Push", "Build", "Boot"]
    );
    assert_eq!(webp_size(&store, &shots.desktop), (1280, 800));
    assert_eq!(webp_size(&store, &shots.mobile), (780, 1688));
    assert_eq!(webp_size(&store, &shots.open_graph), (1200, 630));
    assert_eq!(webp_size(&store, &shots.thumbnail), (320, 200));
    let (w, h) = webp_size(&store, &shots.full_page);
    assert_eq!(w, 1280);
    assert!(h >= 800, "full page height {h}");
    for image in [
        &shots.desktop,
        &shots.mobile,
        &shots.open_graph,
        &shots.thumbnail,
        &shots.full_page,
    ] {
        let (iw, ih) = webp_size(&store, image);
        assert_eq!(
            (image.width, image.height),
            (iw, ih),
            "recorded size matches the file"
        );
        let rgb = image::load_from_memory(&store.read(&image.sha256).unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(
            portfolio::capture::check::near_uniform(&rgb),
            None,
            "not blank"
        );
    }
    assert!(
        timings.browser_start > Duration::ZERO,
        "first capture starts the browser"
    );
    assert_eq!(shooter.host().launches(), 1);

    // A tall page's full capture is as tall as the page.
    let (outcome, _) = shooter
        .capture(request(format!("http://{addr}/tall")))
        .await
        .unwrap();
    let shots = outcome.shots().expect("tall page captured").clone();
    assert_eq!(webp_size(&store, &shots.full_page), (1280, 3000));
    assert_eq!(
        shooter.host().launches(),
        1,
        "the browser is shared between captures"
    );

    // Broken pages are refused with the reason.
    let cases = [
        (
            "/router-502",
            "router answered instead of the app (HTTP 502)",
        ),
        (
            "/router-404-meta",
            "router answered instead of the app (HTTP 404)",
        ),
        ("/app-500", "the app answered HTTP 500"),
        ("/white-on-white", "nearly uniform"),
        ("/empty", "body is empty"),
    ];
    for (path, why) in cases {
        let (outcome, _) = shooter
            .capture(request(format!("http://{addr}{path}")))
            .await
            .unwrap();
        let reason = outcome
            .refusal()
            .unwrap_or_else(|| panic!("{path} was not refused: {outcome:?}"));
        assert!(reason.contains(why), "{path}: {reason}");
    }

    // A server that is gone: refused, not an error.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let (outcome, _) = shooter
        .capture(request(format!("http://{gone_addr}/")))
        .await
        .unwrap();
    assert!(
        outcome.refusal().unwrap().contains("did not load"),
        "{outcome:?}"
    );

    // Chromium killed under us: the next capture starts a new one.
    let pid = shooter.host().pid().expect("browser running");
    // SAFETY: kill(2) on a PID this process started (our own Chromium).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    let (outcome, timings) = shooter
        .capture(request(format!("http://{addr}/")))
        .await
        .unwrap();
    assert!(outcome.shots().is_some(), "{outcome:?}");
    assert_eq!(shooter.host().launches(), 2, "restarted once");
    assert!(timings.browser_start > Duration::ZERO);
    assert_ne!(shooter.host().pid(), Some(pid));
}
