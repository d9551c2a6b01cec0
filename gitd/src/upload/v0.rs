//! upload-pack, protocol v0/v1: ref advertisement, `want` lines with the
//! client's capabilities, shallow/deepen lines and their answer, then
//! `have` negotiation with multi_ack_detailed (and no-done) so a fetch on
//! a long, branchy history ends as soon as the server knows enough, then
//! the pack.

use std::collections::HashSet;
use std::io::{BufRead, Write};

use gix::ObjectId;

use super::graph::Graph;
use super::negotiate::{Have, Negotiator, MAX_WANTS};
use super::pack::{self, Framing, Plan, Sent};
use super::refs::Refs;
use super::shallow::{self, Deepen};
use super::UploadError;
use crate::pktline::{self, Pkt, Reader, MAX_BAND_PAYLOAD, MAX_SMALL_BAND_PAYLOAD};

/// Capabilities advertised (HEAD's symref is appended).
pub const CAPABILITIES: &str = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow \
deepen-since deepen-not deepen-relative no-progress include-tag multi_ack_detailed no-done \
allow-tip-sha1-in-want allow-reachable-sha1-in-want object-format=sha1 agent=byteport-gitd/0.1";

/// How the client wants negotiation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acks {
    /// One `ACK` for the first common object, `NAK` otherwise.
    Single,
    /// `multi_ack`: `ACK <id> continue`.
    Multi,
    /// `multi_ack_detailed`: `ACK <id> common` / `ACK <id> ready`.
    Detailed,
}

/// Runs one v0 (or, with `version 1` already sent, v1) session.
pub fn run(
    repo: &gix::Repository,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<Option<Sent>, UploadError> {
    let refs = Refs::read(repo)?;
    refs.advertise(output, CAPABILITIES)?;
    output.flush()?;
    let mut graph = Graph::new(repo);
    let mut reader = Reader::new(input);

    // Wants (the first carries capabilities) and shallow lines, to flush.
    let mut wants: Vec<ObjectId> = vec![];
    let mut caps: Vec<String> = vec![];
    let mut deepen = Deepen::default();
    let tips: HashSet<ObjectId> = refs.tips().collect();
    loop {
        let Some(pkt) = reader.read()? else {
            if wants.is_empty() {
                return Ok(None); // `git ls-remote`: advertisement only
            }
            return Err(UploadError::Protocol(
                "the client hung up before finishing its wants".into(),
            ));
        };
        let line = match pkt {
            Pkt::Flush => break,
            Pkt::Data(_) => pkt.text().unwrap_or_default(),
            other => {
                return Err(UploadError::Protocol(format!(
                    "unexpected {other:?} packet among the wants"
                )))
            }
        };
        if deepen.parse_line(line)? {
            continue;
        }
        let Some(rest) = line.strip_prefix(b"want ") else {
            return Err(refuse(
                output,
                format!(
                    "expected `want <id>`, got `{}`",
                    String::from_utf8_lossy(line).escape_default()
                ),
            ));
        };
        let hex = rest.get(..40).unwrap_or(rest);
        let id = ObjectId::from_hex(hex).map_err(|_| {
            UploadError::Protocol(format!(
                "`want {}`: not an object id",
                String::from_utf8_lossy(rest).escape_default()
            ))
        })?;
        if wants.is_empty() {
            caps = String::from_utf8_lossy(rest.get(40..).unwrap_or_default())
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        if !tips.contains(&id) && !graph.reachable(id, tips.iter().copied())? {
            return Err(refuse(output, format!("upload-pack: not our ref {id}")));
        }
        wants.push(id);
        if wants.len() > MAX_WANTS {
            return Err(refuse(
                output,
                format!("too many wants (more than {MAX_WANTS})"),
            ));
        }
    }
    if wants.is_empty() {
        return Ok(None);
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    if caps.iter().any(|c| c.starts_with("filter")) {
        return Err(refuse(
            output,
            "partial clone (--filter) is not supported by this server".into(),
        ));
    }
    deepen.relative = deepen.relative || has("deepen-relative");
    let acks = if has("multi_ack_detailed") {
        Acks::Detailed
    } else if has("multi_ack") {
        Acks::Multi
    } else {
        Acks::Single
    };
    let no_done = acks == Acks::Detailed && has("no-done");
    let framing = Framing {
        band_payload: if has("side-band-64k") {
            Some(MAX_BAND_PAYLOAD)
        } else if has("side-band") {
            Some(MAX_SMALL_BAND_PAYLOAD)
        } else {
            None
        },
        progress: !has("no-progress"),
    };

    // Shallow boundaries are settled before negotiation in v0.
    let want_commits: Vec<ObjectId> = peel_to_commits(&mut graph, &wants)?;
    let shallow = shallow::compute(&mut graph, &want_commits, &deepen, &|n| refs.resolve(n))
        .map_err(|e| match e {
            UploadError::Refused(m) => refuse(output, m),
            e => e,
        })?;
    if deepen.requested() {
        for id in &shallow.shallow {
            pktline::data(output, format!("shallow {id}\n").as_bytes())?;
        }
        for id in &shallow.unshallow {
            pktline::data(output, format!("unshallow {id}\n").as_bytes())?;
        }
        pktline::flush(output)?;
        output.flush()?;
    }

    let neg = negotiate(
        &mut reader,
        output,
        &mut graph,
        &want_commits,
        acks,
        no_done,
    )?;
    drop(reader);
    let plan = Plan {
        wants: &wants,
        common: neg.common(),
        shallow: &shallow,
        include_tag: has("include-tag"),
        refs: &refs,
    };
    let sent = pack::send(&mut graph, &plan, output, framing)?;
    if framing.band_payload.is_some() {
        pktline::flush(output)?;
    }
    Ok(Some(sent))
}

/// Sends `ERR <message>` (git shows `remote error: ...`) and returns the
/// matching error.
fn refuse(output: &mut dyn Write, message: String) -> UploadError {
    let _ = pktline::error(output, &message).and_then(|_| output.flush());
    UploadError::Refused(message)
}

/// Wanted tags stand for the commits they point to in the walks.
pub fn peel_to_commits(
    graph: &mut Graph<'_>,
    wants: &[ObjectId],
) -> Result<Vec<ObjectId>, UploadError> {
    let repo = graph.repo();
    let mut out = vec![];
    for &w in wants {
        let obj = repo
            .find_object(w)
            .map_err(|e| UploadError::repo(repo, format!("object {w}: {e}")))?;
        match obj.kind {
            gix::object::Kind::Commit => out.push(w),
            gix::object::Kind::Tag => {
                if let Ok(c) = obj.peel_to_commit() {
                    out.push(c.id);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The have/ACK exchange until `done` (or, with no-done, until the server
/// says `ready`).
fn negotiate<R: BufRead>(
    reader: &mut Reader<R>,
    output: &mut dyn Write,
    graph: &mut Graph<'_>,
    wants: &[ObjectId],
    acks: Acks,
    no_done: bool,
) -> Result<Negotiator, UploadError> {
    let mut neg = Negotiator::default();
    let mut last: Option<ObjectId> = None;
    let (mut got_common, mut got_other, mut sent_ready) = (false, false, false);
    let ack = |out: &mut dyn Write, id: &ObjectId, suffix: &str| {
        pktline::data(out, format!("ACK {id}{suffix}\n").as_bytes())
    };
    loop {
        let Some(pkt) = reader.read()? else {
            return Err(UploadError::Protocol(
                "the client hung up during negotiation".into(),
            ));
        };
        match pkt {
            Pkt::Flush => {
                if acks == Acks::Detailed
                    && got_common
                    && !got_other
                    && neg.ok_to_give_up(graph, wants)?
                {
                    sent_ready = true;
                    if let Some(l) = &last {
                        ack(output, l, " ready")?;
                    }
                }
                if neg.common().is_empty() || acks != Acks::Single {
                    pktline::data(output, b"NAK\n")?;
                }
                if no_done && sent_ready {
                    if let Some(l) = &last {
                        ack(output, l, "")?;
                    }
                    output.flush()?;
                    return Ok(neg);
                }
                output.flush()?;
                got_common = false;
                got_other = false;
            }
            Pkt::Data(_) => {
                let line = pkt.text().unwrap_or_default();
                if line == b"done" {
                    match (&last, acks) {
                        (Some(l), Acks::Multi | Acks::Detailed) => ack(output, l, "")?,
                        (Some(_), Acks::Single) => {}
                        (None, _) => pktline::data(output, b"NAK\n")?,
                    }
                    output.flush()?;
                    return Ok(neg);
                }
                let id = line
                    .strip_prefix(b"have ")
                    .and_then(|h| ObjectId::from_hex(h).ok())
                    .ok_or_else(|| {
                        UploadError::Protocol(format!(
                            "expected `have <id>` or `done`, got `{}`",
                            String::from_utf8_lossy(line).escape_default()
                        ))
                    })?;
                match neg.have(graph, id)? {
                    Have::Unknown => {
                        got_other = true;
                        if acks != Acks::Single && neg.ok_to_give_up(graph, wants)? {
                            if acks == Acks::Detailed {
                                sent_ready = true;
                                ack(output, &id, " ready")?;
                            } else {
                                ack(output, &id, " continue")?;
                            }
                        }
                    }
                    Have::Common => {
                        got_common = true;
                        last = Some(id);
                        match acks {
                            Acks::Detailed => ack(output, &id, " common")?,
                            Acks::Multi => ack(output, &id, " continue")?,
                            Acks::Single if neg.common().len() == 1 => ack(output, &id, "")?,
                            Acks::Single => {}
                        }
                    }
                }
            }
            other => {
                return Err(UploadError::Protocol(format!(
                    "unexpected {other:?} packet during negotiation"
                )))
            }
        }
    }
}
