//! The commit graph as upload-pack needs it: parents and committer times,
//! decoded once per session and cached, and the date-ordered walk that
//! picks the commits to send ("reachable from the wants, not from what the
//! client has"), honouring shallow boundaries. gix's own rev-walk cannot
//! treat chosen commits as parentless, which shallow clones need, so the
//! walk is written here.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use gix::ObjectId;

use super::UploadError;

/// One decoded commit.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    /// Its parents, in order.
    pub parents: Vec<ObjectId>,
    /// Committer time, seconds since the epoch.
    pub time: i64,
}

/// Lazily decoded commits of one repository.
pub struct Graph<'r> {
    repo: &'r gix::Repository,
    commits: HashMap<ObjectId, Option<CommitInfo>>,
}

/// Walk flags.
const UNINTERESTING: u8 = 1;
const QUEUED: u8 = 2;
const EMITTED: u8 = 4;

struct Queued {
    time: i64,
    seq: u64,
    id: ObjectId,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Newest first; among equal times, first queued first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<'r> Graph<'r> {
    /// An empty cache over `repo`.
    pub fn new(repo: &'r gix::Repository) -> Graph<'r> {
        Graph {
            repo,
            commits: HashMap::new(),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &'r gix::Repository {
        self.repo
    }

    /// The commit `id`, or `None` if it is missing or not a commit.
    pub fn commit(&mut self, id: ObjectId) -> Result<Option<&CommitInfo>, UploadError> {
        if !self.commits.contains_key(&id) {
            let info = self.decode(id)?;
            self.commits.insert(id, info);
        }
        Ok(self.commits[&id].as_ref())
    }

    fn decode(&self, id: ObjectId) -> Result<Option<CommitInfo>, UploadError> {
        let Ok(obj) = self.repo.find_object(id) else {
            return Ok(None);
        };
        if obj.kind != gix::object::Kind::Commit {
            return Ok(None);
        }
        let commit = gix::objs::CommitRef::from_bytes(&obj.data, id.kind()).map_err(|e| {
            UploadError::repo(self.repo, format!("commit {id} cannot be decoded: {e}"))
        })?;
        Ok(Some(CommitInfo {
            parents: commit.parents().collect(),
            time: commit.committer().map(|s| s.seconds()).unwrap_or(0),
        }))
    }

    /// Parents of `id` as the client sees them: none for a graft (a
    /// shallow boundary) or a non-commit.
    pub fn parents(
        &mut self,
        id: ObjectId,
        grafts: &HashSet<ObjectId>,
    ) -> Result<Vec<ObjectId>, UploadError> {
        if grafts.contains(&id) {
            return Ok(vec![]);
        }
        Ok(self
            .commit(id)?
            .map(|c| c.parents.clone())
            .unwrap_or_default())
    }

    fn time(&mut self, id: ObjectId) -> Result<i64, UploadError> {
        Ok(self.commit(id)?.map(|c| c.time).unwrap_or(0))
    }

    /// Commits reachable from `tips` but not from `hidden`, newest first,
    /// not walking past `grafts`. Walks both sides together in date order
    /// and stops once only hidden commits are queued, so a fetch of a few
    /// new commits does not walk the whole history.
    pub fn commits_between(
        &mut self,
        tips: &[ObjectId],
        hidden: &[ObjectId],
        grafts: &HashSet<ObjectId>,
    ) -> Result<Vec<ObjectId>, UploadError> {
        let mut flags: HashMap<ObjectId, u8> = HashMap::new();
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut interesting_queued = 0usize;
        let mut order = vec![];

        for (ids, flag) in [(hidden, UNINTERESTING), (tips, 0)] {
            for &id in ids {
                if flags.contains_key(&id) || self.commit(id)?.is_none() {
                    continue;
                }
                flags.insert(id, flag | QUEUED);
                if flag == 0 {
                    interesting_queued += 1;
                }
                seq += 1;
                queue.push(Queued {
                    time: self.time(id)?,
                    seq,
                    id,
                });
            }
        }

        while interesting_queued > 0 {
            let Some(Queued { id, .. }) = queue.pop() else {
                break;
            };
            let f = flags.get_mut(&id).expect("queued commits have flags");
            *f &= !QUEUED;
            let uninteresting = *f & UNINTERESTING != 0;
            if !uninteresting {
                interesting_queued -= 1;
                *f |= EMITTED;
                order.push(id);
            }
            for p in self.parents(id, grafts)? {
                match flags.get(&p).copied() {
                    None => {
                        if self.commit(p)?.is_none() {
                            continue; // a missing parent: nothing to send or hide
                        }
                        flags.insert(p, QUEUED | if uninteresting { UNINTERESTING } else { 0 });
                        if !uninteresting {
                            interesting_queued += 1;
                        }
                        seq += 1;
                        queue.push(Queued {
                            time: self.time(p)?,
                            seq,
                            id: p,
                        });
                    }
                    Some(pf) if uninteresting && pf & UNINTERESTING == 0 => {
                        // Reached from a hidden commit after all: hide it and
                        // whatever of its history was already walked.
                        self.hide(p, &mut flags, &mut interesting_queued, grafts)?;
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(order
            .into_iter()
            .filter(|id| flags[id] & UNINTERESTING == 0)
            .collect())
    }

    fn hide(
        &mut self,
        start: ObjectId,
        flags: &mut HashMap<ObjectId, u8>,
        interesting_queued: &mut usize,
        grafts: &HashSet<ObjectId>,
    ) -> Result<(), UploadError> {
        let mut stack = vec![start];
        while let Some(id) = stack.pop() {
            let Some(f) = flags.get_mut(&id) else {
                continue;
            };
            if *f & UNINTERESTING != 0 {
                continue;
            }
            *f |= UNINTERESTING;
            if *f & QUEUED != 0 {
                // Its parents are walked when it is popped.
                *interesting_queued -= 1;
            } else {
                stack.extend(self.parents(id, grafts)?);
            }
        }
        Ok(())
    }

    /// Is `target` reachable from any of `tips` (commits only)?
    pub fn reachable(
        &mut self,
        target: ObjectId,
        tips: impl IntoIterator<Item = ObjectId>,
    ) -> Result<bool, UploadError> {
        if self.commit(target)?.is_none() {
            return Ok(false);
        }
        let mut seen = HashSet::new();
        let mut stack: Vec<ObjectId> = tips.into_iter().collect();
        while let Some(id) = stack.pop() {
            if id == target {
                return Ok(true);
            }
            if !seen.insert(id) {
                continue;
            }
            if let Some(c) = self.commit(id)? {
                stack.extend(c.parents.iter().copied());
            }
        }
        Ok(false)
    }
}
