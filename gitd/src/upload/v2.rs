//! upload-pack, protocol v2: the capability advertisement, then a loop of
//! commands (`command=<name>`, capability lines, delim, arguments, flush)
//! until the client sends a lone flush or hangs up. Commands: `ls-refs`
//! and `fetch` (acknowledgments, `ready`, shallow-info, packfile over
//! side-band). Each request stands alone, as the protocol requires.

use std::io::{BufRead, Write};

use gix::ObjectId;

use super::graph::Graph;
use super::negotiate::{Have, Negotiator, MAX_WANTS};
use super::pack::{self, Framing, Plan, Sent};
use super::refs::{LsRefs, Refs};
use super::shallow::{self, Deepen};
use super::v0::peel_to_commits;
use super::UploadError;
use crate::pktline::{self, Pkt, Reader, MAX_BAND_PAYLOAD};

/// The capability advertisement (after `version 2`).
pub const ADVERTISEMENT: &[&str] = &[
    "agent=byteport-gitd/0.1",
    "ls-refs=unborn",
    "fetch=shallow wait-for-done",
    "server-option",
    "object-format=sha1",
];

/// Most lines accepted in one request.
const MAX_ARGS: usize = 512 * 1024;

/// One parsed request.
struct Request {
    command: String,
    args: Vec<Vec<u8>>,
}

/// Runs a v2 session.
pub fn run(
    repo: &gix::Repository,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<Vec<Sent>, UploadError> {
    pktline::data(output, b"version 2\n")?;
    for cap in ADVERTISEMENT {
        pktline::data(output, format!("{cap}\n").as_bytes())?;
    }
    pktline::flush(output)?;
    output.flush()?;

    let mut reader = Reader::new(input);
    let mut sent = vec![];
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(sent),
            Err(UploadError::Refused(m)) => return Err(refuse(output, m)),
            Err(e) => return Err(e),
        };
        // The refs can move between commands (a push in between).
        let result = match request.command.as_str() {
            "ls-refs" => {
                let args = request.args.iter().map(|a| Pkt::Data(a));
                LsRefs::parse(args).and_then(|a| {
                    a.write(&Refs::read(repo)?, output)?;
                    Ok(None)
                })
            }
            "fetch" => fetch(repo, &request.args, output),
            other => Err(UploadError::Refused(format!(
                "unknown command `{}`",
                other.escape_default()
            ))),
        };
        match result {
            Ok(Some(s)) => sent.push(s),
            Ok(None) => {}
            Err(UploadError::Refused(m)) => return Err(refuse(output, m)),
            Err(e) => return Err(e),
        }
        output.flush()?;
    }
}

fn refuse(output: &mut dyn Write, message: String) -> UploadError {
    // After a fetch has started its packfile the message went on band 3;
    // an extra ERR line after it is harmless to a client that stopped.
    let _ = pktline::error(output, &message).and_then(|_| output.flush());
    UploadError::Refused(message)
}

/// Reads `command=...`, capability lines, delim, arguments, flush.
/// `None`: the client is done (lone flush or hang-up between requests).
fn read_request<R: BufRead>(reader: &mut Reader<R>) -> Result<Option<Request>, UploadError> {
    let command = match reader.read()? {
        None | Some(Pkt::Flush) => return Ok(None),
        Some(pkt @ Pkt::Data(_)) => {
            let line = pkt.text().unwrap_or_default();
            let Some(name) = line.strip_prefix(b"command=") else {
                return Err(UploadError::Refused(format!(
                    "expected `command=<name>`, got `{}`",
                    String::from_utf8_lossy(line).escape_default()
                )));
            };
            String::from_utf8_lossy(name).to_string()
        }
        Some(other) => {
            return Err(UploadError::Refused(format!(
                "expected a command, got a {other:?} packet"
            )))
        }
    };
    // Capabilities, each one we advertised, until delim (arguments follow)
    // or flush (no arguments).
    let mut args = vec![];
    let mut in_args = false;
    loop {
        let Some(pkt) = reader.read()? else {
            return Err(UploadError::Protocol(format!(
                "the client hung up in the middle of the `{command}` request"
            )));
        };
        match pkt {
            Pkt::Flush => break,
            Pkt::Delim if !in_args => in_args = true,
            Pkt::Data(_) if in_args => {
                args.push(pkt.text().unwrap_or_default().to_vec());
                if args.len() > MAX_ARGS {
                    return Err(UploadError::Refused(format!(
                        "too many arguments to `{command}`"
                    )));
                }
            }
            Pkt::Data(_) => check_capability(pkt.text().unwrap_or_default())?,
            other => {
                return Err(UploadError::Refused(format!(
                    "unexpected {other:?} packet in the `{command}` request"
                )))
            }
        }
    }
    Ok(Some(Request { command, args }))
}

/// Only capabilities the server advertised may be sent (as git requires).
fn check_capability(line: &[u8]) -> Result<(), UploadError> {
    let text = String::from_utf8_lossy(line);
    let (key, value) = text.split_once('=').unwrap_or((&text, ""));
    match key {
        "agent" | "server-option" | "session-id" => Ok(()),
        "object-format" if value == "sha1" => Ok(()),
        "object-format" => Err(UploadError::Refused(format!(
            "object-format `{}` is not supported (this server uses sha1)",
            value.escape_default()
        ))),
        _ => Err(UploadError::Refused(format!(
            "unknown capability `{}`",
            text.escape_default()
        ))),
    }
}

/// `fetch` arguments.
#[derive(Default)]
struct FetchArgs {
    wants: Vec<ObjectId>,
    haves: Vec<ObjectId>,
    done: bool,
    no_progress: bool,
    include_tag: bool,
    wait_for_done: bool,
    deepen: Deepen,
}

fn parse_fetch(args: &[Vec<u8>]) -> Result<FetchArgs, UploadError> {
    let mut f = FetchArgs::default();
    let id = |what: &str, hex: &[u8]| {
        ObjectId::from_hex(hex).map_err(|_| {
            UploadError::Refused(format!(
                "fetch: `{what} {}`: not an object id",
                String::from_utf8_lossy(hex).escape_default()
            ))
        })
    };
    for line in args {
        let line = line.as_slice();
        match line {
            b"done" => f.done = true,
            b"thin-pack" | b"ofs-delta" => {}
            b"no-progress" => f.no_progress = true,
            b"include-tag" => f.include_tag = true,
            b"wait-for-done" => f.wait_for_done = true,
            _ if line.starts_with(b"want ") => {
                f.wants.push(id("want", &line[5..])?);
                if f.wants.len() > MAX_WANTS {
                    return Err(UploadError::Refused(format!(
                        "fetch: too many wants (more than {MAX_WANTS})"
                    )));
                }
            }
            _ if line.starts_with(b"have ") => f.haves.push(id("have", &line[5..])?),
            _ if line.starts_with(b"filter ") => {
                return Err(UploadError::Refused(
                    "partial clone (--filter) is not supported by this server".into(),
                ))
            }
            _ if f.deepen.parse_line(line)? => {}
            _ => {
                return Err(UploadError::Refused(format!(
                    "fetch: unexpected argument `{}`",
                    String::from_utf8_lossy(line).escape_default()
                )))
            }
        }
    }
    Ok(f)
}

fn fetch(
    repo: &gix::Repository,
    args: &[Vec<u8>],
    output: &mut dyn Write,
) -> Result<Option<Sent>, UploadError> {
    let args = parse_fetch(args)?;
    let refs = Refs::read(repo)?;
    let mut graph = Graph::new(repo);
    // v2 wants may name any object the repository has.
    for w in &args.wants {
        if !repo.has_object(*w) {
            return Err(UploadError::Refused(format!(
                "upload-pack: not our ref {w}"
            )));
        }
    }
    if args.wants.is_empty() && !args.wait_for_done {
        // Nothing wanted: an empty response.
        pktline::flush(output)?;
        return Ok(None);
    }
    let want_commits = peel_to_commits(&mut graph, &args.wants)?;

    let mut neg = Negotiator::default();
    if !args.haves.is_empty() {
        let mut acked = vec![];
        for &h in &args.haves {
            if neg.have(&mut graph, h)? == Have::Common {
                acked.push(h);
            }
        }
        if !args.done {
            pktline::data(output, b"acknowledgments\n")?;
            if acked.is_empty() {
                pktline::data(output, b"NAK\n")?;
            }
            for id in &acked {
                pktline::data(output, format!("ACK {id}\n").as_bytes())?;
            }
            if !args.wait_for_done && neg.ok_to_give_up(&mut graph, &want_commits)? {
                pktline::data(output, b"ready\n")?;
                pktline::delim(output)?;
            } else {
                // Not yet: the client sends more haves in a new request.
                pktline::flush(output)?;
                return Ok(None);
            }
        }
    }

    let shallow = shallow::compute(&mut graph, &want_commits, &args.deepen, &|n| {
        refs.resolve(n)
    })?;
    if args.deepen.requested() || !args.deepen.client_shallow.is_empty() {
        pktline::data(output, b"shallow-info\n")?;
        for id in &shallow.shallow {
            pktline::data(output, format!("shallow {id}\n").as_bytes())?;
        }
        for id in &shallow.unshallow {
            pktline::data(output, format!("unshallow {id}\n").as_bytes())?;
        }
        pktline::delim(output)?;
    }
    pktline::data(output, b"packfile\n")?;
    let plan = Plan {
        wants: &args.wants,
        common: neg.common(),
        shallow: &shallow,
        include_tag: args.include_tag,
        refs: &refs,
    };
    let sent = pack::send(
        &mut graph,
        &plan,
        output,
        Framing {
            band_payload: Some(MAX_BAND_PAYLOAD),
            progress: !args.no_progress,
        },
    )?;
    pktline::flush(output)?;
    Ok(Some(sent))
}
