//! `git-upload-pack` (clone, fetch, ls-remote): protocol v2 when the
//! client asks for it through `GIT_PROTOCOL` (sent by OpenSSH as an `env`
//! request), v1 or v0 otherwise.
//!
//! Data flow: [`refs`] (what the client sees) → [`v0`] or [`v2`] (request
//! parsing, [`negotiate`], [`shallow`]) → [`pack`] (which objects, over
//! [`graph`]'s walk, streamed by gix-pack).

pub mod graph;
pub mod locate;
pub mod negotiate;
pub mod pack;
pub mod refs;
pub mod shallow;
pub mod v0;
pub mod v2;

use std::io::{self, BufRead, Write};
use std::path::Path;

use crate::pktline::{self, PktError};

pub use pack::Sent;

/// Errors that end an upload-pack session.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The connection failed or went idle.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The request was refused; the client was already told in-band
    /// (an `ERR` line or side-band 3).
    #[error("{0}")]
    Refused(String),
    /// The repository cannot be used.
    #[error("repository {path}: {message}")]
    Repo {
        /// The repository.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl UploadError {
    pub(crate) fn repo(repo: &gix::Repository, e: impl std::fmt::Display) -> UploadError {
        UploadError::Repo {
            path: repo.path().display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<PktError> for UploadError {
    fn from(e: PktError) -> Self {
        match e {
            PktError::Io(e) => UploadError::Io(e),
            other => UploadError::Protocol(other.to_string()),
        }
    }
}

/// Which protocol the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The original protocol (no `GIT_PROTOCOL`).
    V0,
    /// `version=1`: v0 preceded by a `version 1` line.
    V1,
    /// `version=2`.
    V2,
}

impl Version {
    /// Reads `GIT_PROTOCOL` (colon-separated `key=value` items; the highest
    /// version this server speaks wins).
    pub fn from_git_protocol(value: &str) -> Version {
        let mut v = Version::V0;
        for item in value.split(':') {
            match item.trim() {
                "version=2" => v = Version::V2,
                "version=1" if v == Version::V0 => v = Version::V1,
                _ => {}
            }
        }
        v
    }
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The protocol spoken.
    pub version: Version,
    /// Packs sent (none for ls-remote).
    pub packs: Vec<Sent>,
}

/// Runs upload-pack on the repository at `repo_path`, speaking the version
/// `git_protocol` (the client's `GIT_PROTOCOL`) asks for.
pub fn run(
    repo_path: &Path,
    git_protocol: &str,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<Outcome, UploadError> {
    let mut repo = gix::open(repo_path).map_err(|e| UploadError::Repo {
        path: repo_path.display().to_string(),
        message: e.to_string(),
    })?;
    // Commits and trees are read many times while counting objects.
    repo.object_cache_size_if_unset(16 << 20);
    let version = Version::from_git_protocol(git_protocol);
    let packs = match version {
        Version::V2 => v2::run(&repo, input, output)?,
        Version::V1 | Version::V0 => {
            if version == Version::V1 {
                pktline::data(output, b"version 1\n")?;
            }
            v0::run(&repo, input, output)?.into_iter().collect()
        }
    };
    output.flush()?;
    Ok(Outcome { version, packs })
}

#[cfg(test)]
mod tests;
