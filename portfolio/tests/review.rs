//! The review state machine over a real SQLite database.

mod support;

use portfolio::capture::{CaptureOutcome, ImageRef, PageFacts, Screenshots};
use portfolio::draft::{DraftText, Drafted, DraftedBy};
use portfolio::facts::{Facts, ManifestFacts, PublishPolicy};
use portfolio::review::{
    Change, PortfolioStore, Review, ReviewError, ReviewState, StateChange, TextEdit,
};
use support::SqliteStore;

fn image(n: u8) -> ImageRef {
    ImageRef {
        sha256: format!("{n:02x}").repeat(32),
        width: 1,
        height: 1,
        bytes: 1,
    }
}

fn captured() -> CaptureOutcome {
    CaptureOutcome::Captured {
        shots: Screenshots {
            desktop: image(1),
            mobile: image(2),
            full_page: image(3),
            open_graph: image(4),
            thumbnail: image(5),
        },
        page: PageFacts::default(),
    }
}

fn facts(app: &str, publish: PublishPolicy) -> Facts {
    Facts {
        app: app.into(),
        manifest: ManifestFacts {
            title: app.into(),
            publish,
            ..Default::default()
        },
        live_url: Some(format!("http://{app}.localhost:8000")),
        ..Default::default()
    }
}

fn drafted(body: &str) -> Drafted {
    Drafted {
        text: DraftText {
            title: "Hello".into(),
            summary: "A greeter.".into(),
            body: body.into(),
            tags: vec!["demo".into()],
        },
        by: DraftedBy::Offline,
        notes: vec![],
    }
}

async fn review() -> (tempfile::TempDir, Review<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).await;
    (dir, Review::new(store))
}

fn states(versions: &[portfolio::review::Version]) -> Vec<(u32, ReviewState)> {
    versions.iter().map(|v| (v.number, v.state)).collect()
}

#[tokio::test]
async fn draft_approve_redeploy_keeps_the_published_page_until_approved() {
    let (_d, r) = review().await;
    let v1 = r
        .record_draft(
            facts("hello", PublishPolicy::Review),
            drafted("First."),
            captured(),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!((v1.number, v1.state), (1, ReviewState::Draft));
    assert!(
        r.published().await.unwrap().is_empty(),
        "nothing published before review"
    );

    let approved = r.approve("hello", "alice", None).await.unwrap();
    assert_eq!(approved.reviewed_by.as_deref(), Some("alice"));
    assert_eq!(r.published().await.unwrap()[0].number, 1);

    // A new deploy: new draft, the published page stays v1.
    r.record_draft(
        facts("hello", PublishPolicy::Review),
        drafted("Second."),
        captured(),
        Some(2),
    )
    .await
    .unwrap();
    let published = r.published().await.unwrap();
    assert_eq!(
        (published[0].number, published[0].text.body.as_str()),
        (1, "First.")
    );
    let list = r.list().await.unwrap();
    assert_eq!(
        (list[0].latest, list[0].latest_state, list[0].published),
        (2, ReviewState::Draft, Some(1))
    );

    // Approving v2 publishes it and supersedes v1; v1 keeps its review record.
    r.approve("hello", "alice", None).await.unwrap();
    let all = r.show("hello").await.unwrap();
    assert_eq!(
        states(&all),
        [(1, ReviewState::Superseded), (2, ReviewState::Approved)]
    );
    assert_eq!(all[0].reviewed_by.as_deref(), Some("alice"));
    assert_eq!(all[1].change, Change::Drafted { deploy: Some(2) });
    assert_eq!(r.published().await.unwrap()[0].number, 2);

    // Nothing left to approve or reject.
    assert!(matches!(
        r.approve("hello", "alice", None).await,
        Err(ReviewError::Refused(_))
    ));
    assert!(matches!(
        r.reject("hello", "alice").await,
        Err(ReviewError::Refused(_))
    ));
    assert!(matches!(
        r.show("nope").await,
        Err(ReviewError::NotFound(_))
    ));
}

#[tokio::test]
async fn reject_then_newer_draft_and_edit_with_diff() {
    let (_d, r) = review().await;
    r.record_draft(
        facts("hello", PublishPolicy::Review),
        drafted("One."),
        captured(),
        None,
    )
    .await
    .unwrap();
    let rejected = r.reject("hello", "alice").await.unwrap();
    assert_eq!(rejected.state, ReviewState::Rejected);
    assert!(r.published().await.unwrap().is_empty());

    // The owner edits: a new version by the owner, waiting for approval.
    let edit = TextEdit {
        body: Some(
            "One, <b>better</b>.\n\nSee https://evil.example and http://hello.localhost:8000/"
                .into(),
        ),
        ..Default::default()
    };
    let v2 = r.edit("hello", "alice", edit).await.unwrap();
    assert_eq!(
        (v2.number, v2.state, v2.author.as_str()),
        (2, ReviewState::Draft, "alice")
    );
    assert_eq!(
        v2.drafted_by,
        DraftedBy::Owner {
            user: "alice".into()
        }
    );
    assert_eq!(
        v2.change,
        Change::Edited {
            fields: vec!["body".into()]
        }
    );
    assert_eq!(
        v2.text.body,
        "One, better.\n\nSee and http://hello.localhost:8000/"
    );

    let diff = r.diff("hello", None).await.unwrap();
    assert!(diff.contains("--- hello v1\n+++ hello v2\n"), "{diff}");
    assert!(diff.contains("-One.\n+One, better.\n"), "{diff}");

    // An edit that changes nothing is refused; a second edit supersedes the first.
    let same = TextEdit {
        title: Some("Hello".into()),
        ..Default::default()
    };
    assert!(matches!(
        r.edit("hello", "alice", same).await,
        Err(ReviewError::Refused(_))
    ));
    let v3 = r
        .edit(
            "hello",
            "alice",
            TextEdit {
                tags: Some(vec!["Demo".into(), "Flask".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v3.text.tags, ["demo", "flask"]);
    let all = r.show("hello").await.unwrap();
    assert_eq!(
        states(&all),
        [
            (1, ReviewState::Rejected),
            (2, ReviewState::Superseded),
            (3, ReviewState::Draft)
        ]
    );

    // A rejected version can still be approved by number.
    r.approve("hello", "alice", Some(1)).await.unwrap();
    assert_eq!(r.published().await.unwrap()[0].number, 1);
}

#[tokio::test]
async fn publish_auto_publishes_unless_the_capture_was_refused() {
    let (_d, r) = review().await;
    let v = r
        .record_draft(
            facts("auto", PublishPolicy::Auto),
            drafted("Auto."),
            captured(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (v.state, v.reviewed_by.as_deref()),
        (ReviewState::Approved, Some("byteport (publish auto)"))
    );

    let broken = CaptureOutcome::Refused {
        reason: "the app answered HTTP 502 instead of a 2xx page".into(),
        page: None,
    };
    let v2 = r
        .record_draft(
            facts("auto", PublishPolicy::Auto),
            drafted("Broken."),
            broken,
            None,
        )
        .await
        .unwrap();
    assert_eq!(v2.state, ReviewState::Draft);
    assert!(v2
        .notes
        .iter()
        .any(|n| n.contains("not published automatically: the app answered HTTP 502")));
    assert_eq!(
        r.published().await.unwrap()[0].number,
        1,
        "the good page stays"
    );

    // Approving by hand is refused too, with the reason and what to do.
    let err = r
        .approve("auto", "alice", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 502") && err.contains("regenerate auto"),
        "{err}"
    );
    let list = r.list().await.unwrap();
    assert!(list[0].blocked.as_deref().unwrap().contains("HTTP 502"));
}

#[tokio::test]
async fn store_transitions_are_compare_and_set_and_atomic() {
    let (_d, r) = review().await;
    r.record_draft(
        facts("cas", PublishPolicy::Review),
        drafted("x"),
        captured(),
        None,
    )
    .await
    .unwrap();
    let store = r.store();
    // The second change does not match: nothing is applied.
    let bad = [
        StateChange {
            number: 1,
            from: ReviewState::Draft,
            to: ReviewState::Approved,
            by: Some("a".into()),
            at_ms: 1,
        },
        StateChange {
            number: 9,
            from: ReviewState::Draft,
            to: ReviewState::Approved,
            by: None,
            at_ms: 1,
        },
    ];
    assert!(store.transition("cas", &bad).await.is_err());
    assert_eq!(
        store.versions("cas").await.unwrap()[0].state,
        ReviewState::Draft
    );
    // Inserting an existing number conflicts.
    let v = store.versions("cas").await.unwrap().remove(0);
    assert!(store.insert_version(&v).await.is_err());
}
