//! Build caches: what package managers keep between runs (npm's cache, pip
//! and everything else under `~/.cache`, apt's downloaded archives and
//! lists) lives **outside the image**, in
//! `<home>/cache/build/<app>/<base>/`, bind-mounted at the tools' cache paths
//! during `run` steps and never packed — like a BuildKit
//! `RUN --mount=type=cache` or a buildpack's cache layer.
//!
//! Two things follow: identical inputs give an identical image (npm's
//! cache index, for one, records download times), and a warm rebuild reuses
//! the downloads. The cache is per app, so one app's steps can never poison
//! another's, and per base family (`debian-bookworm`, `busybox`), so a
//! suite change starts clean. It is locked for the build's duration
//! (concurrent builds of one app take turns). Deleting it at any time is
//! safe: the next build is slower, not different.

use crate::error::{IoContext, Result};
use crate::isolate::CacheMount;
use crate::log::LogSink;
use crate::plan::BaseSpec;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// (directory name in the cache, path in the rootfs) for every base.
const HOME_CACHES: &[(&str, &str)] = &[("npm", "/root/.npm"), ("xdg-cache", "/root/.cache")];
/// The same for Debian bases (apt).
const APT_CACHES: &[(&str, &str)] = &[
    ("apt-cache", "/var/cache/apt"),
    ("apt-lists", "/var/lib/apt/lists"),
];

/// Step environment defaults that keep tools on the mounted caches even
/// when the manifest moves `HOME` (the manifest's env still wins).
pub const CACHE_ENV: &[(&str, &str)] = &[
    ("npm_config_cache", "/root/.npm"),
    ("XDG_CACHE_HOME", "/root/.cache"),
];

/// An app's build cache, locked while this value lives.
#[derive(Debug)]
pub struct BuildCache {
    dir: PathBuf,
    mounts: Vec<CacheMount>,
    _lock: std::fs::File,
}

impl BuildCache {
    /// Open (creating) and lock the cache of `app` on `base` under `root`
    /// (normally `<home>/cache/build`).
    pub fn open(root: &Path, app: &str, base: &BaseSpec, log: &dyn LogSink) -> Result<BuildCache> {
        let dir = root
            .join(slug(app))
            .join(slug(&base.to_string().replace(':', "-")));
        std::fs::create_dir_all(&dir).ctx("creating build cache", &dir)?;
        let lock_path = dir.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).ctx("creating lock", &lock_path)?;
        // SAFETY: flock on a file descriptor we own, valid for the call.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            log.line(&format!(
                "-----> Waiting for the build cache of {app} (another build of it is running)"
            ));
            // SAFETY: as above, blocking this time.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error()).ctx("locking", &lock_path);
            }
        }
        let mut paths: Vec<(&str, &'static str)> = HOME_CACHES.to_vec();
        if matches!(base, BaseSpec::Debian { .. }) {
            paths.extend_from_slice(APT_CACHES);
        }
        let mut mounts = Vec::new();
        for (name, target) in paths {
            let host = dir.join(name);
            std::fs::create_dir_all(&host).ctx("creating build cache", &host)?;
            mounts.push(CacheMount { host, target });
        }
        // apt expects its partial/ download directories to exist.
        for sub in ["apt-cache/archives/partial", "apt-lists/partial"] {
            if dir.join(sub.split('/').next().unwrap_or(sub)).is_dir() {
                std::fs::create_dir_all(dir.join(sub)).ctx("creating", &dir.join(sub))?;
            }
        }
        Ok(BuildCache {
            dir,
            mounts,
            _lock: lock,
        })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What to mount where during steps.
    pub fn mounts(&self) -> &[CacheMount] {
        &self.mounts
    }
}

/// A file-name-safe form of an app or base name (`debian:bookworm` →
/// `debian-bookworm`); anything unusual is replaced, and long or empty
/// names get a hash so two names never share a directory by accident.
fn slug(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean == name && !name.is_empty() && name.len() <= 64 && !name.starts_with('-') {
        return clean;
    }
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!("{}-{}", &clean[..clean.len().min(40)], &h[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe_and_distinct() {
        assert_eq!(slug("node-web"), "node-web");
        assert!(slug("debian:bookworm").starts_with("debian-bookworm-"));
        assert_eq!(slug("debian-bookworm"), "debian-bookworm");
        assert_ne!(slug("a/b"), slug("a-b"));
        assert_ne!(slug("a:b"), slug("a-b"));
        assert!(!slug("../..").contains('/') && !slug("../..").contains(".."));
        assert!(!slug("").is_empty());
        assert!(slug(&"x".repeat(300)).len() < 64);
    }

    #[test]
    fn debian_caches_include_apt_and_are_per_app() {
        let d = tempfile::tempdir().unwrap();
        let log = crate::log::NullSink;
        let deb = BaseSpec::Debian {
            suite: "bookworm".into(),
        };
        let a = BuildCache::open(d.path(), "a", &deb, &log).unwrap();
        let targets: Vec<&str> = a.mounts().iter().map(|m| m.target).collect();
        assert_eq!(
            targets,
            [
                "/root/.npm",
                "/root/.cache",
                "/var/cache/apt",
                "/var/lib/apt/lists"
            ]
        );
        assert!(a.dir().join("apt-cache/archives/partial").is_dir());
        assert!(
            a.dir().ends_with("a/debian-bookworm"),
            "{}",
            a.dir().display()
        );
        let b = BuildCache::open(d.path(), "b", &BaseSpec::Busybox, &log).unwrap();
        assert_eq!(b.mounts().len(), 2);
        assert_ne!(a.dir(), b.dir());
    }

    #[test]
    fn a_second_build_of_the_same_app_waits_for_the_first() {
        let d = tempfile::tempdir().unwrap();
        let first =
            BuildCache::open(d.path(), "a", &BaseSpec::Busybox, &crate::log::NullSink).unwrap();
        let root = d.path().to_path_buf();
        let waited = std::thread::spawn(move || {
            let sink = crate::log::MemorySink::default();
            let start = std::time::Instant::now();
            let _second = BuildCache::open(&root, "a", &BaseSpec::Busybox, &sink).unwrap();
            (start.elapsed(), sink.lines())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
        let (elapsed, lines) = waited.join().unwrap();
        assert!(
            elapsed >= std::time::Duration::from_millis(250),
            "{elapsed:?}"
        );
        assert!(
            lines[0].contains("Waiting for the build cache of a"),
            "{lines:?}"
        );
    }
}
