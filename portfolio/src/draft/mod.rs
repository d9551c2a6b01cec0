//! Drafted write-ups: a [`Drafter`] turns [`Facts`] into a [`DraftText`].
//!
//! - [`OfflineDrafter`]: deterministic, from the facts alone; the default
//!   and every other drafter's fallback.
//! - [`LlmDrafter`]: any OpenAI-compatible endpoint (OpenAI, Ollama,
//!   llama.cpp's `llama-server`, vLLM) through `async-openai`; JSON-schema
//!   response format, then plain JSON mode, then offline — each step and why
//!   it was taken is recorded in [`Drafted::notes`].
//!
//! A manifest `description "TEXT"` is never drafted: [`draft_for`] uses it as
//! is. Whatever a drafter returns passes [`sanitize`] before it is stored.

mod llm;
mod offline;
mod prompt;
pub mod sanitize;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::facts::Facts;

pub use llm::{LlmConfig, LlmDrafter};
pub use offline::OfflineDrafter;

/// The text of a portfolio entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftText {
    /// ≤ 80 characters.
    pub title: String,
    /// One sentence for cards, ≤ 160 characters.
    pub summary: String,
    /// The write-up: plain-text paragraphs separated by blank lines,
    /// ≤ 1200 characters (a manifest description may be up to 2000).
    pub body: String,
    /// ≤ 8 lowercase tags.
    pub tags: Vec<String>,
}

/// Who wrote a version's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DraftedBy {
    /// The offline drafter.
    Offline,
    /// A model, through the named response format.
    Model {
        /// The model name sent in the request.
        model: String,
        /// `json_schema` or `json_object`.
        response_format: String,
    },
    /// The manifest's `description "TEXT"`.
    Manifest,
    /// The owner, by editing.
    Owner {
        /// Who edited.
        user: String,
    },
}

impl std::fmt::Display for DraftedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DraftedBy::Offline => f.write_str("offline drafter"),
            DraftedBy::Model {
                model,
                response_format,
            } => write!(f, "model {model} ({response_format})"),
            DraftedBy::Manifest => f.write_str("manifest description"),
            DraftedBy::Owner { user } => write!(f, "edited by {user}"),
        }
    }
}

/// A drafter's result: the text, who wrote it, and what happened on the
/// way (retries, fallbacks and their reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drafted {
    /// The sanitized text.
    pub text: DraftText,
    /// Who wrote it.
    pub by: DraftedBy,
    /// What happened, in order, e.g. `json_schema: HTTP 429, retrying in
    /// 500 ms`, `fell back to the offline drafter: timeout after 60 s`.
    pub notes: Vec<String>,
}

/// Turns facts into a draft. Never fails: a drafter that cannot do its job
/// falls back to [`OfflineDrafter`] and says why in [`Drafted::notes`].
pub trait Drafter: Send + Sync {
    /// Drafts a write-up of `facts`.
    fn draft<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Drafted>;
}

/// Applies the manifest first: `description "TEXT"` is used as is (the
/// drafter is not asked); otherwise `drafter` drafts.
pub async fn draft_for(drafter: &dyn Drafter, facts: &Facts) -> Drafted {
    if let Some(text) = &facts.manifest.description {
        let allowed = allowed_links(facts);
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let mut draft = OfflineDrafter.draft_sync(facts);
        // "As is": the owner's own words, only made safe (no HTML) and
        // kept within the manifest's own 2000-character limit.
        draft.text.body = sanitize::clean_text(
            text,
            manifest_spec::limits::MAX_DESCRIPTION_CHARS,
            true,
            &allowed,
        );
        draft.text.summary = offline::first_sentence(&draft.text.body, sanitize::MAX_SUMMARY);
        draft.by = DraftedBy::Manifest;
        draft.notes = vec![if text.is_empty() {
            "the manifest says `description off`: no write-up".into()
        } else {
            "the manifest's description is used as is".into()
        }];
        return draft;
    }
    drafter.draft(facts).await
}

/// Links a draft may keep: the app's live URL and the repository's.
pub(crate) fn allowed_links(facts: &Facts) -> Vec<String> {
    facts
        .live_url
        .iter()
        .chain(facts.repository_url.iter())
        .cloned()
        .collect()
}

/// Sanitizes a drafter's raw text with the facts' allowed links.
pub(crate) fn sanitize_text(raw: &DraftText, facts: &Facts) -> DraftText {
    let allowed = allowed_links(facts);
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    DraftText {
        title: sanitize::clean_text(&raw.title, sanitize::MAX_TITLE, false, &allowed),
        summary: sanitize::clean_text(&raw.summary, sanitize::MAX_SUMMARY, false, &allowed),
        body: sanitize::clean_text(&raw.body, sanitize::MAX_BODY, true, &allowed),
        tags: sanitize::clean_tags(&raw.tags),
    }
}
