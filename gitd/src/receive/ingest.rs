//! The pushed pack: read with a size limit, indexed and verified by
//! gix-pack into the repository's `objects/pack`, thin packs completed
//! from the repository's objects.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Counts pack bytes and stops the read past the limit.
struct Limited<'a> {
    inner: &'a mut dyn BufRead,
    read: u64,
    limit: u64,
    exceeded: &'a AtomicBool,
}

impl Read for Limited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.exceeded
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(io::Error::other(too_big(self.limit)));
        }
        Ok(n)
    }
}

/// The message for a pack over the limit.
pub fn too_big(limit: u64) -> String {
    format!(
        "the pack is larger than this server accepts ({}; the `max_pack_size` setting)",
        bytes(limit)
    )
}

/// `1 GiB`, `512 MiB`, `300 KiB`, `12 bytes`.
pub fn bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= size {
            let v = n as f64 / size as f64;
            return if v.fract() == 0.0 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

/// Why a pushed pack was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Larger than `max_pack_size`.
    #[error("{}", too_big(*limit))]
    TooBig {
        /// The limit.
        limit: u64,
    },
    /// gix-pack refused it (corrupt, truncated, absurd, or the connection
    /// failed while it was read).
    #[error("the pack cannot be indexed")]
    Pack(#[source] gix::Error),
    /// It could not be made durable.
    #[error("cannot sync {path}")]
    Sync {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A pack that made it into the repository.
pub struct Ingested {
    /// The `.keep` file that protects it until the refs point into it.
    pub keep: Option<PathBuf>,
}

/// Reads the pack from `input` into `repo`. `thin` completes thin packs
/// against the repository (needed once it has refs; slower, as entries are
/// re-encoded). The pack's files are made 0600.
pub fn ingest(
    repo: &gix::Repository,
    input: &mut dyn BufRead,
    max_bytes: u64,
    thin: bool,
) -> Result<Ingested, IngestError> {
    let pack_dir: PathBuf = repo.objects.store_ref().path().join("pack");
    let exceeded = AtomicBool::new(false);
    let mut limited = io::BufReader::with_capacity(
        128 * 1024,
        Limited {
            inner: input,
            read: 0,
            limit: max_bytes,
            exceeded: &exceeded,
        },
    );
    let interrupt = AtomicBool::new(false);
    let options = gix_pack::bundle::write::Options {
        thread_limit: None,
        alloc_limit_bytes: Some(1 << 30),
        ..Default::default()
    };
    let dir: Option<&Path> = Some(&pack_dir);
    let result = if thin {
        gix_pack::Bundle::write_to_directory(
            &mut limited,
            dir,
            &mut gix::progress::Discard,
            &interrupt,
            Some(repo.objects.clone()),
            gix::hash::Kind::Sha1,
            options,
        )
    } else {
        gix_pack::Bundle::write_to_directory(
            &mut limited,
            dir,
            &mut gix::progress::Discard,
            &interrupt,
            None::<gix::OdbHandle>,
            gix::hash::Kind::Sha1,
            options,
        )
    };
    if exceeded.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(IngestError::TooBig { limit: max_bytes });
    }
    let outcome = result.map_err(IngestError::Pack)?;
    // On disk (and private) before any ref points into it (git fsyncs
    // packs too).
    for path in [&outcome.data_path, &outcome.index_path, &outcome.keep_path]
        .into_iter()
        .flatten()
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        if Some(path) != outcome.keep_path.as_ref() {
            sync(path).map_err(|source| IngestError::Sync {
                path: path.clone(),
                source,
            })?;
        }
    }
    if outcome.data_path.is_some() {
        sync(&pack_dir).map_err(|source| IngestError::Sync {
            path: pack_dir.clone(),
            source,
        })?;
    }
    Ok(Ingested {
        keep: outcome.keep_path,
    })
}

fn sync(path: &Path) -> io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(3 << 19), "1.5 MiB");
        assert_eq!(bytes(100), "100 bytes");
        assert!(too_big(1 << 20).contains("1 MiB"));
    }
}
