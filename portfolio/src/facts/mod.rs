//! What a write-up can honestly say about a project, gathered from the
//! pushed commit (read from the object database with gix, no checkout) and
//! the live page.
//!
//! [`Facts`] is all a [`crate::draft::Drafter`] ever sees. It has no field
//! for environment variables, config vars or secrets, and
//! [`ManifestFacts`] is built from the manifest's `app` and `portfolio`
//! block only: nothing secret can reach a model by construction.
//!
//! Every read is capped ([`Limits`]): a hostile repository (huge files,
//! deep trees, binary README, invalid UTF-8) costs bounded time and memory
//! and leaves a note instead of an error.

mod frameworks;
mod git;
mod languages;
mod readme;

use serde::{Deserialize, Serialize};

use crate::capture::PageFacts;

pub use git::{gather, FactsError};

/// Caps on what is read from a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tree entries visited (files and directories together).
    pub max_entries: usize,
    /// Directory depth below the root.
    pub max_depth: usize,
    /// Largest blob counted for languages (bigger ones are skipped).
    pub max_blob_bytes: u64,
    /// Bytes of blobs read in total for languages.
    pub max_total_bytes: u64,
    /// Largest README / manifest / dependency file read.
    pub max_text_file_bytes: u64,
    /// Commits walked for the history.
    pub max_commits: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 20_000,
            max_depth: 24,
            max_blob_bytes: 512 * 1024,
            max_total_bytes: 32 * 1024 * 1024,
            max_text_file_bytes: 256 * 1024,
            max_commits: 100_000,
        }
    }
}

/// The facts of one pushed commit plus its live page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The app's name.
    pub app: String,
    /// The commit id the facts were read from.
    pub commit: String,
    /// From the manifest's `portfolio` block.
    pub manifest: ManifestFacts,
    /// The README, as text.
    pub readme: Option<Readme>,
    /// Languages by lines of code, most first.
    pub languages: Vec<LanguageShare>,
    /// Frameworks and notable libraries found in dependency files, sorted.
    pub frameworks: Vec<String>,
    /// Commit history.
    pub history: History,
    /// The live page's title, description and headings.
    pub page: Option<PageFacts>,
    /// The app's live URL, when it serves HTTP.
    pub live_url: Option<String>,
    /// The repository's public URL, when the owner set one.
    pub repository_url: Option<String>,
    /// Limits that were hit and inputs that were skipped, for the owner.
    pub notes: Vec<String>,
}

/// The manifest's say on the page. No env, no secrets: see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFacts {
    /// `portfolio { title }` (default: the app name).
    pub title: String,
    /// `portfolio { tags }`.
    pub tags: Vec<String>,
    /// `description "TEXT"`: used as is, never drafted; empty for
    /// `description off` (no write-up).
    pub description: Option<String>,
    /// `publish review | auto | off`.
    pub publish: PublishPolicy,
    /// `screenshot /PATH wait D`.
    pub screenshot: Option<ScreenshotSpec>,
}

/// The manifest's `publish` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishPolicy {
    /// The owner approves each draft.
    #[default]
    Review,
    /// Drafts publish directly (unless the capture was refused).
    Auto,
    /// No portfolio page.
    Off,
}

/// Which page to screenshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenshotSpec {
    /// Path on the app, starting with `/`.
    pub path: String,
    /// Wait after load, in milliseconds.
    pub wait_ms: u64,
}

impl ManifestFacts {
    /// Takes only the portfolio settings of a manifest (see the module docs).
    pub fn from_manifest(manifest: &manifest_spec::Manifest) -> Self {
        match &manifest.portfolio {
            None => ManifestFacts {
                title: manifest.app.clone(),
                tags: Vec::new(),
                description: None,
                // No portfolio block: the app did not ask for a page.
                publish: PublishPolicy::Off,
                screenshot: None,
            },
            Some(p) => ManifestFacts {
                title: p.title.clone(),
                tags: p.tags.clone(),
                description: match &p.description {
                    manifest_spec::Description::Auto => None,
                    manifest_spec::Description::Text(t) => Some(t.clone()),
                    manifest_spec::Description::Off => Some(String::new()),
                },
                publish: match p.publish {
                    manifest_spec::Publish::Review => PublishPolicy::Review,
                    manifest_spec::Publish::Auto => PublishPolicy::Auto,
                    manifest_spec::Publish::Off => PublishPolicy::Off,
                },
                screenshot: p.screenshot.as_ref().map(|s| ScreenshotSpec {
                    path: s.path.clone(),
                    wait_ms: s.wait_ms,
                }),
            },
        }
    }
}

/// The README as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readme {
    /// The file's path in the repository.
    pub path: String,
    /// Its first heading.
    pub title: Option<String>,
    /// Its first paragraphs as plain text (at most 3, 1500 characters).
    pub paragraphs: Vec<String>,
}

/// One language's lines of code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanguageShare {
    /// tokei's name for it (`Rust`, `Python`, `HTML`).
    pub name: String,
    /// Lines of code (not comments or blanks).
    pub lines: u64,
    /// Share of all counted lines, in tenths of a percent (0–1000).
    pub permille: u32,
}

/// The commit history reachable from the pushed commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Commits (at most [`Limits::max_commits`]).
    pub commits: u64,
    /// Whether the walk stopped at the cap.
    pub truncated: bool,
    /// Earliest commit time seen, Unix seconds.
    pub first_commit: i64,
    /// The pushed commit's time, Unix seconds.
    pub last_commit: i64,
    /// Distinct author e-mail addresses.
    pub authors: u64,
}
