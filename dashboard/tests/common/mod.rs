//! A dashboard on a real store (SQLite in a temp dir) with a platform that
//! cannot boot VMs: jobs are queued (and visible) but not run.
// Each test binary uses part of the fixture.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use dashboard::{Ctx, HostCheck, HostInfo, Options};
use platform::events::{EventKind, OutputStream};
use platform::store::{Store, TokenScope};
use platform::{Platform, PlatformSettings};
use tower::ServiceExt;

pub mod seed;

pub struct FakeHost;

impl HostInfo for FakeHost {
    fn driver(&self) -> String {
        "qemu (tcg)".into()
    }
    fn doctor(&self) -> Vec<HostCheck> {
        vec![HostCheck {
            name: "/dev/kvm".into(),
            status: "missing".into(),
            detail: "absent".into(),
            fix: Some("load kvm".into()),
        }]
    }
}

pub struct Who {
    pub cookie: String,
    pub csrf: String,
    pub token: String,
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub platform: Arc<Platform>,
    pub ctx: Ctx,
    pub alice: Who,
    pub bob: Who,
    pub op: Who,
    pub metrics_token: String,
}

pub const PASSWORD: &str = "correct horse battery";
pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDkA31zzsJ+GveuiOShxwxvnGAMWnU9bigP+TVyTJ7c alice@laptop";

async fn who(store: &Store, user: &str) -> Who {
    let s = store.create_session(user, 3_600_000, None).await.unwrap();
    let (_, token) = store
        .create_token(user, "tests", TokenScope::Api)
        .await
        .unwrap();
    Who {
        cookie: format!("bp_session={}", s.token),
        csrf: s.session.csrf,
        token,
    }
}

impl Fixture {
    /// A fixture whose platform runs the portfolio (drafts, review, site).
    pub async fn new() -> Fixture {
        Fixture::build(true).await
    }

    /// A host where the portfolio could not be set up.
    pub async fn without_portfolio() -> Fixture {
        Fixture::build(false).await
    }

    async fn build(portfolio: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let url = format!("sqlite://{}?mode=rwc", home.join("state.db").display());
        let store = Store::open(&url, &home).await.unwrap();
        for u in ["alice", "bob", "op", "carol"] {
            store.add_user(u, Some(PASSWORD)).await.unwrap();
        }
        store.set_operator("op", true).await.unwrap();
        store.create_app("hello", "alice").await.unwrap();
        store.create_app("bobapp", "bob").await.unwrap();
        // Two deploys of hello: #1 superseded, #2 live; a failed #3 with a manifest error.
        for n in 1..=3 {
            let d = store
                .start_deploy(
                    "hello",
                    &format!("{n:040}"),
                    "refs/heads/main",
                    Some("alice"),
                    None,
                )
                .await
                .unwrap();
            store
                .set_deploy_artifact("hello", d.number, &format!("digest{n}"))
                .await
                .unwrap();
            if n < 3 {
                store.mark_live("hello", d.number).await.unwrap();
            } else {
                store
                    .fail_deploy(
                        "hello",
                        d.number,
                        "invalid Byteport manifest: Byteport:11:8: unknown key `pots`",
                    )
                    .await
                    .unwrap();
            }
        }
        store
            .set_config("hello", &[("GREETING".into(), "hi".into())])
            .await
            .unwrap();
        store
            .set_secret("hello", "DATABASE_URL", "postgres://secret-value")
            .await
            .unwrap();
        let routes = router::RouteTable::new("localhost");
        let mut settings = PlatformSettings::new(&home, Err("no VMs in handler tests".into()));
        if portfolio {
            settings.portfolio = Some(portfolio::PortfolioConfig::new(
                home.join("portfolio/images"),
            ));
        }
        let platform = Arc::new(
            Platform::new(settings, store.clone(), routes)
                .with_portfolio()
                .await,
        );
        platform.events.emit(
            "hello",
            Some(2),
            None,
            EventKind::App {
                process: "web".into(),
                stream: OutputStream::Out,
                text: "<script>alert(1)</script>\u{1b}[31mred".into(),
            },
        );
        let ctx = Ctx::new(
            platform.clone(),
            Arc::new(FakeHost),
            Options::new("127.0.0.1:0".parse().unwrap()),
        );
        let (_, metrics_token) = store
            .create_token("bob", "prom", TokenScope::Metrics)
            .await
            .unwrap();
        Fixture {
            alice: who(&store, "alice").await,
            bob: who(&store, "bob").await,
            op: who(&store, "op").await,
            metrics_token,
            _dir: dir,
            platform,
            ctx,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Response<Body> {
        dashboard::router(self.ctx.clone())
            .oneshot(req)
            .await
            .unwrap()
    }
}

pub async fn text(r: Response<Body>) -> String {
    let bytes = http_body_util::BodyExt::collect(r.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&bytes).to_string()
}

pub async fn json(r: Response<Body>) -> serde_json::Value {
    let t = text(r).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
}

/// A page request (cookie, form body).
pub fn page(method: &str, path: &str, who: Option<&Who>, form: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(w) = who {
        b = b.header("cookie", &w.cookie);
    }
    match form {
        Some(f) => b
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(f.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// An API request with a bearer token.
pub fn api(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    match body {
        Some(j) => b
            .header("content-type", "application/json")
            .body(Body::from(j.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// `path` with `{app}` filled in.
pub fn with_app(path: &str, app: &str) -> String {
    path.replace("{app}", app)
}

/// A form body: the CSRF token (if any) and then `base`.
pub fn form(base: &str, csrf: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = csrf {
        parts.push(format!("_csrf={c}"));
    }
    if !base.is_empty() {
        parts.push(base.to_string());
    }
    parts.join("&")
}

/// Marks a request as htmx's (the dashboard answers with a fragment).
pub fn htmx(mut req: Request<Body>) -> Request<Body> {
    req.headers_mut()
        .insert("hx-request", "true".parse().unwrap());
    req
}
