//! The connectivity check: before any ref moves, everything reachable from
//! the pushed commits that the existing refs do not already reach must be
//! in the repository. A pack that indexes fine but leaves out a tree, a
//! blob or a parent (a buggy or hostile client) is refused, so no ref ever
//! points at an incomplete history. git's receive-pack does the same.

use std::collections::HashSet;

use gix::objs::Find as _;
use gix::ObjectId;

use crate::upload::graph::Graph;

/// What is missing or unreadable in a pushed history (the first problem
/// found).
#[derive(Debug, thiserror::Error)]
pub enum ConnectivityError {
    /// A pushed tip, or a tag's target, is not there.
    #[error("missing object {0}")]
    MissingObject(ObjectId),
    /// A new commit's parent is not there.
    #[error("missing parent {parent} of commit {commit}")]
    MissingParent {
        /// The parent.
        parent: ObjectId,
        /// The commit naming it.
        commit: ObjectId,
    },
    /// A tree is not there.
    #[error("missing tree {0}")]
    MissingTree(ObjectId),
    /// A blob named by a tree is not there.
    #[error("missing blob {blob} (in tree {tree})")]
    MissingBlob {
        /// The blob.
        blob: ObjectId,
        /// The tree naming it.
        tree: ObjectId,
    },
    /// A tree entry names something else.
    #[error("{id} should be a tree but is a {kind}")]
    NotATree {
        /// The object.
        id: ObjectId,
        /// What it is.
        kind: gix::object::Kind,
    },
    /// An object cannot be decoded or read.
    #[error("{what} {id}: {message}")]
    Unreadable {
        /// `commit`, `tree`, `tag`.
        what: &'static str,
        /// The object.
        id: ObjectId,
        /// gix's message.
        message: String,
    },
    /// The commit walk failed.
    #[error("walking the new commits")]
    Walk(#[source] Box<crate::upload::UploadError>),
}

fn unreadable(
    what: &'static str,
    id: ObjectId,
) -> impl Fn(&dyn std::fmt::Display) -> ConnectivityError {
    move |e| ConnectivityError::Unreadable {
        what,
        id,
        message: e.to_string(),
    }
}

/// Checks that `tips` are complete relative to `existing` refs; the error
/// names the first missing object.
pub fn check(
    repo: &gix::Repository,
    tips: &[ObjectId],
    existing: &[ObjectId],
) -> Result<(), ConnectivityError> {
    let mut graph = Graph::new(repo);
    let err = |e: crate::upload::UploadError| ConnectivityError::Walk(Box::new(e));
    let mut trees = vec![];
    let mut other = vec![];
    for &tip in tips {
        match repo.find_object(tip) {
            Err(_) => return Err(ConnectivityError::MissingObject(tip)),
            Ok(o) if o.kind == gix::object::Kind::Commit => {}
            Ok(o) if o.kind == gix::object::Kind::Tag => {
                let target = o
                    .try_to_tag_ref()
                    .map_err(|e| unreadable("tag", tip)(&e))?
                    .target();
                other.push(target);
            }
            Ok(o) if o.kind == gix::object::Kind::Tree => trees.push(tip),
            Ok(_) => {}
        }
    }
    // Tags pointing at commits: check those commits too.
    let mut commit_tips: Vec<ObjectId> = tips.to_vec();
    for id in other {
        if !repo.has_object(id) {
            return Err(ConnectivityError::MissingObject(id));
        }
        commit_tips.push(id);
    }
    let new_commits = graph
        .commits_between(&commit_tips, existing, &HashSet::new())
        .map_err(err)?;
    for &c in &new_commits {
        let commit = repo
            .find_commit(c)
            .map_err(|e| unreadable("commit", c)(&e))?;
        for p in commit.parent_ids() {
            if !repo.has_object(p.detach()) {
                return Err(ConnectivityError::MissingParent {
                    parent: p.detach(),
                    commit: c,
                });
            }
        }
        trees.push(
            commit
                .tree_id()
                .map_err(|e| unreadable("commit", c)(&e))?
                .detach(),
        );
    }
    check_trees(repo, trees)
}

/// Every tree reachable from `roots` and the blobs they name exist.
fn check_trees(repo: &gix::Repository, roots: Vec<ObjectId>) -> Result<(), ConnectivityError> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut stack = roots;
    let mut buf = Vec::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let data = repo
            .objects
            .try_find(&id, &mut buf)
            .map_err(|e| unreadable("tree", id)(&e))?
            .ok_or(ConnectivityError::MissingTree(id))?;
        if data.kind != gix::object::Kind::Tree {
            return Err(ConnectivityError::NotATree {
                id,
                kind: data.kind,
            });
        }
        for entry in gix::objs::TreeRefIter::from_bytes(data.data, id.kind()) {
            let entry = entry.map_err(|e| unreadable("tree", id)(&e))?;
            let oid = entry.oid.to_owned();
            if entry.mode.is_commit() {
                continue; // a submodule: lives elsewhere
            }
            if entry.mode.is_tree() {
                stack.push(oid);
            } else if !seen.contains(&oid) {
                if !repo.has_object(oid) {
                    return Err(ConnectivityError::MissingBlob {
                        blob: oid,
                        tree: id,
                    });
                }
                seen.insert(oid);
            }
        }
    }
    Ok(())
}
