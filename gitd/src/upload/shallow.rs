//! Shallow clones and fetches: the client's `shallow` lines and its
//! `deepen` / `deepen-relative` / `deepen-since` / `deepen-not` request
//! turned into the commits the client will see as parentless (announced
//! as `shallow <id>`), the ones that stop being so (`unshallow <id>`), and
//! the graft set the pack walk must respect.

use std::collections::{HashSet, VecDeque};

use gix::ObjectId;

use super::graph::Graph;
use super::UploadError;

/// `deepen 2147483647` (`git fetch --unshallow`) means "all of it".
const INFINITE_DEPTH: u32 = 0x7fff_ffff;

/// Most `shallow` lines accepted.
const MAX_SHALLOW: usize = 64 * 1024;

/// What the client said about shallowness.
#[derive(Debug, Default, Clone)]
pub struct Deepen {
    /// `deepen <n>`.
    pub depth: Option<u32>,
    /// `deepen-relative`: depth counts from the client's current boundary.
    pub relative: bool,
    /// `deepen-since <seconds>`.
    pub since: Option<i64>,
    /// `deepen-not <ref>` (ref names).
    pub not: Vec<String>,
    /// The client's current shallow commits (`shallow <id>`).
    pub client_shallow: Vec<ObjectId>,
}

impl Deepen {
    /// Did the client ask to change its depth?
    pub fn requested(&self) -> bool {
        self.depth.is_some() || self.since.is_some() || !self.not.is_empty()
    }

    /// Parses a shallow-related request line; `Ok(false)` if it is not one.
    pub fn parse_line(&mut self, line: &[u8]) -> Result<bool, UploadError> {
        let text = |rest: &[u8]| String::from_utf8_lossy(rest).to_string();
        if let Some(rest) = line.strip_prefix(b"shallow ") {
            let id = ObjectId::from_hex(rest).map_err(|_| {
                UploadError::Protocol(format!("`shallow {}`: not an object id", text(rest)))
            })?;
            self.client_shallow.push(id);
            if self.client_shallow.len() > MAX_SHALLOW {
                return Err(UploadError::Protocol("too many `shallow` lines".into()));
            }
        } else if let Some(rest) = line.strip_prefix(b"deepen ") {
            let n: u32 = text(rest).parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                UploadError::Protocol(format!(
                    "`deepen {}`: expected a positive depth",
                    text(rest)
                ))
            })?;
            self.depth = Some(n.min(INFINITE_DEPTH));
        } else if line == b"deepen-relative" {
            self.relative = true;
        } else if let Some(rest) = line.strip_prefix(b"deepen-since ") {
            let t: i64 = text(rest).parse().map_err(|_| {
                UploadError::Protocol(format!(
                    "`deepen-since {}`: expected seconds since the epoch",
                    text(rest)
                ))
            })?;
            self.since = Some(t);
        } else if let Some(rest) = line.strip_prefix(b"deepen-not ") {
            if self.not.len() >= 1024 {
                return Err(UploadError::Protocol("too many `deepen-not` lines".into()));
            }
            self.not.push(text(rest));
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}

/// The outcome for one request.
#[derive(Debug, Default)]
pub struct Shallow {
    /// New boundary commits to announce as `shallow <id>`.
    pub shallow: Vec<ObjectId>,
    /// Client boundary commits whose parents now get sent.
    pub unshallow: Vec<ObjectId>,
    /// Commits whose parents the pack walk must not follow.
    pub grafts: HashSet<ObjectId>,
    /// More commits to send: the parents of unshallowed commits.
    pub extra_tips: Vec<ObjectId>,
}

/// Works out shallow boundaries for `wants` (commits). `resolve` maps a
/// `deepen-not` ref name to its commit.
pub fn compute(
    graph: &mut Graph<'_>,
    wants: &[ObjectId],
    req: &Deepen,
    resolve: &dyn Fn(&str) -> Option<ObjectId>,
) -> Result<Shallow, UploadError> {
    let mut client: HashSet<ObjectId> = HashSet::new();
    for &id in &req.client_shallow {
        match graph.repo().has_object(id) {
            false => continue, // not ours: nothing to say about it
            true if graph.commit(id)?.is_none() => {
                return Err(UploadError::Protocol(format!(
                    "`shallow {id}` is not a commit"
                )))
            }
            true => {
                client.insert(id);
            }
        }
    }
    let mut out = Shallow {
        grafts: client.clone(),
        ..Default::default()
    };
    if !req.requested() {
        return Ok(out);
    }
    if req.depth.is_some() && (req.since.is_some() || !req.not.is_empty()) {
        return Err(UploadError::Refused(
            "deepen and deepen-since (or deepen-not) cannot be used together".into(),
        ));
    }

    // The commits the client will have (R).
    let kept: HashSet<ObjectId> = if let Some(depth) = req.depth {
        if req.relative {
            let starts: Vec<ObjectId> = client.iter().copied().collect();
            let mut kept = within_depth(graph, &starts, depth.saturating_add(1))?;
            kept.extend(reach(graph, wants, &client)?);
            kept
        } else {
            within_depth(graph, wants, depth)?
        }
    } else {
        let mut excluded = HashSet::new();
        for name in &req.not {
            let id = resolve(name).ok_or_else(|| {
                UploadError::Refused(format!("deepen-not: `{name}` is not a ref here"))
            })?;
            excluded.extend(reach(graph, &[id], &HashSet::new())?);
        }
        let since = req.since.unwrap_or(i64::MIN);
        let kept = reach_filtered(graph, wants, |id, time| {
            time >= since && !excluded.contains(&id)
        })?;
        if kept.is_empty() {
            return Err(UploadError::Refused(
                "no commits selected for shallow requests (deepen-since/deepen-not excludes every wanted commit)".into(),
            ));
        }
        kept
    };

    for &id in &kept {
        let parents = graph.parents(id, &HashSet::new())?;
        if parents.is_empty() {
            continue;
        }
        let all_kept = parents.iter().all(|p| kept.contains(p));
        if client.contains(&id) {
            if all_kept {
                out.unshallow.push(id);
                out.extra_tips.extend(parents);
            }
        } else if !all_kept {
            out.shallow.push(id);
            out.grafts.insert(id);
        }
    }
    out.shallow.sort();
    out.unshallow.sort();
    Ok(out)
}

/// Commits at most `depth` generations from `starts` (depth 1 = the
/// starts themselves), following real parents.
fn within_depth(
    graph: &mut Graph<'_>,
    starts: &[ObjectId],
    depth: u32,
) -> Result<HashSet<ObjectId>, UploadError> {
    let mut kept = HashSet::new();
    let mut queue: VecDeque<(ObjectId, u32)> = VecDeque::new();
    for &s in starts {
        if graph.commit(s)?.is_some() && kept.insert(s) {
            queue.push_back((s, 1));
        }
    }
    // Breadth first, so each commit is first met at its smallest depth.
    while let Some((id, d)) = queue.pop_front() {
        if d >= depth {
            continue;
        }
        for p in graph.parents(id, &HashSet::new())? {
            if graph.commit(p)?.is_some() && kept.insert(p) {
                queue.push_back((p, d + 1));
            }
        }
    }
    Ok(kept)
}

/// Commits reachable from `starts`, not walking past `stop` (which are
/// included).
fn reach(
    graph: &mut Graph<'_>,
    starts: &[ObjectId],
    stop: &HashSet<ObjectId>,
) -> Result<HashSet<ObjectId>, UploadError> {
    let mut seen = HashSet::new();
    let mut stack: Vec<ObjectId> = starts.to_vec();
    while let Some(id) = stack.pop() {
        if graph.commit(id)?.is_none() || !seen.insert(id) {
            continue;
        }
        if !stop.contains(&id) {
            stack.extend(graph.parents(id, &HashSet::new())?);
        }
    }
    Ok(seen)
}

/// Commits reachable from `starts` through commits `keep(id, time)`
/// accepts.
fn reach_filtered(
    graph: &mut Graph<'_>,
    starts: &[ObjectId],
    keep: impl Fn(ObjectId, i64) -> bool,
) -> Result<HashSet<ObjectId>, UploadError> {
    let mut seen = HashSet::new();
    let mut stack: Vec<ObjectId> = starts.to_vec();
    while let Some(id) = stack.pop() {
        let Some(c) = graph.commit(id)? else { continue };
        if !keep(id, c.time) || !seen.insert(id) {
            continue;
        }
        let parents = c.parents.clone();
        stack.extend(parents);
    }
    Ok(seen)
}
