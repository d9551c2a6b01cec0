//! The pack upload-pack sends: which commits (the walk in [`super::graph`]),
//! which trees and blobs (gix-pack's counting: a commit's additions over
//! its parents, or its whole tree at a shallow boundary), annotated tags
//! for `include-tag`, then entries copied from the repository's packs
//! where possible (gix-pack) and streamed over side-band 1 with progress
//! on band 2.

use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix_pack::data::output::count::objects::ObjectExpansion;
use gix_packetline::Channel;

use super::graph::Graph;
use super::refs::Refs;
use super::shallow::Shallow;
use super::UploadError;
use crate::pktline;

/// Delta-base cache per counting thread.
const PACK_CACHE: usize = 16 << 20;

/// What to pack.
pub struct Plan<'a> {
    /// The client's wants (checked to exist).
    pub wants: &'a [ObjectId],
    /// Objects both sides have.
    pub common: &'a [ObjectId],
    /// Shallow boundaries and extra commits for this request.
    pub shallow: &'a Shallow,
    /// Add annotated tags that point at commits being sent.
    pub include_tag: bool,
    /// The refs (for `include-tag`).
    pub refs: &'a Refs,
}

/// How the pack travels.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    /// Side-band payload size (`None`: the raw pack, protocol v0 without
    /// side-band).
    pub band_payload: Option<usize>,
    /// Send progress lines on band 2.
    pub progress: bool,
}

/// What was sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Objects in the pack.
    pub objects: usize,
    /// Of which deltas.
    pub deltas: usize,
    /// Commits in the pack.
    pub commits: usize,
}

/// Side-band writer: fills packets to the negotiated size, so the pack
/// goes out in as few pkt-lines (and SSH channel messages) as possible.
pub struct Bands<'a> {
    out: &'a mut dyn Write,
    max: usize,
    buf: Vec<u8>,
}

impl<'a> Bands<'a> {
    /// Data on band 1 with payloads of `max` bytes.
    pub fn new(out: &'a mut dyn Write, max: usize) -> Bands<'a> {
        Bands {
            out,
            max,
            buf: Vec::with_capacity(max * 2),
        }
    }

    /// A progress line on band 2.
    pub fn progress(&mut self, text: &str) -> io::Result<()> {
        pktline::band_sized(self.out, Channel::Progress, text.as_bytes(), self.max)?;
        self.out.flush()
    }

    /// A fatal error on band 3 (shown by git as `remote error`).
    pub fn error(&mut self, text: &str) -> io::Result<()> {
        self.emit_all()?;
        pktline::band_sized(self.out, Channel::Error, text.as_bytes(), self.max)?;
        self.out.flush()
    }

    fn emit_all(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            pktline::band_sized(self.out, Channel::Data, &self.buf, self.max)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for Bands<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.max {
            let full = self.buf.len() / self.max * self.max;
            pktline::band_sized(self.out, Channel::Data, &self.buf[..full], self.max)?;
            self.buf.drain(..full);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.emit_all()?;
        self.out.flush()
    }
}

/// Builds the pack for `plan` and writes it to `out`, framed as asked.
pub fn send(
    graph: &mut Graph<'_>,
    plan: &Plan<'_>,
    out: &mut dyn Write,
    framing: Framing,
) -> Result<Sent, UploadError> {
    match framing.band_payload {
        Some(max) => {
            let mut bands = Bands::new(out, max);
            match build_and_write(graph, plan, &mut bands, framing.progress) {
                Ok(sent) => {
                    bands.flush()?;
                    Ok(sent)
                }
                Err(UploadError::Io(e)) => Err(UploadError::Io(e)),
                Err(e) => {
                    // Tell the client on band 3 so it does not wait for
                    // the rest of a pack that will never come.
                    let msg = format!("byteport: {e}");
                    bands.error(&msg)?;
                    Err(UploadError::Refused(msg))
                }
            }
        }
        None => {
            let mut raw = Raw(out);
            build_and_write(graph, plan, &mut raw, false)
        }
    }
}

/// The raw pack stream (no side-band); progress is dropped.
struct Raw<'a>(&'a mut dyn Write);

impl Write for Raw<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

trait PackSink: Write {
    fn progress_line(&mut self, text: &str) -> io::Result<()>;
}

impl PackSink for Bands<'_> {
    fn progress_line(&mut self, text: &str) -> io::Result<()> {
        self.progress(text)
    }
}

impl PackSink for Raw<'_> {
    fn progress_line(&mut self, _text: &str) -> io::Result<()> {
        Ok(())
    }
}

fn build_and_write(
    graph: &mut Graph<'_>,
    plan: &Plan<'_>,
    sink: &mut dyn PackSink,
    progress: bool,
) -> Result<Sent, UploadError> {
    let repo = graph.repo();
    // Wants: commits start the walk; tags go in as they are and their
    // targets are handled by kind; trees and blobs go in whole.
    let mut tags: Vec<ObjectId> = vec![];
    let mut whole: Vec<ObjectId> = vec![];
    let mut tips: Vec<ObjectId> = plan.shallow.extra_tips.clone();
    for &want in plan.wants {
        let mut id = want;
        loop {
            let obj = repo
                .find_object(id)
                .map_err(|e| UploadError::repo(repo, format!("object {id}: {e}")))?;
            match obj.kind {
                gix::object::Kind::Commit => tips.push(id),
                gix::object::Kind::Tag => {
                    tags.push(id);
                    id = obj
                        .try_to_tag_ref()
                        .map_err(|e| UploadError::repo(repo, format!("tag {id}: {e}")))?
                        .target();
                    continue;
                }
                gix::object::Kind::Tree | gix::object::Kind::Blob => whole.push(id),
            }
            break;
        }
    }

    let commits = graph.commits_between(&tips, plan.common, &plan.shallow.grafts)?;
    if plan.include_tag {
        let sent: HashSet<ObjectId> = commits.iter().copied().collect();
        for r in &plan.refs.refs {
            if r.peeled.is_some_and(|p| sent.contains(&p)) {
                tag_chain(repo, r.id, &mut tags)?;
            }
        }
    }
    let skip = client_side_parents(graph, &commits, &plan.shallow.grafts)?;
    let repo = graph.repo();
    // A commit's new objects are found by diffing its tree against its
    // parents'; at a shallow boundary the whole tree goes. With nothing in
    // common (a clone), walking every tree once (seen subtrees skipped) is
    // cheaper than diffing every commit against its parent.
    let (boundary, inner): (Vec<ObjectId>, Vec<ObjectId>) = if plan.common.is_empty() {
        (commits.clone(), vec![])
    } else {
        commits
            .iter()
            .partition(|c| plan.shallow.grafts.contains(*c))
    };
    whole.extend(boundary);

    let mut db = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| UploadError::repo(repo, e))?
        .into_inner();
    // Counting and entry generation keep pack locations across lookups.
    db.prevent_pack_unload();
    // Trees are deltas in chains; a roomy delta-base cache per thread
    // (git's core.deltaBaseCacheLimit is 96 MiB) saves re-inflating bases.
    db.set_pack_cache(|| Box::new(gix_pack::cache::lru::MemoryCappedHashmap::new(PACK_CACHE)));
    let db = super::locate::Locating::new(db);
    let interrupt = AtomicBool::new(false);
    let mut seen = HashSet::new();
    let mut counts = vec![];
    for (ids, expansion) in [
        (tags, ObjectExpansion::AsIs),
        (whole, ObjectExpansion::TreeContents),
        (inner, ObjectExpansion::TreeAdditionsComparedToAncestor),
    ] {
        if ids.is_empty() {
            continue;
        }
        let (found, _) = gix_pack::data::output::count::objects(
            db.clone(),
            Box::new(ids.into_iter().map(Ok)),
            &gix::progress::Discard,
            &interrupt,
            gix_pack::data::output::count::objects::Options {
                thread_limit: None,
                input_object_expansion: expansion,
                chunk_size: 50,
            },
        )
        .map_err(|e| UploadError::repo(repo, format!("counting objects: {e}")))?;
        counts.extend(
            found
                .into_iter()
                .filter(|c| !skip.contains(&c.id) && seen.insert(c.id)),
        );
    }
    let num = counts.len();
    if progress {
        sink.progress_line(&format!("Enumerating objects: {num}, done.\n"))?;
    }

    let entries = gix_pack::data::output::entry::iter_from_counts(
        counts,
        db,
        Box::new(gix::progress::Discard),
        gix_pack::data::output::entry::iter_from_counts::Options {
            allow_thin_pack: false,
            thread_limit: None,
            ..Default::default()
        },
    )
    .map_err(|e| UploadError::repo(repo, format!("preparing pack entries: {e}")))?;
    // Entries are resolved in parallel; the pack needs them in order.
    let mut deltas = 0usize;
    let entries = gix_features::parallel::InOrderIter::from(entries).inspect(|chunk| {
        if let Ok(chunk) = chunk {
            deltas += chunk
                .iter()
                .filter(|e| !matches!(e.kind, gix_pack::data::output::entry::Kind::Base(_)))
                .count();
        }
    });
    let count = u32::try_from(num)
        .map_err(|_| UploadError::repo(repo, "more than 4 billion objects to send"))?;
    let mut pack = gix_pack::data::output::bytes::FromEntriesIter::new(
        entries,
        &mut *sink,
        count,
        gix_pack::data::Version::V2,
        gix::hash::Kind::Sha1,
    );
    for chunk in pack.by_ref() {
        chunk.map_err(|e| match io_error(&e) {
            Some(kind) => UploadError::Io(io::Error::new(kind, e.to_string())),
            None => UploadError::repo(repo, format!("writing the pack: {e}")),
        })?;
    }
    drop(pack);
    if progress {
        sink.progress_line(&format!(
            "Total {num} (delta {deltas}), reused {deltas} (delta {deltas})\n"
        ))?;
    }
    Ok(Sent {
        objects: num,
        deltas,
        commits: commits.len(),
    })
}

/// Counting a commit's additions over its parents puts the parents and
/// their root trees in the pack too. Where a parent is not being sent,
/// the client has it (it is hidden by a `have`): those objects stay out.
fn client_side_parents(
    graph: &mut Graph<'_>,
    commits: &[ObjectId],
    grafts: &HashSet<ObjectId>,
) -> Result<HashSet<ObjectId>, UploadError> {
    let sent: HashSet<ObjectId> = commits.iter().copied().collect();
    let mut skip = HashSet::new();
    for &c in commits {
        for p in graph.parents(c, grafts)? {
            if !sent.contains(&p) && skip.insert(p) {
                let repo = graph.repo();
                if let Ok(commit) = repo.find_commit(p) {
                    if let Ok(tree) = commit.tree_id() {
                        skip.insert(tree.detach());
                    }
                }
            }
        }
    }
    Ok(skip)
}

/// The tag `id` and any tags it points to, until a non-tag.
fn tag_chain(
    repo: &gix::Repository,
    mut id: ObjectId,
    tags: &mut Vec<ObjectId>,
) -> Result<(), UploadError> {
    for _ in 0..16 {
        let obj = repo
            .find_object(id)
            .map_err(|e| UploadError::repo(repo, format!("tag {id}: {e}")))?;
        if obj.kind != gix::object::Kind::Tag {
            return Ok(());
        }
        tags.push(id);
        id = obj
            .try_to_tag_ref()
            .map_err(|e| UploadError::repo(repo, format!("tag {id}: {e}")))?
            .target();
    }
    Ok(())
}

/// If a pack-writing error came from the connection, its kind.
fn io_error(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}
