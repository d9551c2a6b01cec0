//! What the client has: its `have` lines checked against the repository,
//! and the test that ends negotiation early ("ready": every want already
//! reaches something the client has, so more haves cannot shrink the pack
//! much). Shared by protocol v0 (multi_ack_detailed) and v2 (`fetch`).

use std::collections::HashSet;

use gix::ObjectId;

use super::graph::Graph;
use super::UploadError;

/// Most haves accepted in one session (v0) or one request (v2).
pub const MAX_HAVES: usize = 256 * 1024;

/// Most wants accepted.
pub const MAX_WANTS: usize = 64 * 1024;

/// The answer to one `have`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Have {
    /// The server does not have it (the client has local work).
    Unknown,
    /// A common object.
    Common,
}

/// Negotiation state: the commits both sides have.
#[derive(Default)]
pub struct Negotiator {
    /// Commits the client has: each common have and its parents.
    they_have: HashSet<ObjectId>,
    /// Distinct common haves, in the order received.
    common: Vec<ObjectId>,
    /// The oldest common commit's time; walks stop below it.
    oldest_have: Option<i64>,
    /// Wants already known to reach a common commit.
    satisfied: HashSet<ObjectId>,
    /// `have` lines seen.
    seen: usize,
}

impl Negotiator {
    /// Records one `have`.
    pub fn have(&mut self, graph: &mut Graph<'_>, id: ObjectId) -> Result<Have, UploadError> {
        self.seen += 1;
        if self.seen > MAX_HAVES {
            return Err(UploadError::Protocol(format!(
                "too many `have` lines (more than {MAX_HAVES})"
            )));
        }
        if !graph.repo().has_object(id) {
            return Ok(Have::Unknown);
        }
        let mut known_before = false;
        if let Some(c) = graph.commit(id)? {
            known_before = !self.they_have.insert(id);
            self.oldest_have = Some(self.oldest_have.map_or(c.time, |t| t.min(c.time)));
            let parents = c.parents.clone();
            self.they_have.extend(parents);
        }
        if !known_before {
            self.common.push(id);
        }
        Ok(Have::Common)
    }

    /// Distinct common haves so far.
    pub fn common(&self) -> &[ObjectId] {
        &self.common
    }

    /// Can the server stop negotiating? True when every wanted commit
    /// reaches a commit the client has, without walking below the oldest
    /// common commit. Non-commit wants cannot be judged by ancestry and
    /// count as satisfied (git does the same).
    pub fn ok_to_give_up(
        &mut self,
        graph: &mut Graph<'_>,
        wants: &[ObjectId],
    ) -> Result<bool, UploadError> {
        let Some(oldest) = self.oldest_have else {
            return Ok(false);
        };
        for &want in wants {
            if self.satisfied.contains(&want) {
                continue;
            }
            if graph.commit(want)?.is_none() || self.reaches_common(graph, want, oldest)? {
                self.satisfied.insert(want);
                continue;
            }
            return Ok(false);
        }
        Ok(true)
    }

    fn reaches_common(
        &self,
        graph: &mut Graph<'_>,
        want: ObjectId,
        oldest: i64,
    ) -> Result<bool, UploadError> {
        let mut seen = HashSet::new();
        let mut stack = vec![want];
        while let Some(id) = stack.pop() {
            if self.they_have.contains(&id) {
                return Ok(true);
            }
            if !seen.insert(id) {
                continue;
            }
            let Some(c) = graph.commit(id)? else {
                continue;
            };
            if c.time < oldest {
                continue;
            }
            stack.extend(c.parents.iter().copied());
        }
        Ok(false)
    }
}
