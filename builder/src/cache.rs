//! Build caches: what package managers keep between runs (npm's cache, pip
//! and everything else under `~/.cache`, apt's downloaded archives and
//! lists) lives **outside the image**, in
//! `<home>/cache/build/<app>/<base>/`, bind-mounted at the tools' cache paths
//! during `run` steps and never packed — like a BuildKit
//! `RUN --mount=type=cache` or a buildpack's cache layer.
//!
//! Two things follow: identical inputs give an identical image (npm's
//! cache index, for one, records download times), and a warm rebuild reuses
//! the downloads. The cache is per app — the app of the repository pushed
//! to ([`crate::identity`]), never the name a manifest claims — so one
//! app's steps can never read or poison another's; and it is owned on the
//! host by the first id of that app's range ([`crate::ids`]), so even a
//! path to another app's cache would be another owner's files. It is per
//! base family (`debian-bookworm`, `busybox`), so a suite change starts
//! clean. It is locked for the build's duration (concurrent builds of one
//! app take turns). Deleting it at any time is safe: the next build is
//! slower, not different; a cache owned by another range (made before the
//! app had its range) is started afresh.

use crate::error::{IoContext, Result};
use crate::identity::Identity;
use crate::ids::IdRange;
use crate::isolate::CacheMount;
use crate::log::LogSink;
use crate::plan::BaseSpec;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
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
    /// Open (creating) and lock the cache of `owner` on `base` under
    /// `root` (normally `<home>/cache/build`), owned by `ids.first`.
    pub fn open(
        root: &Path,
        owner: &Identity,
        base: &BaseSpec,
        ids: IdRange,
        log: &dyn LogSink,
    ) -> Result<BuildCache> {
        let app = owner.app();
        let dir = root
            .join(owner.cache_dir())
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
        let owned_by = std::fs::metadata(&dir).ctx("reading", &dir)?.uid();
        if owned_by != ids.first {
            // Made for another range (or before ranges existed): its files
            // would be unwritable, or someone else's. Start afresh.
            if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
                log.line(&format!(
                    "-----> Build cache of {app} started afresh (it belonged to host uid {owned_by}, not the app's range)"
                ));
            }
            std::fs::remove_dir_all(&dir).ctx("clearing build cache", &dir)?;
            std::fs::create_dir(&dir).ctx("creating build cache", &dir)?;
        }
        let mut paths: Vec<(&str, &'static str)> = HOME_CACHES.to_vec();
        if matches!(base, BaseSpec::Debian { .. }) {
            paths.extend_from_slice(APT_CACHES);
        }
        let mut mounts = Vec::new();
        let mut owned = vec![dir.clone()];
        for (name, target) in paths {
            let host = dir.join(name);
            std::fs::create_dir_all(&host).ctx("creating build cache", &host)?;
            owned.push(host.clone());
            mounts.push(CacheMount { host, target });
        }
        // apt expects its partial/ download directories to exist.
        for sub in [
            "apt-cache/archives",
            "apt-cache/archives/partial",
            "apt-lists/partial",
        ] {
            if dir.join(sub.split('/').next().unwrap_or(sub)).is_dir() {
                std::fs::create_dir_all(dir.join(sub)).ctx("creating", &dir.join(sub))?;
                owned.push(dir.join(sub));
            }
        }
        for d in &owned {
            std::os::unix::fs::chown(d, Some(ids.first), Some(ids.first))
                .ctx("handing the build cache to the app's ids", d)?;
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
pub(crate) fn slug(name: &str) -> String {
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

    const IDS: IdRange = IdRange {
        first: 1_700_000_000,
        count: 65536,
    };

    fn app(name: &str) -> Identity {
        Identity::Repository(name.into())
    }

    #[test]
    fn debian_caches_include_apt_and_are_per_app_and_owned_by_its_range() {
        let d = tempfile::tempdir().unwrap();
        let log = crate::log::NullSink;
        let deb = BaseSpec::Debian {
            suite: "bookworm".into(),
        };
        let a = BuildCache::open(d.path(), &app("a"), &deb, IDS, &log).unwrap();
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
        for m in a.mounts() {
            assert_eq!(
                std::fs::metadata(&m.host).unwrap().uid(),
                IDS.first,
                "{m:?}"
            );
        }
        let b = BuildCache::open(d.path(), &app("b"), &BaseSpec::Busybox, IDS, &log).unwrap();
        assert_eq!(b.mounts().len(), 2);
        assert_ne!(a.dir(), b.dir());
    }

    #[test]
    fn a_cache_of_another_range_starts_afresh() {
        let d = tempfile::tempdir().unwrap();
        let sink = crate::log::MemorySink::default();
        let c = BuildCache::open(d.path(), &app("a"), &BaseSpec::Busybox, IDS, &sink).unwrap();
        std::fs::write(c.dir().join("npm/old"), "x").unwrap();
        let dir = c.dir().to_path_buf();
        drop(c);
        let other = IdRange {
            first: IDS.first + 65536,
            ..IDS
        };
        let c = BuildCache::open(d.path(), &app("a"), &BaseSpec::Busybox, other, &sink).unwrap();
        assert_eq!(c.dir(), dir);
        assert!(!dir.join("npm/old").exists());
        assert!(
            sink.lines().iter().any(|l| l.contains("started afresh")),
            "{:?}",
            sink.lines()
        );
        let local = BuildCache::open(
            d.path(),
            &Identity::Local("a".into()),
            &BaseSpec::Busybox,
            IDS,
            &sink,
        )
        .unwrap();
        assert_ne!(local.dir(), c.dir());
    }

    #[test]
    fn a_second_build_of_the_same_app_waits_for_the_first() {
        let d = tempfile::tempdir().unwrap();
        let first = BuildCache::open(
            d.path(),
            &app("a"),
            &BaseSpec::Busybox,
            IDS,
            &crate::log::NullSink,
        )
        .unwrap();
        let root = d.path().to_path_buf();
        let waited = std::thread::spawn(move || {
            let sink = crate::log::MemorySink::default();
            let start = std::time::Instant::now();
            let _second =
                BuildCache::open(&root, &app("a"), &BaseSpec::Busybox, IDS, &sink).unwrap();
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
