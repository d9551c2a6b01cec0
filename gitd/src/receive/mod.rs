//! `git-receive-pack` (push; protocol v0, as git itself speaks it): advertise
//! refs ([`commands`]), read the update commands and push options, ingest
//! the pack ([`ingest`]: size limit, indexed and verified by gix-pack, thin
//! packs completed from the repository), run the deploy hook for deploy
//! branches before their refs move and update the refs in one transaction
//! with old-id checks ([`update`]), then report per ref. Runs on a blocking
//! thread over the SSH channel's byte streams.

pub mod claims;
pub mod commands;
pub mod connectivity;
pub mod ingest;
pub mod update;

use std::io::{self, BufRead, Write};
use std::path::Path;

use gix_packetline::Channel;

use crate::hook::DeployHook;
use crate::pktline::{self, PktError};

pub use commands::{parse_command, Command, CommandError};
pub use update::RefRejection;

/// Capabilities receive-pack advertises.
pub const CAPABILITIES: &str =
    "report-status delete-refs side-band-64k quiet atomic ofs-delta push-options object-format=sha1 agent=byteport-gitd/0.1";

/// Errors that end a receive-pack session.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The connection failed or went idle.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A ref update command does not parse.
    #[error("protocol: {0}")]
    Command(#[from] CommandError),
    /// The pack was refused; the client has the report and a `remote:`
    /// line saying why.
    #[error("the pack was not accepted: {0}")]
    Reported(String),
    /// The repository cannot be used.
    #[error("repository {path}: {message}")]
    Repo {
        /// The repository.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl From<PktError> for ReceiveError {
    fn from(e: PktError) -> Self {
        match e {
            PktError::Io(e) => ReceiveError::Io(e),
            other => ReceiveError::Protocol(other.to_string()),
        }
    }
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
    /// The hook (shared: a deploy whose client left is still driven to
    /// its end on a thread of its own).
    pub hook: std::sync::Arc<dyn DeployHook>,
    /// Runtime to drive the async hook from this blocking thread.
    pub runtime: tokio::runtime::Handle,
    /// Largest pack accepted.
    pub max_pack_bytes: u64,
    /// Refs being updated by pushes in progress (this server's).
    pub claims: &'a claims::Claims,
    /// Cancelled when the client closes the channel or the connection
    /// ends: a deploy in progress is then no longer waited for.
    pub client_gone: tokio_util::sync::CancellationToken,
}

/// `remote:` lines and keepalives over side-band 2 and 1, if negotiated.
struct Bands<'a> {
    out: &'a mut dyn Write,
    on: bool,
}

impl update::Feedback for Bands<'_> {
    fn progress(&mut self, text: &str) {
        if self.on {
            let _ = pktline::band(self.out, Channel::Progress, format!("{text}\n").as_bytes())
                .and_then(|_| self.out.flush());
        }
    }
    fn keepalive(&mut self) {
        // An empty data packet, ignored by the client (git's own
        // receive.keepAlive).
        if self.on {
            let _ = self
                .out
                .write_all(b"0005\x01")
                .and_then(|_| self.out.flush());
        }
    }
}

fn open(path: &Path) -> Result<gix::Repository, ReceiveError> {
    gix::open(path).map_err(|e| ReceiveError::Repo {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Runs receive-pack over `input`/`output`.
pub fn run(
    ctx: &Receive<'_>,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), ReceiveError> {
    let repo = open(ctx.repo)?;
    let advertised = commands::advertise(&repo, output)?;
    let req = commands::read_request(input)?;
    if req.commands.is_empty() {
        return Ok(()); // a probe, or nothing to push
    }
    let sideband = req.has("side-band-64k");
    let mut feedback = Bands {
        out: output,
        on: sideband,
    };

    // The pack, unless every command is a deletion. With no refs there is
    // nothing a thin pack could lean on, so the faster path applies.
    let mut unpack: Result<Option<ingest::Ingested>, ingest::IngestError> = Ok(None);
    if req.commands.iter().any(|c| !c.is_delete()) {
        unpack = ingest::ingest(&repo, input, ctx.max_pack_bytes, advertised > 0).map(Some);
    }
    let unpack = unpack.map_err(|e| crate::wording::unpack(&e));

    let results: Vec<Result<(), RefRejection>> = match &unpack {
        Err(e) => {
            update::Feedback::progress(&mut feedback, &format!("error: {e}"));
            req.commands
                .iter()
                .map(|_| Err(RefRejection::Unpack))
                .collect()
        }
        Ok(_) => {
            // Re-open so the new pack is visible.
            let repo = open(ctx.repo)?;
            update::apply(
                ctx,
                &repo,
                &req.commands,
                &req.push_options,
                req.has("atomic"),
                &mut feedback,
            )
        }
    };
    if let Ok(Some(ingest::Ingested { keep: Some(keep) })) = &unpack {
        let _ = std::fs::remove_file(keep);
    }

    // The report, inside side-band channel 1 when negotiated.
    if req.has("report-status") {
        let mut report = vec![];
        match &unpack {
            Ok(_) => pktline::data(&mut report, b"unpack ok\n")?,
            Err(e) => pktline::data(&mut report, format!("unpack {}\n", one_line(e)).as_bytes())?,
        }
        for (c, r) in req.commands.iter().zip(&results) {
            let line = match r {
                Ok(()) => format!("ok {}\n", c.name),
                Err(reason) => format!(
                    "ng {} {}\n",
                    c.name,
                    one_line(&crate::wording::ref_rejected(reason))
                ),
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
    }
    output.flush()?;
    match unpack {
        // The client has the report; the exit status says it failed too.
        Err(e) if sideband => Err(ReceiveError::Reported(one_line(&e))),
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
