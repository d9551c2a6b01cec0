//! The connectivity check: before any ref moves, everything reachable from
//! the pushed commits that the existing refs do not already reach must be
//! in the repository. A pack that indexes fine but leaves out a tree, a
//! blob or a parent (a buggy or hostile client) is refused, so no ref ever
//! points at an incomplete history. git's receive-pack does the same.

use std::collections::HashSet;

use gix::objs::Find as _;
use gix::ObjectId;

use crate::upload::graph::Graph;

/// Checks that `tips` are complete relative to `existing` refs; the error
/// names the first missing object.
pub fn check(
    repo: &gix::Repository,
    tips: &[ObjectId],
    existing: &[ObjectId],
) -> Result<(), String> {
    let mut graph = Graph::new(repo);
    let err = |e: crate::upload::UploadError| e.to_string();
    let mut trees = vec![];
    let mut other = vec![];
    for &tip in tips {
        match repo.find_object(tip) {
            Err(_) => return Err(format!("missing object {tip}")),
            Ok(o) if o.kind == gix::object::Kind::Commit => {}
            Ok(o) if o.kind == gix::object::Kind::Tag => {
                let target = o
                    .try_to_tag_ref()
                    .map_err(|e| format!("tag {tip}: {e}"))?
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
            return Err(format!("missing object {id}"));
        }
        commit_tips.push(id);
    }
    let new_commits = graph
        .commits_between(&commit_tips, existing, &HashSet::new())
        .map_err(err)?;
    for &c in &new_commits {
        let commit = repo
            .find_commit(c)
            .map_err(|e| format!("commit {c}: {e}"))?;
        for p in commit.parent_ids() {
            if !repo.has_object(p.detach()) {
                return Err(format!("missing parent {} of commit {c}", p.detach()));
            }
        }
        trees.push(
            commit
                .tree_id()
                .map_err(|e| format!("commit {c}: {e}"))?
                .detach(),
        );
    }
    check_trees(repo, trees)
}

/// Every tree reachable from `roots` and the blobs they name exist.
fn check_trees(repo: &gix::Repository, roots: Vec<ObjectId>) -> Result<(), String> {
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
            .map_err(|e| format!("tree {id}: {e}"))?
            .ok_or_else(|| format!("missing tree {id}"))?;
        if data.kind != gix::object::Kind::Tree {
            return Err(format!("{id} should be a tree but is a {}", data.kind));
        }
        for entry in gix::objs::TreeRefIter::from_bytes(data.data, id.kind()) {
            let entry = entry.map_err(|e| format!("tree {id}: {e}"))?;
            let oid = entry.oid.to_owned();
            if entry.mode.is_commit() {
                continue; // a submodule: lives elsewhere
            }
            if entry.mode.is_tree() {
                stack.push(oid);
            } else if !seen.contains(&oid) {
                if !repo.has_object(oid) {
                    return Err(format!("missing blob {oid} (in tree {id})"));
                }
                seen.insert(oid);
            }
        }
    }
    Ok(())
}
