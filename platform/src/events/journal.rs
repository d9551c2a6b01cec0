//! An app's event journal on disk: JSON lines in segment files named by
//! the first id they hold (`events-<id>.jsonl`), under
//! `$BYTEPORT_HOME/logs/<app>/` (directory 0700, files 0600). A segment
//! is closed when it passes [`JournalSettings::segment_bytes`]; the oldest
//! segments are deleted while the app's journal is over
//! [`JournalSettings::retention_bytes`].
//!
//! Writes are buffered (write-behind); a line cut short by a crash is
//! skipped when read back.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Event, EventId};

/// Rotation and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalSettings {
    /// A segment file is closed once it is this large.
    pub segment_bytes: u64,
    /// Oldest segments are deleted while an app's journal is larger.
    pub retention_bytes: u64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            segment_bytes: 8 << 20,
            retention_bytes: 64 << 20,
        }
    }
}

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";

fn segment_name(first: EventId) -> String {
    format!("{PREFIX}{first:020}{SUFFIX}")
}

/// The segments in `dir`, oldest first: (first id, path, size).
fn segments(dir: &Path) -> Vec<(EventId, PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(EventId, PathBuf, u64)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let first = name
                .to_str()?
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse()
                .ok()?;
            let size = e.metadata().ok()?.len();
            Some((first, e.path(), size))
        })
        .collect();
    out.sort_by_key(|s| s.0);
    out
}

/// One app's journal, open for appending.
pub struct Journal {
    dir: PathBuf,
    settings: JournalSettings,
    /// The segment being written: its writer and size so far.
    current: Option<(BufWriter<File>, u64)>,
    /// Closed and current segments: (first id, size), oldest first.
    sizes: Vec<(EventId, u64)>,
    last_id: EventId,
    warned: bool,
}

impl Journal {
    /// Opens the journal in `dir` (created on the first write).
    pub fn open(dir: PathBuf, settings: &JournalSettings) -> Journal {
        let segs = segments(&dir);
        let last_id = segs
            .last()
            .and_then(|(_, path, _)| last_event_in(path))
            .map_or(0, |e| e.id);
        Journal {
            dir,
            settings: *settings,
            current: None,
            sizes: segs
                .iter()
                .map(|(first, _, size)| (*first, *size))
                .collect(),
            last_id,
            warned: false,
        }
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest id on disk when the journal was opened, or written since.
    pub fn last_id(&self) -> EventId {
        self.last_id
    }

    /// Does the journal hold any event older than `id`?
    pub fn has_events_before(&self, id: EventId) -> bool {
        self.sizes.first().is_some_and(|(first, _)| *first < id)
    }

    fn warn(&mut self, what: &str, e: &std::io::Error) {
        if !self.warned {
            tracing::warn!(dir = %self.dir.display(), error = %e, "event journal: {what}");
            self.warned = true;
        }
    }

    fn start_segment(&mut self, first: EventId) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.dir.join(segment_name(first)))?;
        let size = file.metadata()?.len();
        self.current = Some((BufWriter::with_capacity(32 * 1024, file), size));
        self.sizes.push((first, size));
        self.prune();
        Ok(())
    }

    /// Deletes the oldest closed segments while over the retention budget.
    fn prune(&mut self) {
        let mut total: u64 = self.sizes.iter().map(|(_, s)| s).sum();
        while total > self.settings.retention_bytes && self.sizes.len() > 1 {
            let (first, size) = self.sizes.remove(0);
            total -= size;
            if let Err(e) = std::fs::remove_file(self.dir.join(segment_name(first))) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.warn("cannot delete an old segment", &e);
                }
            }
        }
    }

    /// Appends one event (buffered).
    pub fn append(&mut self, event: &Event) {
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "event journal: cannot encode an event");
                return;
            }
        };
        line.push(b'\n');
        let full = self
            .current
            .as_ref()
            .is_some_and(|(_, size)| *size >= self.settings.segment_bytes);
        if full {
            self.flush();
            self.current = None;
        }
        if self.current.is_none() {
            if let Err(e) = self.start_segment(event.id) {
                self.warn("cannot open a segment", &e);
                return;
            }
        }
        let Some((writer, size)) = self.current.as_mut() else {
            return;
        };
        match writer.write_all(&line) {
            Ok(()) => {
                *size += line.len() as u64;
                if let Some(last) = self.sizes.last_mut() {
                    last.1 = *size;
                }
                self.last_id = event.id;
            }
            Err(e) => {
                self.current = None;
                self.warn("cannot write", &e);
            }
        }
    }

    /// Writes buffered events to the file.
    pub fn flush(&mut self) {
        if let Some((writer, _)) = self.current.as_mut() {
            if let Err(e) = writer.flush() {
                self.current = None;
                self.warn("cannot write", &e);
            }
        }
    }

    /// Flushes and closes the current segment.
    pub fn close(&mut self) {
        self.flush();
        self.current = None;
    }
}

fn parse(line: &[u8]) -> Option<Event> {
    serde_json::from_slice(line).ok()
}

/// The last complete event in a segment.
fn last_event_in(path: &Path) -> Option<Event> {
    backwards(path, |line| parse(line).map(Some))
        .ok()?
        .flatten()
}

/// Calls `f` on the lines of `path` from the last to the first, until it
/// returns `Some`. Reads from the end in chunks, never the whole file.
fn backwards<T>(path: &Path, mut f: impl FnMut(&[u8]) -> Option<T>) -> std::io::Result<Option<T>> {
    const CHUNK: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let mut end = file.seek(SeekFrom::End(0))?;
    // Bytes of an unfinished line carried into the next (earlier) chunk.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        file.seek(SeekFrom::Start(start))?;
        let mut chunk = vec![0; (end - start) as usize];
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&carry);
        let mut lines: Vec<&[u8]> = chunk.split(|b| *b == b'\n').collect();
        // The first piece may continue in the previous chunk (unless this
        // chunk starts the file).
        let head = if start > 0 { lines.remove(0) } else { &[][..] };
        for line in lines.iter().rev() {
            if line.is_empty() {
                continue;
            }
            if let Some(v) = f(line) {
                return Ok(Some(v));
            }
        }
        carry = head.to_vec();
        end = start;
    }
    Ok(None)
}

/// Events with `id >= from`, in order, read lazily from the segments.
pub fn read_from(dir: &Path, from: EventId) -> impl Iterator<Item = Event> {
    let segs = segments(dir);
    // The segment holding `from` is the last one starting at or before it.
    let start = segs
        .iter()
        .rposition(|(first, _, _)| *first <= from)
        .unwrap_or(0);
    segs.into_iter()
        .skip(start)
        .flat_map(|(_, path, _)| {
            let lines = File::open(&path)
                .map(|f| BufReader::new(f).split(b'\n'))
                .into_iter()
                .flatten();
            lines.filter_map(|l| l.ok()).filter_map(|l| parse(&l))
        })
        .filter(move |e| e.id >= from)
}

/// The last `n` events older than `before` that `keep` accepts, oldest
/// first.
pub fn tail(dir: &Path, before: EventId, n: usize, keep: &dyn Fn(&Event) -> bool) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    if n == 0 {
        return out;
    }
    for (_, path, _) in segments(dir).iter().rev() {
        let done = backwards(path, |line| {
            if let Some(e) = parse(line) {
                if e.id < before && keep(&e) {
                    out.push(e);
                }
            }
            (out.len() >= n).then_some(())
        });
        if let Err(e) = done {
            tracing::warn!(path = %path.display(), error = %e, "event journal: cannot read");
        }
        if out.len() >= n {
            break;
        }
    }
    out.reverse();
    out
}

/// Reads a whole journal as text lines (for a log download), oldest first.
pub fn lines<'a>(
    dir: &Path,
    keep: &'a dyn Fn(&Event) -> bool,
) -> impl Iterator<Item = String> + 'a {
    read_from(dir, 0).filter(|e| keep(e)).map(|e| e.to_line())
}
