//! `git-receive-pack`: advertise refs, read the update commands and the
//! pack (indexed and verified by gix-pack, thin packs completed from the
//! repository), run the deploy hook for deploy branches before their refs
//! move, update the refs in one transaction with old-id checks, and report
//! per ref. Runs on a blocking thread over the SSH channel's byte streams.

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::Target;
use gix::ObjectId;
use gix_packetline::blocking_io::StreamingPeekableIter;
use gix_packetline::{Channel, PacketLineRef};

use crate::hook::{DeployHook, DeployRequest};
use crate::pktline;

/// Capabilities receive-pack advertises.
pub const CAPABILITIES: &str =
    "report-status delete-refs side-band-64k quiet atomic ofs-delta push-options object-format=sha1 agent=byteport-gitd/0.1";

/// Errors that end a receive-pack session.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol; the message went to the client too.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The repository cannot be used.
    #[error("repository {path}: {message}")]
    Repo {
        /// The repository.
        path: String,
        /// What went wrong.
        message: String,
    },
}

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
    fn is_delete(&self) -> bool {
        self.new.is_null()
    }
}

/// Parses `<old> <new> <ref>` (capabilities already split off).
pub fn parse_command(line: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|_| "command line is not UTF-8".to_string())?;
    let text = text.trim_end_matches('\n');
    let mut parts = text.splitn(3, ' ');
    let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed command `{}`", text.escape_default()));
    };
    let id = |s: &str| {
        ObjectId::from_hex(s.as_bytes())
            .map_err(|_| format!("`{}` is not an object id", s.escape_default()))
    };
    if !name.starts_with("refs/")
        || gix::refs::FullName::try_from(name).is_err()
        || name.contains("..")
    {
        return Err(format!("invalid ref name `{}`", name.escape_default()));
    }
    Ok(Command {
        old: id(old)?,
        new: id(new)?,
        name: name.to_string(),
    })
}

/// Settings for one receive-pack run.
pub struct Receive<'a> {
    /// The bare repository.
    pub repo: &'a Path,
    /// The app.
    pub app: &'a str,
    /// The pushing user.
    pub user: &'a str,
    /// Branch names whose pushes deploy.
    pub deploy_branches: &'a [String],
    /// The hook.
    pub hook: &'a dyn DeployHook,
    /// Runtime to drive the async hook from this blocking thread.
    pub runtime: tokio::runtime::Handle,
    /// Largest pack accepted.
    pub max_pack_bytes: u64,
    /// Serializes ref updates of this app.
    pub app_lock: &'a std::sync::Mutex<()>,
}

struct Counting<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "push exceeds the maximum pack size of {} MiB",
                self.limit >> 20
            )));
        }
        Ok(n)
    }
}

fn advertise(repo: &gix::Repository, out: &mut dyn Write) -> Result<(), ReceiveError> {
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
    Ok(())
}

/// Runs receive-pack over `input`/`output`.
pub fn run(
    ctx: &Receive<'_>,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), ReceiveError> {
    let repo = gix::open(ctx.repo).map_err(|e| ReceiveError::Repo {
        path: ctx.repo.display().to_string(),
        message: e.to_string(),
    })?;
    advertise(&repo, output)?;

    // Commands until flush; the first carries the client's capabilities.
    let mut commands = vec![];
    let mut caps: Vec<String> = vec![];
    let mut lines = StreamingPeekableIter::new(&mut *input, &[PacketLineRef::Flush], false);
    while let Some(line) = lines.read_line() {
        let line = line?.map_err(|e| ReceiveError::Protocol(format!("bad pkt-line: {e}")))?;
        let Some(bytes) = line.as_slice() else {
            continue;
        };
        let (cmd, rest) = match bytes.iter().position(|&b| b == 0) {
            Some(nul) => (&bytes[..nul], Some(&bytes[nul + 1..])),
            None => (bytes, None),
        };
        if let Some(rest) = rest {
            caps = String::from_utf8_lossy(rest)
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        commands.push(parse_command(cmd).map_err(ReceiveError::Protocol)?);
        if commands.len() > 10_000 {
            return Err(ReceiveError::Protocol(
                "too many ref updates in one push".into(),
            ));
        }
    }
    if commands.is_empty() {
        return Ok(()); // ls-remote style probe, or nothing to push
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    let (sideband, atomic) = (has("side-band-64k"), has("atomic"));
    let mut push_options = vec![];
    if has("push-options") {
        lines.reset();
        while let Some(line) = lines.read_line() {
            let line =
                line?.map_err(|e| ReceiveError::Protocol(format!("bad push option: {e}")))?;
            if let Some(b) = line.as_slice() {
                push_options.push(String::from_utf8_lossy(b).trim_end().to_string());
            }
            if push_options.len() > 100 {
                return Err(ReceiveError::Protocol("too many push options".into()));
            }
        }
    }
    drop(lines);

    // The pack, unless every command is a deletion.
    let mut unpack: Result<Option<std::path::PathBuf>, String> = Ok(None);
    if commands.iter().any(|c| !c.is_delete()) {
        let pack_dir = repo.objects.store_ref().path().join("pack");
        let mut limited = io::BufReader::with_capacity(
            64 * 1024,
            Counting {
                inner: &mut *input,
                read: 0,
                limit: ctx.max_pack_bytes,
            },
        );
        let interrupt = AtomicBool::new(false);
        unpack = gix_pack::Bundle::write_to_directory(
            &mut limited,
            Some(&pack_dir),
            &mut gix::progress::Discard,
            &interrupt,
            Some(repo.objects.clone()),
            gix::hash::Kind::Sha1,
            gix_pack::bundle::write::Options {
                thread_limit: Some(2),
                alloc_limit_bytes: Some(512 << 20),
                ..Default::default()
            },
        )
        .map(|outcome| outcome.keep_path)
        .map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            msg
        });
    }

    let send_progress = |out: &mut dyn Write, text: &str| -> io::Result<()> {
        if sideband {
            pktline::band(out, Channel::Progress, format!("{text}\n").as_bytes())?;
            out.flush()?;
        }
        Ok(())
    };

    let mut results: Vec<Result<(), String>> = vec![];
    match &unpack {
        Err(e) => {
            send_progress(output, &format!("error: {e}"))?;
            results = commands
                .iter()
                .map(|_| Err("unpacker error".to_string()))
                .collect();
        }
        Ok(_) => {
            let _guard = ctx.app_lock.lock().unwrap_or_else(|p| p.into_inner());
            // Re-open so the new pack is visible.
            let repo = gix::open(ctx.repo).map_err(|e| ReceiveError::Repo {
                path: ctx.repo.display().to_string(),
                message: e.to_string(),
            })?;
            for c in &commands {
                results.push(check_and_deploy(ctx, &repo, c, &push_options, &mut |t| {
                    let _ = send_progress(output, t);
                }));
            }
            if atomic && results.iter().any(|r| r.is_err()) {
                results = results
                    .into_iter()
                    .map(|r| r.and(Err("atomic push failed".to_string())))
                    .collect();
            }
            let edits: Vec<RefEdit> = commands
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(c, _)| edit_for(c))
                .collect();
            if !edits.is_empty() {
                let committer = gix::actor::SignatureRef {
                    name: "byteport".into(),
                    email: "gitd@byteport.localhost".into(),
                    time: "0 +0000",
                };
                if let Err(e) = repo.edit_references_as(edits, Some(committer)) {
                    let msg = format!("ref update failed: {e}");
                    for r in results.iter_mut().filter(|r| r.is_ok()) {
                        *r = Err(msg.clone());
                    }
                }
            }
        }
    }
    if let Ok(Some(keep)) = &unpack {
        let _ = std::fs::remove_file(keep);
    }

    // The report, inside side-band channel 1 when negotiated.
    let mut report = vec![];
    match &unpack {
        Ok(_) => pktline::data(&mut report, b"unpack ok\n")?,
        Err(e) => pktline::data(&mut report, format!("unpack {}\n", one_line(e)).as_bytes())?,
    }
    for (c, r) in commands.iter().zip(&results) {
        let line = match r {
            Ok(()) => format!("ok {}\n", c.name),
            Err(reason) => format!("ng {} {}\n", c.name, one_line(reason)),
        };
        pktline::data(&mut report, line.as_bytes())?;
    }
    pktline::flush(&mut report)?;
    if sideband {
        pktline::band(output, Channel::Data, &report)?;
        pktline::flush(output)?;
    } else {
        output.write_all(&report)?;
    }
    output.flush()?;
    match unpack {
        // The client has the report; the exit status says it failed too.
        Err(e) => Err(ReceiveError::Protocol(format!(
            "the pack was not accepted: {}",
            one_line(&e)
        ))),
        Ok(_) => Ok(()),
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(500).collect()
}

fn current(repo: &gix::Repository, name: &str) -> Option<ObjectId> {
    repo.try_find_reference(name)
        .ok()
        .flatten()
        .and_then(|r| r.target().try_id().map(|id| id.to_owned()))
}

fn check_and_deploy(
    ctx: &Receive<'_>,
    repo: &gix::Repository,
    c: &Command,
    push_options: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let now = current(repo, &c.name);
    match (now, c.old.is_null()) {
        (Some(id), false) if id == c.old => {}
        (None, true) => {}
        (Some(_), true) => return Err("already exists (fetch first)".into()),
        _ => return Err("stale info: the ref changed since you fetched (fetch first)".into()),
    }
    if c.is_delete() {
        return Ok(());
    }
    if !repo.has_object(c.new) {
        return Err("missing necessary objects".into());
    }
    let branch = c.name.strip_prefix("refs/heads/");
    if branch.is_some_and(|b| ctx.deploy_branches.iter().any(|d| d == b)) {
        let req = DeployRequest {
            app: ctx.app.to_string(),
            repo: ctx.repo.to_path_buf(),
            git_ref: c.name.clone(),
            old: c.old.to_string(),
            new: c.new.to_string(),
            user: ctx.user.to_string(),
            push_options: push_options.to_vec(),
        };
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let hook = ctx.hook;
        let sender = std::sync::Mutex::new(tx);
        let relay = move |l: &str| {
            let _ = sender.lock().map(|s| s.send(l.to_string()));
        };
        let result = std::thread::scope(|scope| {
            let handle = scope.spawn(|| ctx.runtime.block_on(hook.deploy(&req, &relay)));
            // Forward progress lines live while the hook runs.
            while !handle.is_finished() {
                while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
                    progress(&l);
                }
            }
            while let Ok(l) = rx.try_recv() {
                progress(&l);
            }
            handle
                .join()
                .unwrap_or_else(|_| Err("the deploy hook panicked".into()))
        });
        drop(lines);
        return result.map_err(|e| format!("deploy failed: {e}"));
    }
    Ok(())
}

fn edit_for(c: &Command) -> RefEdit {
    let expected = if c.old.is_null() {
        PreviousValue::MustNotExist
    } else {
        PreviousValue::MustExistAndMatch(Target::Object(c.old))
    };
    let change = if c.is_delete() {
        Change::Delete {
            expected,
            log: RefLog::AndReference,
        }
    } else {
        Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "push".into(),
            },
            expected,
            new: Target::Object(c.new),
        }
    };
    RefEdit {
        change,
        name: c
            .name
            .as_str()
            .try_into()
            .expect("validated in parse_command"),
        deref: false,
    }
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
}
