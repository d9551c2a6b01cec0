//! The owner's review: every draft is a numbered [`Version`] of an app's
//! entry, kept forever, moving through
//!
//! ```text
//!            approve                new approval
//!   Draft ─────────────▶ Approved ───────────────▶ Superseded
//!     │ reject               (published)
//!     ▼
//!   Rejected ── approve ──▶ Approved
//!   Draft ── newer draft or edit ──▶ Superseded
//! ```
//!
//! - A new deploy makes a new draft; the published version stays on the
//!   site until a newer one is approved.
//! - `publish auto` approves a fresh draft at once — unless its capture
//!   was refused (a broken page is never published; the version says why).
//! - An owner's edit makes a new version (author = the owner, drafted by
//!   `Owner`) that needs approval like any draft.
//! - [`Review::diff`] shows what changed against the previous version.

mod store;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::capture::CaptureOutcome;
use crate::draft::{DraftText, Drafted, DraftedBy};
use crate::facts::{Facts, PublishPolicy};

pub use store::{PortfolioStore, StateChange, StoreError};

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Waiting for the owner.
    Draft,
    /// Approved: the published version (only the newest approved one is).
    Approved,
    /// Turned down by the owner.
    Rejected,
    /// Replaced by a newer draft, edit or approval.
    Superseded,
}

impl ReviewState {
    /// `draft`, `approved`, `rejected`, `superseded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewState::Draft => "draft",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
            ReviewState::Superseded => "superseded",
        }
    }
    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => ReviewState::Draft,
            "approved" => ReviewState::Approved,
            "rejected" => ReviewState::Rejected,
            "superseded" => ReviewState::Superseded,
            _ => return None,
        })
    }
}

/// How a version came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Drafted after a deploy (or `regenerate`).
    Drafted {
        /// The deploy it was made for, if any.
        deploy: Option<i64>,
    },
    /// Edited by the owner.
    Edited {
        /// The fields that changed (`title`, `summary`, `body`, `tags`).
        fields: Vec<String>,
    },
}

/// One version of an app's portfolio entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The app.
    pub app: String,
    /// 1, 2, 3 … per app.
    pub number: u32,
    /// When it was made, Unix ms.
    pub created_at_ms: i64,
    /// Who made it: `byteport` for drafts, the owner's name for edits.
    pub author: String,
    /// Drafted or edited.
    pub change: Change,
    /// Who wrote the text.
    pub drafted_by: DraftedBy,
    /// What happened while drafting (fallbacks and why).
    pub notes: Vec<String>,
    /// The text.
    pub text: DraftText,
    /// The facts it was drafted from.
    pub facts: Facts,
    /// The screenshots, or why there are none.
    pub capture: CaptureOutcome,
    /// Review state.
    pub state: ReviewState,
    /// Who approved or rejected it.
    pub reviewed_by: Option<String>,
    /// When, Unix ms.
    pub reviewed_at_ms: Option<i64>,
}

/// Review failures.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The app has no portfolio versions (or not this one).
    #[error("{0}")]
    NotFound(String),
    /// The action does not fit the version's state.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One app's review at a glance (`byteport portfolio list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// The app.
    pub app: String,
    /// The newest version's number and state.
    pub latest: u32,
    /// Its state.
    pub latest_state: ReviewState,
    /// The published version, if any.
    pub published: Option<u32>,
    /// Why the newest version cannot be published, if it cannot.
    pub blocked: Option<String>,
}

/// What the owner changes in an edit; `None` keeps the field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextEdit {
    /// New title.
    pub title: Option<String>,
    /// New summary.
    pub summary: Option<String>,
    /// New body.
    pub body: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The review flow over a [`PortfolioStore`].
pub struct Review<S> {
    store: S,
}

impl<S: PortfolioStore> Review<S> {
    /// Reviews stored in `store`.
    pub fn new(store: S) -> Self {
        Review { store }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    async fn versions_of(&self, app: &str) -> Result<Vec<Version>, ReviewError> {
        let v = self.store.versions(app).await?;
        if v.is_empty() {
            return Err(ReviewError::NotFound(format!(
                "{app} has no portfolio drafts (is there a `portfolio` block in its Byteport, and has it deployed?)"
            )));
        }
        Ok(v)
    }

    /// Supersede every pending draft of `versions`.
    fn supersede_drafts(versions: &[Version], at_ms: i64) -> Vec<StateChange> {
        versions
            .iter()
            .filter(|v| v.state == ReviewState::Draft)
            .map(|v| StateChange {
                number: v.number,
                from: ReviewState::Draft,
                to: ReviewState::Superseded,
                by: None,
                at_ms,
            })
            .collect()
    }

    async fn add(&self, versions: &[Version], version: Version) -> Result<Version, ReviewError> {
        // Pending drafts are superseded before the new one exists: a crash
        // in between leaves no draft pending, never two.
        let changes = Self::supersede_drafts(versions, version.created_at_ms);
        if !changes.is_empty() {
            self.store.transition(&version.app, &changes).await?;
        }
        self.store.insert_version(&version).await?;
        Ok(version)
    }

    /// Stores a new draft for `facts.app` (after a deploy or `regenerate`).
    /// With `publish auto` it is approved at once unless its capture was
    /// refused. Returns the stored version.
    pub async fn record_draft(
        &self,
        facts: Facts,
        drafted: Drafted,
        capture: CaptureOutcome,
        deploy: Option<i64>,
    ) -> Result<Version, ReviewError> {
        let app = facts.app.clone();
        let versions = self.store.versions(&app).await?;
        let number = versions.last().map_or(1, |v| v.number + 1);
        let policy = facts.manifest.publish;
        let mut notes = drafted.notes;
        let auto = policy == PublishPolicy::Auto;
        if let (true, Some(reason)) = (auto, capture.refusal()) {
            notes.push(format!("not published automatically: {reason}"));
        }
        let version = Version {
            app: app.clone(),
            number,
            created_at_ms: now_ms(),
            author: "byteport".into(),
            change: Change::Drafted { deploy },
            drafted_by: drafted.by,
            notes,
            text: drafted.text,
            facts,
            capture,
            state: ReviewState::Draft,
            reviewed_by: None,
            reviewed_at_ms: None,
        };
        let version = self.add(&versions, version).await?;
        if auto && version.capture.refusal().is_none() {
            return self
                .approve(&app, "byteport (publish auto)", Some(number))
                .await;
        }
        Ok(version)
    }

    /// Approves `number` (default: the pending draft), publishing it and
    /// superseding the previously published version.
    pub async fn approve(
        &self,
        app: &str,
        by: &str,
        number: Option<u32>,
    ) -> Result<Version, ReviewError> {
        let versions = self.versions_of(app).await?;
        let target = pick(
            &versions,
            number,
            &[ReviewState::Draft, ReviewState::Rejected],
        )?;
        if let Some(reason) = target.capture.refusal() {
            return Err(ReviewError::Refused(format!(
                "{app} version {} cannot be published: its screenshot was refused ({reason}). Fix the app, then `byteport portfolio regenerate {app}`",
                target.number
            )));
        }
        let at_ms = now_ms();
        let mut changes: Vec<StateChange> = versions
            .iter()
            .filter(|v| v.state == ReviewState::Approved)
            .map(|v| StateChange {
                number: v.number,
                from: ReviewState::Approved,
                to: ReviewState::Superseded,
                by: None,
                at_ms,
            })
            .collect();
        changes.push(StateChange {
            number: target.number,
            from: target.state,
            to: ReviewState::Approved,
            by: Some(by.to_string()),
            at_ms,
        });
        self.store.transition(app, &changes).await?;
        let mut approved = target.clone();
        approved.state = ReviewState::Approved;
        approved.reviewed_by = Some(by.to_string());
        approved.reviewed_at_ms = Some(at_ms);
        Ok(approved)
    }

    /// Rejects the pending draft (the published version, if any, stays).
    pub async fn reject(&self, app: &str, by: &str) -> Result<Version, ReviewError> {
        let versions = self.versions_of(app).await?;
        let target = pick(&versions, None, &[ReviewState::Draft])?;
        let at_ms = now_ms();
        self.store
            .transition(
                app,
                &[StateChange {
                    number: target.number,
                    from: ReviewState::Draft,
                    to: ReviewState::Rejected,
                    by: Some(by.to_string()),
                    at_ms,
                }],
            )
            .await?;
        let mut rejected = target.clone();
        rejected.state = ReviewState::Rejected;
        rejected.reviewed_by = Some(by.to_string());
        rejected.reviewed_at_ms = Some(at_ms);
        Ok(rejected)
    }

    /// The owner's edit of the newest version: a new version, waiting for
    /// approval. The text is sanitized like a model's (no HTML, only the
    /// app's and repository's links), but not shortened beyond the
    /// manifest description's limit.
    pub async fn edit(&self, app: &str, by: &str, edit: TextEdit) -> Result<Version, ReviewError> {
        let versions = self.versions_of(app).await?;
        let base = versions.last().expect("versions_of is non-empty");
        let mut text = base.text.clone();
        let mut fields = Vec::new();
        let allowed = crate::draft::allowed_links(&base.facts);
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        use crate::draft::sanitize as s;
        if let Some(t) = edit
            .title
            .map(|t| s::clean_text(&t, s::MAX_TITLE, false, &allowed))
        {
            if t != text.title {
                text.title = t;
                fields.push("title".to_string());
            }
        }
        if let Some(t) = edit
            .summary
            .map(|t| s::clean_text(&t, s::MAX_SUMMARY, false, &allowed))
        {
            if t != text.summary {
                text.summary = t;
                fields.push("summary".to_string());
            }
        }
        if let Some(t) = edit.body.map(|t| {
            s::clean_text(
                &t,
                manifest_spec::limits::MAX_DESCRIPTION_CHARS,
                true,
                &allowed,
            )
        }) {
            if t != text.body {
                text.body = t;
                fields.push("body".to_string());
            }
        }
        if let Some(t) = edit.tags.map(|t| s::clean_tags(&t)) {
            if t != text.tags {
                text.tags = t;
                fields.push("tags".to_string());
            }
        }
        if fields.is_empty() {
            return Err(ReviewError::Refused(format!(
                "the edit changes nothing in {app} version {}",
                base.number
            )));
        }
        if text.title.is_empty() {
            return Err(ReviewError::Refused("a title cannot be empty".into()));
        }
        let version = Version {
            app: app.to_string(),
            number: base.number + 1,
            created_at_ms: now_ms(),
            author: by.to_string(),
            change: Change::Edited { fields },
            drafted_by: DraftedBy::Owner {
                user: by.to_string(),
            },
            notes: Vec::new(),
            text,
            facts: base.facts.clone(),
            capture: base.capture.clone(),
            state: ReviewState::Draft,
            reviewed_by: None,
            reviewed_at_ms: None,
        };
        self.add(&versions, version).await
    }

    /// Every app's newest version and published version.
    pub async fn list(&self) -> Result<Vec<AppSummary>, ReviewError> {
        let mut out = Vec::new();
        for app in self.store.apps().await? {
            let versions = self.store.versions(&app).await?;
            let Some(latest) = versions.last() else {
                continue;
            };
            out.push(AppSummary {
                app: app.clone(),
                latest: latest.number,
                latest_state: latest.state,
                published: published_of(&versions).map(|v| v.number),
                blocked: latest
                    .capture
                    .refusal()
                    .filter(|_| latest.state == ReviewState::Draft)
                    .map(String::from),
            });
        }
        Ok(out)
    }

    /// All versions of `app`, oldest first.
    pub async fn show(&self, app: &str) -> Result<Vec<Version>, ReviewError> {
        self.versions_of(app).await
    }

    /// A unified diff of version `number` (default: the newest) against the
    /// version before it.
    pub async fn diff(&self, app: &str, number: Option<u32>) -> Result<String, ReviewError> {
        let versions = self.versions_of(app).await?;
        let idx = match number {
            None => versions.len() - 1,
            Some(n) => versions
                .iter()
                .position(|v| v.number == n)
                .ok_or_else(|| ReviewError::NotFound(format!("{app} has no version {n}")))?,
        };
        let new = &versions[idx];
        let old_text = idx
            .checked_sub(1)
            .map(|i| as_text(&versions[i].text))
            .unwrap_or_default();
        let old_name = idx
            .checked_sub(1)
            .map(|i| format!("{app} v{}", versions[i].number))
            .unwrap_or_else(|| "(nothing)".into());
        let new_text = as_text(&new.text);
        Ok(TextDiff::from_lines(&old_text, &new_text)
            .unified_diff()
            .header(&old_name, &format!("{app} v{}", new.number))
            .to_string())
    }

    /// The published version of every app, for the site (sorted by app).
    pub async fn published(&self) -> Result<Vec<Version>, ReviewError> {
        let mut out = Vec::new();
        for app in self.store.apps().await? {
            let versions = self.store.versions(&app).await?;
            if let Some(v) = published_of(&versions) {
                out.push(v.clone());
            }
        }
        Ok(out)
    }
}

fn published_of(versions: &[Version]) -> Option<&Version> {
    versions
        .iter()
        .rev()
        .find(|v| v.state == ReviewState::Approved)
}

fn pick<'a>(
    versions: &'a [Version],
    number: Option<u32>,
    allowed: &[ReviewState],
) -> Result<&'a Version, ReviewError> {
    let app = &versions[0].app;
    let v = match number {
        Some(n) => versions
            .iter()
            .find(|v| v.number == n)
            .ok_or_else(|| ReviewError::NotFound(format!("{app} has no version {n}")))?,
        None => versions
            .iter()
            .rev()
            .find(|v| v.state == ReviewState::Draft)
            .ok_or_else(|| {
                ReviewError::Refused(format!("{app} has no draft waiting for review"))
            })?,
    };
    if !allowed.contains(&v.state) {
        return Err(ReviewError::Refused(format!(
            "{app} version {} is {}; only {} versions can be changed this way",
            v.number,
            v.state.as_str(),
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    Ok(v)
}

/// The text of a version as diffed and shown by `portfolio show`.
pub fn as_text(t: &DraftText) -> String {
    format!(
        "title: {}\nsummary: {}\ntags: {}\n\n{}\n",
        t.title,
        t.summary,
        t.tags.join(" "),
        t.body
    )
}
