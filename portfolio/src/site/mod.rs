//! The static portfolio site: built in memory from the owner's
//! [`Profile`] and the published versions, then served by the daemon
//! ([`SiteHandle`], [`router`]), written as plain files ([`Site::export`])
//! or committed to the owner's git remote ([`publish`]).
//!
//! Reproducible: the same profile and versions give the same bytes (no
//! clock reads; order by approval time then app name; times in the feed
//! and sitemap come from the stored review times).

mod build;
mod pages;
pub mod publish;
mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use build::PROJECTS_PER_PAGE;
pub use publish::{publish, PublishError, PublishOutcome, PublishTarget};
pub use serve::{router, SiteHandle, MOUNT};

/// The owner's public profile (`byteport portfolio profile`), persisted by
/// the platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// A few sentences; blank lines separate paragraphs.
    pub bio: String,
    /// Links shown under the bio (GitHub, Mastodon, e-mail …).
    pub links: Vec<ProfileLink>,
    /// Absolute URL where the site is served, ending in `/`, e.g.
    /// `https://alice.github.io/` or `http://127.0.0.1:8080/portfolio/`.
    /// Used for Open Graph, the sitemap and the feed (they need absolute
    /// URLs); pages link to each other relatively.
    pub site_url: String,
    /// Site title (default: "NAME — projects").
    pub site_title: Option<String>,
}

/// One profile link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileLink {
    /// Text shown.
    pub label: String,
    /// `https://…`, `http://…` or `mailto:…`; others are dropped.
    pub url: String,
}

/// Site failures.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The profile cannot make a site.
    #[error("portfolio profile: {0}")]
    Profile(String),
    /// A template failed to render.
    #[error("rendering {page}: {source}")]
    Render {
        /// The page.
        page: String,
        /// askama's error.
        source: askama::Error,
    },
    /// Writing the export failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One file of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SiteFile {
    /// Rendered bytes.
    Bytes {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
    /// A screenshot, read from the image store when served or exported.
    Image { source: PathBuf },
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStats {
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// A built site. Cheap to query; rebuild it when a version is approved or
/// the profile changes.
#[derive(Debug, Clone, Default)]
pub struct Site {
    files: BTreeMap<String, SiteFile>,
}

impl Site {
    /// Paths of all files (`index.html`, `projects/hello/index.html`, …).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The file at a request path as the daemon sees it under
    /// `/portfolio/`: `""` or `/` is the index, `projects/x/` is
    /// `projects/x/index.html`. Returns the content type and bytes.
    pub fn render(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
        let path = path.trim_start_matches('/');
        if path.split('/').any(|seg| seg == ".." || seg == ".") {
            return None;
        }
        let key = if path.is_empty() || path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_string()
        };
        match self.files.get(&key)? {
            SiteFile::Bytes {
                content_type,
                bytes,
            } => Some((content_type, bytes.clone())),
            SiteFile::Image { source } => std::fs::read(source).ok().map(|b| ("image/webp", b)),
        }
    }

    /// The 404 page, for paths [`render`](Self::render) does not know.
    pub fn not_found(&self) -> (&'static str, Vec<u8>) {
        self.render("404.html")
            .unwrap_or(("text/plain; charset=utf-8", b"not found".to_vec()))
    }

    /// Writes the site into `dir` as plain files. `dir` must be empty or
    /// missing (so a typo cannot delete someone's files); every byte comes
    /// from the inputs, so the same inputs give an identical tree.
    pub fn export(&self, dir: &Path) -> Result<ExportStats, SiteError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SiteError::Write { path, source }
        };
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
            if entries.next().is_some() {
                return Err(SiteError::Write {
                    path: dir.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "the export directory is not empty; choose a new or empty directory",
                    ),
                });
            }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut stats = ExportStats::default();
        for (rel, file) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let written = match file {
                SiteFile::Bytes { bytes, .. } => {
                    std::fs::write(&path, bytes).map_err(io(&path))?;
                    bytes.len() as u64
                }
                SiteFile::Image { source } => std::fs::copy(source, &path).map_err(io(&path))?,
            };
            stats.files += 1;
            stats.bytes += written;
        }
        Ok(stats)
    }

    fn insert_bytes(&mut self, path: String, content_type: &'static str, bytes: Vec<u8>) {
        self.files.insert(
            path,
            SiteFile::Bytes {
                content_type,
                bytes,
            },
        );
    }
}

pub use build::build;
