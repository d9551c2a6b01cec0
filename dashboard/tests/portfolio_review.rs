//! What the review pages show and do: a hostile draft rendered inert,
//! the screenshots and facts and who drafted it, the diff against the
//! published version, and an edit then approve publishing to the public
//! site at `/portfolio/`. (`portfolio_actions.rs` has the rest.)

mod common;

use axum::http::StatusCode;
use common::seed::{self, states, HOSTILE};
use common::*;

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
