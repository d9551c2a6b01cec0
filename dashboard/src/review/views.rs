//! What the review pages and the API show of a portfolio version: its
//! text, who wrote it and why, its screenshots (as access-checked URLs),
//! its facts, and whether it can be published. Built from the portfolio
//! crate's [`Version`]; every string here is untrusted (a model's or a
//! README's words) and is escaped wherever it is rendered.

use portfolio::capture::{CaptureOutcome, ImageRef};
use portfolio::draft::DraftedBy;
use portfolio::review::{AppSummary as ReviewRow, Change, ReviewState, Version};
use serde::Serialize;
use utoipa::ToSchema;

/// One app's review at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewSummary {
    /// The app.
    pub app: String,
    /// The newest version's number.
    pub latest: u32,
    /// Its state: `draft`, `approved`, `rejected` or `superseded`.
    pub latest_state: String,
    /// The version on the site, if any.
    pub published: Option<u32>,
    /// Why the newest draft cannot be published, if it cannot.
    pub blocked: Option<String>,
}

impl ReviewSummary {
    /// From the crate's summary row.
    pub fn new(r: &ReviewRow) -> ReviewSummary {
        ReviewSummary {
            app: r.app.clone(),
            latest: r.latest,
            latest_state: r.latest_state.as_str().to_string(),
            published: r.published,
            blocked: r.blocked.clone(),
        }
    }
}

/// A screenshot, served by an access-checked route.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShotView {
    /// `desktop`, `mobile`, `full_page`, `open_graph`, `thumbnail`.
    pub kind: String,
    /// For people (`Desktop 1280×800`).
    pub label: String,
    /// Where the image is: `/api/v1/apps/{app}/portfolio/images/{sha256}`.
    pub url: String,
    /// Content hash (SHA-256, hex): the image's id.
    pub sha256: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Size of the WebP file.
    pub bytes: u64,
}

/// The screenshots, or why there are none.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaptureView {
    /// `captured`, `refused` or `not_requested`.
    pub status: String,
    /// Why the capture was refused (a broken page is never published).
    pub refusal: Option<String>,
    /// The images (empty unless captured).
    pub screenshots: Vec<ShotView>,
    /// The live page's `<title>`.
    pub page_title: Option<String>,
    /// The live page's visible headings.
    pub page_headings: Vec<String>,
    /// Requests of the page that were blocked (internal addresses).
    pub blocked_requests: Vec<String>,
}

/// One language's share of the code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LanguageView {
    /// tokei's name (`Rust`, `HTML`).
    pub name: String,
    /// Lines of code.
    pub lines: u64,
    /// Share in tenths of a percent (0–1000).
    pub permille: u32,
}

impl LanguageView {
    /// `42.5 %`.
    pub fn percent(&self) -> String {
        format!("{:.1} %", f64::from(self.permille) / 10.0)
    }
}

/// What the write-up could honestly say, as gathered.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FactsView {
    /// The commit the facts were read from.
    pub commit: String,
    /// The manifest's `portfolio { title }`.
    pub manifest_title: String,
    /// The manifest's tags.
    pub manifest_tags: Vec<String>,
    /// `review`, `auto` or `off`.
    pub publish: String,
    /// The README's first heading.
    pub readme_title: Option<String>,
    /// Languages by lines of code, most first.
    pub languages: Vec<LanguageView>,
    /// Frameworks and notable libraries.
    pub frameworks: Vec<String>,
    /// Commits reachable from the pushed commit.
    pub commits: u64,
    /// Distinct authors.
    pub authors: u64,
    /// First commit, Unix seconds.
    pub first_commit: i64,
    /// The pushed commit's time, Unix seconds.
    pub last_commit: i64,
    /// The live URL.
    pub live_url: Option<String>,
    /// Limits hit and inputs skipped while gathering.
    pub notes: Vec<String>,
}

/// A segment of the languages bar (SVG units: the bar is 1000 wide).
pub struct BarSegment {
    /// Language.
    pub name: String,
    /// Left edge.
    pub x: u32,
    /// Width.
    pub width: u32,
    /// Colour class index (0–7).
    pub colour: usize,
    /// `42.5 %`.
    pub percent: String,
}

impl FactsView {
    /// The languages bar: every language in order, the colours cycling.
    pub fn bar(&self) -> Vec<BarSegment> {
        let mut x = 0;
        self.languages
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let width = l.permille.min(1000 - x.min(1000));
                let s = BarSegment {
                    name: l.name.clone(),
                    x,
                    width,
                    colour: i % 8,
                    percent: l.percent(),
                };
                x += width;
                s
            })
            .collect()
    }

    /// `2024-05-01 … 2024-06-02` (UTC days).
    pub fn commit_span(&self) -> String {
        let day = |s: i64| {
            let t = platform::time::fmt_time(s * 1000);
            t.get(..10).unwrap_or(&t).to_string()
        };
        if self.commits == 0 {
            "—".into()
        } else {
            format!("{} … {}", day(self.first_commit), day(self.last_commit))
        }
    }
}

/// One version of an app's portfolio entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionView {
    /// The app.
    pub app: String,
    /// 1, 2, 3 … per app.
    pub number: u32,
    /// `draft`, `approved`, `rejected` or `superseded`.
    pub state: String,
    /// When it was made, Unix ms.
    pub created_at_ms: i64,
    /// `byteport` for drafts, the editor's name for edits.
    pub author: String,
    /// How it came to be, in words (`drafted after deploy #4`, `edited: title`).
    pub change: String,
    /// `offline`, `model`, `manifest` or `owner`.
    pub drafted_by_kind: String,
    /// Who wrote the text, in words (`offline drafter`, `model m (json_schema)`).
    pub drafted_by: String,
    /// What happened while drafting: retries, fallbacks and why.
    pub notes: Vec<String>,
    /// ≤ 80 characters.
    pub title: String,
    /// ≤ 160 characters.
    pub summary: String,
    /// Plain-text paragraphs.
    pub body: String,
    /// Lowercase tags.
    pub tags: Vec<String>,
    /// The screenshots, or why there are none.
    pub capture: CaptureView,
    /// The facts it was drafted from.
    pub facts: FactsView,
    /// Who approved or rejected it.
    pub reviewed_by: Option<String>,
    /// When, Unix ms.
    pub reviewed_at_ms: Option<i64>,
    /// Why approving it is refused, when it is (a refused capture, or a
    /// state that cannot be approved).
    pub approve_blocked: Option<String>,
}

fn shot(app: &str, kind: &str, label: &str, i: &ImageRef) -> ShotView {
    ShotView {
        kind: kind.into(),
        label: format!("{label} {}×{}", i.width, i.height),
        url: image_url(app, &i.sha256),
        sha256: i.sha256.clone(),
        width: i.width,
        height: i.height,
        bytes: i.bytes,
    }
}

/// The access-checked URL of a stored screenshot.
pub fn image_url(app: &str, sha256: &str) -> String {
    format!("/api/v1/apps/{app}/portfolio/images/{sha256}")
}

/// Every image id a version refers to.
pub fn image_ids(v: &Version) -> Vec<&str> {
    match v.capture.shots() {
        Some(s) => [
            &s.desktop,
            &s.mobile,
            &s.full_page,
            &s.open_graph,
            &s.thumbnail,
        ]
        .iter()
        .map(|i| i.sha256.as_str())
        .collect(),
        None => Vec::new(),
    }
}

impl VersionView {
    /// From a stored version.
    pub fn new(v: &Version) -> VersionView {
        let capture = match &v.capture {
            CaptureOutcome::Captured { shots, .. } => CaptureView {
                status: "captured".into(),
                refusal: None,
                screenshots: vec![
                    shot(&v.app, "desktop", "Desktop", &shots.desktop),
                    shot(&v.app, "mobile", "Mobile", &shots.mobile),
                    shot(&v.app, "full_page", "Full page", &shots.full_page),
                    shot(&v.app, "open_graph", "Open Graph image", &shots.open_graph),
                    shot(&v.app, "thumbnail", "Thumbnail", &shots.thumbnail),
                ],
                page_title: None,
                page_headings: Vec::new(),
                blocked_requests: Vec::new(),
            },
            CaptureOutcome::Refused { reason, .. } => CaptureView {
                status: "refused".into(),
                refusal: Some(reason.clone()),
                screenshots: Vec::new(),
                page_title: None,
                page_headings: Vec::new(),
                blocked_requests: Vec::new(),
            },
            CaptureOutcome::NotRequested => CaptureView {
                status: "not_requested".into(),
                refusal: None,
                screenshots: Vec::new(),
                page_title: None,
                page_headings: Vec::new(),
                blocked_requests: Vec::new(),
            },
        };
        let capture = match v.capture.page() {
            Some(p) => CaptureView {
                page_title: p.title.clone(),
                page_headings: p.headings.clone(),
                blocked_requests: p.blocked_requests.clone(),
                ..capture
            },
            None => capture,
        };
        let f = &v.facts;
        let facts = FactsView {
            commit: f.commit.clone(),
            manifest_title: f.manifest.title.clone(),
            manifest_tags: f.manifest.tags.clone(),
            publish: match f.manifest.publish {
                portfolio::facts::PublishPolicy::Review => "review",
                portfolio::facts::PublishPolicy::Auto => "auto",
                portfolio::facts::PublishPolicy::Off => "off",
            }
            .into(),
            readme_title: f.readme.as_ref().and_then(|r| r.title.clone()),
            languages: f
                .languages
                .iter()
                .map(|l| LanguageView {
                    name: l.name.clone(),
                    lines: l.lines,
                    permille: l.permille,
                })
                .collect(),
            frameworks: f.frameworks.clone(),
            commits: f.history.commits,
            authors: f.history.authors,
            first_commit: f.history.first_commit,
            last_commit: f.history.last_commit,
            live_url: f.live_url.clone(),
            notes: f.notes.clone(),
        };
        let drafted_by_kind = match &v.drafted_by {
            DraftedBy::Offline => "offline",
            DraftedBy::Model { .. } => "model",
            DraftedBy::Manifest => "manifest",
            DraftedBy::Owner { .. } => "owner",
        };
        let change = match &v.change {
            Change::Drafted { deploy: Some(n) } => format!("drafted after deploy #{n}"),
            Change::Drafted { deploy: None } => "drafted".into(),
            Change::Edited { fields } => format!("edited: {}", fields.join(", ")),
        };
        let approve_blocked = match (v.state, v.capture.refusal()) {
            (ReviewState::Draft | ReviewState::Rejected, Some(reason)) => Some(format!(
                "its screenshot was refused ({reason}); fix the app, then regenerate"
            )),
            (ReviewState::Draft | ReviewState::Rejected, None) => None,
            (state, _) => Some(format!(
                "it is {}; only draft or rejected versions can be approved",
                state.as_str()
            )),
        };
        VersionView {
            app: v.app.clone(),
            number: v.number,
            state: v.state.as_str().into(),
            created_at_ms: v.created_at_ms,
            author: v.author.clone(),
            change,
            drafted_by_kind: drafted_by_kind.into(),
            drafted_by: v.drafted_by.to_string(),
            notes: v.notes.clone(),
            title: v.text.title.clone(),
            summary: v.text.summary.clone(),
            body: v.text.body.clone(),
            tags: v.text.tags.clone(),
            capture,
            facts,
            reviewed_by: v.reviewed_by.clone(),
            reviewed_at_ms: v.reviewed_at_ms,
            approve_blocked,
        }
    }

    /// When it was made, for people.
    pub fn created(&self) -> String {
        platform::time::fmt_time(self.created_at_ms)
    }

    /// Who reviewed it and when, for people.
    pub fn reviewed(&self) -> String {
        match (&self.reviewed_by, self.reviewed_at_ms) {
            (Some(by), Some(at)) => format!("{by}, {}", platform::time::fmt_time(at)),
            (Some(by), None) => by.clone(),
            _ => "—".into(),
        }
    }

    /// The body's paragraphs.
    pub fn paragraphs(&self) -> Vec<&str> {
        self.body
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The tags as the edit form shows them.
    pub fn tags_text(&self) -> String {
        self.tags.join(", ")
    }

    /// The screenshots the review page shows large (no thumbnail).
    pub fn review_shots(&self) -> Vec<&ShotView> {
        self.capture
            .screenshots
            .iter()
            .filter(|s| s.kind != "thumbnail")
            .collect()
    }

    /// Waiting for the owner?
    pub fn is_draft(&self) -> bool {
        self.state == "draft"
    }
}

/// A diff line for the page: its CSS class and text.
pub struct DiffLine {
    /// `d-add`, `d-del`, `d-hunk`, `d-head` or `d-ctx`.
    pub class: &'static str,
    /// The line (escaped when rendered).
    pub text: String,
}

/// A unified diff, line by line with classes.
pub fn diff_lines(unified: &str) -> Vec<DiffLine> {
    unified
        .lines()
        .map(|l| {
            let class = if l.starts_with("+++") || l.starts_with("---") {
                "d-head"
            } else if l.starts_with("@@") {
                "d-hunk"
            } else if l.starts_with('+') {
                "d-add"
            } else if l.starts_with('-') {
                "d-del"
            } else {
                "d-ctx"
            };
            DiffLine {
                class,
                text: l.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_never_exceeds_its_width() {
        let f = FactsView {
            commit: String::new(),
            manifest_title: String::new(),
            manifest_tags: vec![],
            publish: "review".into(),
            readme_title: None,
            languages: [("Rust", 700), ("HTML", 250), ("CSS", 60)]
                .map(|(n, p)| LanguageView {
                    name: n.into(),
                    lines: 1,
                    permille: p,
                })
                .to_vec(),
            frameworks: vec![],
            commits: 0,
            authors: 0,
            first_commit: 0,
            last_commit: 0,
            live_url: None,
            notes: vec![],
        };
        let bar = f.bar();
        assert_eq!(
            bar.iter().map(|s| (s.x, s.width)).collect::<Vec<_>>(),
            [(0, 700), (700, 250), (950, 50)]
        );
        assert_eq!(bar[0].percent, "70.0 %");
        assert_eq!(f.commit_span(), "—");
    }

    #[test]
    fn diff_lines_are_classified() {
        let lines = diff_lines("--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same");
        let classes: Vec<_> = lines.iter().map(|l| l.class).collect();
        assert_eq!(
            classes,
            ["d-head", "d-head", "d-hunk", "d-del", "d-add", "d-ctx"]
        );
    }
}
