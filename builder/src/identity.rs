//! Whose build it is. A push builds for the app of the repository it was
//! pushed to, whatever the manifest's `app` line says: that identity keys
//! the build cache and the uid/gid range, so a manifest naming another app
//! reaches nothing of that app's. (The repository's name wins, as it does
//! for the deploy; the build log notes a manifest that disagrees.) A local
//! build (`byteport build DIR`) has no repository: it uses the manifest's
//! name in a separate `_local/` namespace, never a pushed app's.

use std::path::PathBuf;

/// The owner of a build's caches and ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The app of the repository pushed to (given by the caller).
    Repository(String),
    /// A build without a repository, named by its manifest.
    Local(String),
}

/// The prefix of local builds' caches and id ranges (no app name, a DNS
/// label, can start with `_`).
pub const LOCAL_PREFIX: &str = "_local";

impl Identity {
    /// The repository's app when the caller names one, else a local build
    /// of `manifest_app`.
    pub fn new(repository_app: Option<&str>, manifest_app: &str) -> Identity {
        match repository_app {
            Some(app) => Identity::Repository(app.to_string()),
            None => Identity::Local(manifest_app.to_string()),
        }
    }

    /// The app name.
    pub fn app(&self) -> &str {
        match self {
            Identity::Repository(a) | Identity::Local(a) => a,
        }
    }

    /// The key of its id range (`hello`, `_local/hello`).
    pub fn key(&self) -> String {
        match self {
            Identity::Repository(a) => a.clone(),
            Identity::Local(a) => format!("{LOCAL_PREFIX}/{a}"),
        }
    }

    /// Its directory under the build-cache root (names made file-safe).
    pub fn cache_dir(&self) -> PathBuf {
        match self {
            Identity::Repository(a) => PathBuf::from(crate::cache::slug(a)),
            Identity::Local(a) => PathBuf::from(LOCAL_PREFIX).join(crate::cache::slug(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_and_local_builds_never_share_a_key() {
        let pushed = Identity::new(Some("victim"), "whatever");
        assert_eq!(pushed, Identity::Repository("victim".into()));
        assert_eq!(pushed.app(), "victim");
        let local = Identity::new(None, "victim");
        assert_ne!(pushed.key(), local.key());
        assert_ne!(pushed.cache_dir(), local.cache_dir());
        assert_eq!(local.cache_dir(), PathBuf::from("_local/victim"));
        assert!(!Identity::new(Some("../x"), "x")
            .cache_dir()
            .to_string_lossy()
            .contains(".."));
    }
}
