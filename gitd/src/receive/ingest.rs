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

/// A pack that made it into the repository.
pub struct Ingested {
    /// The `.keep` file that protects it until the refs point into it.
    pub keep: Option<PathBuf>,
}

/// Reads the pack from `input` into `repo`. `thin` completes thin packs
/// against the repository (needed once it has refs; slower, as entries are
/// re-encoded). The error is one line for the client.
pub fn ingest(
    repo: &gix::Repository,
    input: &mut dyn BufRead,
    max_bytes: u64,
    thin: bool,
) -> Result<Ingested, String> {
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
        return Err(too_big(max_bytes));
    }
    result
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        })
        .and_then(|outcome| {
            // On disk before any ref points into it (git fsyncs packs too).
            for path in [&outcome.data_path, &outcome.index_path]
                .into_iter()
                .flatten()
            {
                sync(path).map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
            }
            if outcome.data_path.is_some() {
                sync(&pack_dir).map_err(|e| format!("cannot sync {}: {e}", pack_dir.display()))?;
            }
            Ok(Ingested {
                keep: outcome.keep_path,
            })
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
