//! Portfolio versions in the fixture's real store, as the refresh job
//! would leave them, with (fake but hash-checked) screenshot files:
//!
//! - `hello` (alice): v1 published ("Hello, published"), v2 a draft whose
//!   every text is hostile markup (a model's or a README's words);
//! - `broken` (alice, live deploy #1): v1 a draft whose capture was refused;
//! - `bobapp` (bob, live deploy #1): v1 a draft with screenshots of its own.

use portfolio::capture::{CaptureOutcome, ImageRef, ImageStore, PageFacts, Screenshots};
use portfolio::draft::{DraftText, DraftedBy};
use portfolio::facts::{Facts, History, LanguageShare, ManifestFacts, Readme};
use portfolio::review::{Change, PortfolioStore, ReviewState, Version};

use super::Fixture;

/// Markup a hostile README or model could produce.
pub const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

/// The refusal of `broken`'s capture.
pub const REFUSAL: &str = "the router answered HTTP 502 instead of the app <b>down</b>";

pub struct Seeded {
    /// hello v1's five images.
    pub hello_v1: Screenshots,
    /// hello v2's five images.
    pub hello_v2: Screenshots,
    /// bobapp v1's five images.
    pub bob_v1: Screenshots,
    /// The bytes behind hello v2's desktop image.
    pub hello_v2_desktop: Vec<u8>,
}

fn images(store: &ImageStore, tag: &str) -> (Screenshots, Vec<u8>) {
    let put = |kind: &str, w: u32, h: u32| -> (ImageRef, Vec<u8>) {
        let bytes = format!("RIFF{tag}-{kind}WEBP").into_bytes();
        (store.put_webp(&bytes, w, h).unwrap(), bytes)
    };
    let (desktop, desktop_bytes) = put("desktop", 1280, 800);
    (
        Screenshots {
            desktop,
            mobile: put("mobile", 780, 1688).0,
            full_page: put("full", 1280, 2000).0,
            open_graph: put("og", 1200, 630).0,
            thumbnail: put("thumb", 320, 200).0,
        },
        desktop_bytes,
    )
}

fn facts(app: &str, hostile: bool) -> Facts {
    let word = |plain: &str| {
        if hostile {
            format!("{plain} {HOSTILE}")
        } else {
            plain.to_string()
        }
    };
    Facts {
        app: app.into(),
        commit: format!("{:040}", 2),
        manifest: ManifestFacts {
            title: word("Hello"),
            tags: vec!["rust".into()],
            description: None,
            publish: portfolio::facts::PublishPolicy::Review,
            screenshot: None,
        },
        readme: Some(Readme {
            path: "README.md".into(),
            title: Some(word("Readme title")),
            paragraphs: vec![],
        }),
        languages: vec![
            LanguageShare {
                name: "Rust".into(),
                lines: 700,
                permille: 700,
            },
            LanguageShare {
                name: word("HTML"),
                lines: 300,
                permille: 300,
            },
        ],
        frameworks: vec![word("axum")],
        history: History {
            commits: 12,
            truncated: false,
            first_commit: 1_700_000_000,
            last_commit: 1_710_000_000,
            authors: 2,
        },
        page: None,
        live_url: Some(format!("http://{app}.localhost:8000")),
        repository_url: None,
        notes: vec![word("a note")],
    }
}

#[allow(clippy::too_many_arguments)]
fn version(
    app: &str,
    number: u32,
    title: &str,
    body: &str,
    drafted_by: DraftedBy,
    notes: Vec<String>,
    facts: Facts,
    capture: CaptureOutcome,
) -> Version {
    Version {
        app: app.into(),
        number,
        created_at_ms: 1_795_000_000_000 + i64::from(number),
        author: "byteport".into(),
        change: Change::Drafted {
            deploy: Some(i64::from(number)),
        },
        drafted_by,
        notes,
        text: DraftText {
            title: title.into(),
            summary: format!("Summary of {title}"),
            body: body.into(),
            tags: vec!["rust".into(), "web".into()],
        },
        facts,
        capture,
        state: ReviewState::Draft,
        reviewed_by: None,
        reviewed_at_ms: None,
    }
}

fn captured(shots: &Screenshots, hostile: bool) -> CaptureOutcome {
    let t = |s: &str| {
        if hostile {
            format!("{s} {HOSTILE}")
        } else {
            s.to_string()
        }
    };
    CaptureOutcome::Captured {
        shots: shots.clone(),
        page: PageFacts {
            title: Some(t("Page title")),
            description: None,
            headings: vec![t("Heading")],
            blocked_requests: vec![],
        },
    }
}

/// Seeds the versions described in the module docs.
pub async fn portfolio(f: &Fixture) -> Seeded {
    let service = f
        .platform
        .portfolio()
        .expect("the fixture runs the portfolio");
    let store = ImageStore::new(service.generator.images_dir()).unwrap();
    let review = service.generator.review();
    let (hello_v1, _) = images(&store, "hello1");
    let (hello_v2, hello_v2_desktop) = images(&store, "hello2");
    let (bob_v1, _) = images(&store, "bob1");

    let v1 = version(
        "hello",
        1,
        "Hello, published",
        "The published write-up.",
        DraftedBy::Offline,
        vec![],
        facts("hello", false),
        captured(&hello_v1, false),
    );
    review.store().insert_version(&v1).await.unwrap();
    service.approve("hello", "alice", Some(1)).await.unwrap();
    let v2 = version(
        "hello",
        2,
        &format!("Title {HOSTILE}"),
        &format!("First paragraph {HOSTILE}\n\nSecond paragraph."),
        DraftedBy::Model {
            model: format!("model {HOSTILE}"),
            response_format: "json_object".into(),
        },
        vec![format!(
            "json_schema: HTTP 500 {HOSTILE}; fell back to json_object"
        )],
        facts("hello", true),
        captured(&hello_v2, true),
    );
    review.store().insert_version(&v2).await.unwrap();

    f.platform
        .store
        .create_app("broken", "alice")
        .await
        .unwrap();
    live_deploy(f, "broken", "alice", 7).await;
    live_deploy(f, "bobapp", "bob", 8).await;
    let b1 = version(
        "broken",
        1,
        "Broken app",
        "It does not answer.",
        DraftedBy::Offline,
        vec![],
        facts("broken", false),
        CaptureOutcome::Refused {
            reason: REFUSAL.into(),
            page: None,
        },
    );
    review.store().insert_version(&b1).await.unwrap();

    let bob = version(
        "bobapp",
        1,
        "Bob's app",
        "Bob's words.",
        DraftedBy::Offline,
        vec![],
        facts("bobapp", false),
        captured(&bob_v1, false),
    );
    review.store().insert_version(&bob).await.unwrap();

    Seeded {
        hello_v1,
        hello_v2,
        bob_v1,
        hello_v2_desktop,
    }
}

/// A live deploy #1 of `app` at commit `n` (zero-padded).
async fn live_deploy(f: &Fixture, app: &str, by: &str, n: u32) {
    let store = &f.platform.store;
    let d = store
        .start_deploy(app, &format!("{n:040}"), "refs/heads/main", Some(by), None)
        .await
        .unwrap();
    store
        .set_deploy_artifact(app, d.number, &format!("digest{n}"))
        .await
        .unwrap();
    store.mark_live(app, d.number).await.unwrap();
}

/// `app`'s versions as (number, state) pairs.
pub async fn states(f: &Fixture, app: &str) -> Vec<(u32, &'static str)> {
    f.platform
        .portfolio()
        .unwrap()
        .generator
        .review()
        .store()
        .versions(app)
        .await
        .unwrap()
        .iter()
        .map(|v| (v.number, v.state.as_str()))
        .collect()
}
