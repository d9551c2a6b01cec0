//! receive-pack's first half: the ref advertisement and the client's
//! request (ref update commands with capabilities, then push options).

use std::io::{BufRead, Write};

use gix::ObjectId;

use super::{ReceiveError, CAPABILITIES};

use crate::pktline::{self, Pkt, Reader};

/// Most ref updates in one push.
const MAX_COMMANDS: usize = 10_000;
/// Most push options in one push.
const MAX_PUSH_OPTIONS: usize = 100;

/// One requested ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Expected current value (zero = must not exist).
    pub old: ObjectId,
    /// New value (zero = delete).
    pub new: ObjectId,
    /// Full ref name.
    pub name: String,
}

impl Command {
    /// Does this command delete its ref?
    pub fn is_delete(&self) -> bool {
        self.new.is_null()
    }
}

/// A ref update command that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not UTF-8.
    #[error("command line is not UTF-8")]
    NotUtf8,
    /// Not `<old> <new> <ref>`.
    #[error("malformed command `{}`", .0.escape_default())]
    Malformed(String),
    /// An id that is not 40 hex digits.
    #[error("`{}` is not an object id", .0.escape_default())]
    BadId(String),
    /// A ref name git would not accept, or outside `refs/`.
    #[error("invalid ref name `{}`", .0.escape_default())]
    BadRef(String),
}

/// Parses `<old> <new> <ref>` (capabilities already split off).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let text = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
    let text = text.trim_end_matches('\n');
    let mut parts = text.splitn(3, ' ');
    let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CommandError::Malformed(text.to_string()));
    };
    let id =
        |s: &str| ObjectId::from_hex(s.as_bytes()).map_err(|_| CommandError::BadId(s.to_string()));
    if !name.starts_with("refs/")
        || gix::refs::FullName::try_from(name).is_err()
        || name.contains("..")
    {
        return Err(CommandError::BadRef(name.to_string()));
    }
    Ok(Command {
        old: id(old)?,
        new: id(new)?,
        name: name.to_string(),
    })
}

/// The client's request.
#[derive(Debug, Default)]
pub struct Request {
    /// Ref updates, in order.
    pub commands: Vec<Command>,
    /// The client's capabilities (from the first command).
    pub caps: Vec<String>,
    /// `git push -o` values, in order.
    pub push_options: Vec<String>,
}

impl Request {
    /// Did the client ask for `cap`?
    pub fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }
}

/// Writes the advertisement: refs (sorted) with capabilities behind a NUL
/// on the first line, or `capabilities^{}` for an empty repository.
pub fn advertise(repo: &gix::Repository, out: &mut dyn Write) -> Result<usize, ReceiveError> {
    let repo_err = |e: &dyn std::fmt::Display| ReceiveError::Repo {
        path: repo.path().display().to_string(),
        message: e.to_string(),
    };
    let platform = repo.references().map_err(|e| repo_err(&e))?;
    let mut refs = vec![];
    for r in platform.all().map_err(|e| repo_err(&e))? {
        let r = r.map_err(|e| repo_err(&e))?;
        if let Some(id) = r.target().try_id() {
            refs.push((id.to_owned(), r.name().as_bstr().to_string()));
        }
    }
    refs.sort_by(|a, b| a.1.cmp(&b.1));
    if refs.is_empty() {
        let line = format!(
            "{} capabilities^{{}}\0{CAPABILITIES}\n",
            ObjectId::null(gix::hash::Kind::Sha1)
        );
        pktline::data(out, line.as_bytes())?;
    }
    for (i, (id, name)) in refs.iter().enumerate() {
        let line = if i == 0 {
            format!("{id} {name}\0{CAPABILITIES}\n")
        } else {
            format!("{id} {name}\n")
        };
        pktline::data(out, line.as_bytes())?;
    }
    pktline::flush(out)?;
    out.flush()?;
    Ok(refs.len())
}

/// Reads the commands until flush, then the push options if negotiated.
/// An empty request (a probe, or nothing to push) has no commands.
pub fn read_request(input: &mut dyn BufRead) -> Result<Request, ReceiveError> {
    let mut req = Request::default();
    let mut reader = Reader::new(input);
    loop {
        let pkt = match reader.read()? {
            // A client that only looked at the refs hangs up here.
            None if req.commands.is_empty() => return Ok(req),
            None => {
                return Err(ReceiveError::Protocol(
                    "the client hung up before the end of its commands".into(),
                ))
            }
            Some(p) => p,
        };
        let bytes = match pkt {
            Pkt::Flush => break,
            Pkt::Data(b) => b,
            other => {
                return Err(ReceiveError::Protocol(format!(
                    "unexpected {other:?} packet among the commands"
                )))
            }
        };
        let (cmd, rest) = match bytes.iter().position(|&b| b == 0) {
            Some(nul) => (&bytes[..nul], Some(&bytes[nul + 1..])),
            None => (bytes, None),
        };
        if let Some(rest) = rest {
            req.caps = String::from_utf8_lossy(rest)
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        req.commands.push(parse_command(cmd)?);
        if req.commands.len() > MAX_COMMANDS {
            return Err(ReceiveError::Protocol(format!(
                "too many ref updates in one push (more than {MAX_COMMANDS})"
            )));
        }
    }
    if !req.commands.is_empty() && req.has("push-options") {
        loop {
            match reader.read()? {
                Some(Pkt::Flush) => break,
                Some(pkt @ Pkt::Data(_)) => {
                    let text = pkt.text().unwrap_or_default();
                    req.push_options
                        .push(String::from_utf8_lossy(text).to_string());
                }
                Some(other) => {
                    return Err(ReceiveError::Protocol(format!(
                        "unexpected {other:?} packet among the push options"
                    )))
                }
                None => {
                    return Err(ReceiveError::Protocol(
                        "the client hung up in the middle of its push options".into(),
                    ))
                }
            }
            if req.push_options.len() > MAX_PUSH_OPTIONS {
                return Err(ReceiveError::Protocol(format!(
                    "too many push options (more than {MAX_PUSH_OPTIONS})"
                )));
            }
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_hostile_ones_fail() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let c = parse_command(format!("{z} {a} refs/heads/main").as_bytes()).unwrap();
        assert!(c.old.is_null() && !c.is_delete());
        for bad in [
            format!("{z} {a}"),
            format!("{z} xyz refs/heads/main"),
            format!("{z} {a} HEAD"),
            format!("{z} {a} refs/heads/../../etc"),
            format!("{z} {a} refs/heads/a b"),
            "garbage".to_string(),
            String::new(),
        ] {
            assert!(parse_command(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_command(&[0xff, 0xfe]).is_err());
    }

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn requests_with_options_and_every_truncation() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let first = format!("{z} {a} refs/heads/main\0report-status push-options\n");
        let full = format!(
            "{}0000{}{}0000",
            pkt(&first),
            pkt("deploy=false\n"),
            pkt("x=1")
        );
        let req = read_request(&mut full.as_bytes()).unwrap();
        assert_eq!(req.commands.len(), 1);
        assert!(req.has("report-status") && req.has("push-options"));
        assert_eq!(req.push_options, ["deploy=false", "x=1"]);
        // A probe: nothing at all, or only a flush.
        assert!(read_request(&mut &b""[..]).unwrap().commands.is_empty());
        assert!(read_request(&mut &b"0000"[..]).unwrap().commands.is_empty());
        // Every cut inside the request is an error, never a panic.
        for cut in 1..full.len() - 4 {
            if let Ok(r) = read_request(&mut &full.as_bytes()[..cut]) {
                assert!(r.commands.is_empty(), "cut at {cut} accepted: {r:?}");
            }
        }
        let many = pkt(&first) + &pkt(&format!("{z} {a} refs/heads/b\n")).repeat(10_001) + "0000";
        let e = read_request(&mut many.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("too many ref updates"), "{e}");
        let delim = pkt(&first) + "0001";
        let e = read_request(&mut delim.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("unexpected Delim"), "{e}");
    }
}
