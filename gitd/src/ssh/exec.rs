//! One exec request: parse it, check access, then run the git service on
//! a blocking thread over the channel's streams, or the admin command
//! with its live output, the client's stdin and window changes; the exit
//! status follows.

use std::io::{BufReader, BufWriter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId};
use tokio_util::io::SyncIoBridge;

use super::channel_io::ChannelIo;
use super::input::{Draining, InputPump, InputWindow, Until, WaitingWrites};
use crate::limits::IdleIo;
use crate::names::{parse_exec, Request, Service};
use crate::terminal::{Interactive, Tty};
use crate::{wording, Shared};

/// Buffer sizes for the git streams: a few SSH packets per syscall-ish
/// hop between the blocking git thread and the async session.
const STREAM_BUFFER: usize = 128 * 1024;

/// Whatever must outlive the exit-status message (the channel's streams).
pub type Keep = Box<dyn std::any::Any + Send>;

/// Writes `text` (newline added) to the client's stderr.
pub async fn stderr(handle: &Handle, id: ChannelId, text: &str) {
    let mut t = text.to_string();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    let _ = handle.extended_data(id, 1, t.into_bytes()).await;
}

/// Sends the exit status, EOF and close, in the order OpenSSH needs.
pub async fn finish(handle: &Handle, id: ChannelId, code: u32) {
    let _ = handle.exit_status_request(id, code).await;
    let _ = handle.eof(id).await;
    let _ = handle.close(id).await;
}

/// An admin command's live output: the channel's stdout and stderr.
/// Writes that wait are counted: the input pump must then keep russh's
/// session loop moving (see [`super::input`]).
///
/// Written through the session [`Handle`], in packet-sized pieces: each
/// piece is one send on a tokio channel, so a command may drop a write
/// (`select!`) and write again. (russh's `ChannelTx` writer is not
/// cancel-safe: after a dropped write, the next one reports the dropped
/// one's length, and tokio's `write_all` panics on it.)
struct ChannelOutput {
    handle: Handle,
    id: ChannelId,
    /// Keeps a command's concurrent writes from interleaving.
    order: tokio::sync::Mutex<()>,
    waiting: WaitingWrites,
}

/// The most bytes handed to the session at once (one SSH packet): russh
/// keeps what the client's window does not admit yet, so this bounds it.
const OUTPUT_PIECE: usize = 32 * 1024;

impl ChannelOutput {
    fn new(handle: Handle, id: ChannelId, waiting: WaitingWrites) -> ChannelOutput {
        ChannelOutput {
            handle,
            id,
            order: tokio::sync::Mutex::new(()),
            waiting,
        }
    }

    async fn write_all(&self, stream: crate::Stream, bytes: &[u8]) {
        self.waiting
            .track(async {
                let _order = self.order.lock().await;
                for piece in bytes.chunks(OUTPUT_PIECE) {
                    let piece = Bytes::copy_from_slice(piece);
                    let sent = match stream {
                        crate::Stream::Stdout => self.handle.data(self.id, piece).await,
                        crate::Stream::Stderr => self.handle.extended_data(self.id, 1, piece).await,
                    };
                    // A client that went away is noticed by the input pump.
                    if sent.is_err() {
                        return;
                    }
                }
            })
            .await
    }
}

impl crate::CommandOutput for ChannelOutput {
    fn write<'a>(&'a self, stream: crate::Stream, text: &'a str) -> crate::BoxFuture<'a, ()> {
        Box::pin(self.write_all(stream, text.as_bytes()))
    }

    fn write_bytes<'a>(
        &'a self,
        stream: crate::Stream,
        bytes: &'a [u8],
    ) -> crate::BoxFuture<'a, ()> {
        // Untranslated: with a terminal, `\r\n` is the remote pty's
        // business, as the client expects.
        Box::pin(self.write_all(stream, bytes))
    }
}

/// An exec request on one channel of an authenticated connection.
pub struct Exec<'a> {
    /// Server state.
    pub shared: &'a Arc<Shared>,
    /// Who runs it.
    pub user: &'a str,
    /// The channel's `GIT_PROTOCOL` env value.
    pub git_protocol: &'a str,
    /// The terminal the client asked for (admin commands only: a git
    /// service's streams are bytes either way).
    pub tty: Option<Tty>,
    /// Told to the client before an admin command runs (a `TERM` that was
    /// replaced).
    pub tty_note: Option<String>,
    /// The session.
    pub handle: &'a Handle,
    /// The channel.
    pub id: ChannelId,
    /// The connection's input window (a backlogged command shrinks it).
    pub input_window: Arc<InputWindow>,
}

impl Exec<'_> {
    async fn refuse(&self, text: &str, channel: Channel<Msg>) -> (u32, Option<Keep>) {
        stderr(self.handle, self.id, text).await;
        (1, Some(Box::new(channel)))
    }

    /// Runs `line`; the exit status and what must live until it is sent.
    pub async fn run(&self, line: &[u8], channel: Channel<Msg>) -> (u32, Option<Keep>) {
        let request = match parse_exec(line) {
            Ok(r) => r,
            Err(e) => return self.refuse(&wording::bad_command(&e), channel).await,
        };
        let (service, app) = match request {
            Request::Command(cmd) => {
                if let Some(note) = &self.tty_note {
                    stderr(self.handle, self.id, note).await;
                }
                let waiting = WaitingWrites::new();
                let out = ChannelOutput::new(self.handle.clone(), self.id, waiting.clone());
                let size = self.tty.as_ref().map(|t| t.size).unwrap_or_default();
                let (mut pump, input, window) = InputPump::new(
                    channel,
                    self.handle.clone(),
                    self.id,
                    size,
                    &waiting,
                    self.shared.config.idle_timeout,
                    self.input_window.clone(),
                );
                let session = Interactive {
                    tty: self.tty.clone(),
                    input,
                    window,
                };
                let command = self
                    .shared
                    .commands
                    .run_interactive(self.user, &cmd, session, &out);
                let code = tokio::select! {
                    code = command => {
                        // A notice about cut input goes before the exit
                        // status; the channel keeps moving meanwhile.
                        pump.command_ended();
                        pump.run(Until::NoticeSent).await;
                        code
                    }
                    _ = pump.run(Until::ClientLeaves) => {
                        tracing::debug!(user = %self.user, "gitd: client left during an admin command");
                        130
                    }
                };
                // Until the exit status is sent, the client's further
                // messages are taken (and dropped) so the session loop
                // can send it.
                return (code, Some(Box::new((Draining::start(pump), out))));
            }
            Request::Git { service, app } => (service, app),
        };
        let access = match service {
            Service::ReceivePack => crate::Access::Write,
            Service::UploadPack => crate::Access::Read,
        };
        if let Err(e) = self
            .shared
            .authority
            .authorize(self.user, &app, access)
            .await
        {
            if matches!(e, crate::AuthError::Backend(_)) {
                tracing::error!(%app, user = %self.user, error = %wording::chain(&e), "gitd: access check failed");
            }
            return self.refuse(&wording::auth(&e), channel).await;
        }
        let repo = self.shared.config.repos_dir.join(format!("{app}.git"));
        match service {
            Service::ReceivePack => {
                if let Err(e) = crate::repo::ensure_bare(&repo) {
                    tracing::error!(%app, error = %wording::chain(&e), "gitd: cannot create a repository");
                    return self
                        .refuse(&wording::repository_unavailable(&app), channel)
                        .await;
                }
            }
            Service::UploadPack => {
                if !repo.join("HEAD").exists() {
                    return self.refuse(&wording::no_repository(&app), channel).await;
                }
            }
        }
        let job = Job {
            shared: self.shared.clone(),
            user: self.user.to_string(),
            app,
            repo,
            git_protocol: self.git_protocol.to_string(),
            service,
        };
        run_git(job, channel, self.handle, self.id).await
    }
}

/// One git service run.
struct Job {
    shared: Arc<Shared>,
    user: String,
    app: String,
    repo: std::path::PathBuf,
    git_protocol: String,
    service: Service,
}

/// Runs a git service on a blocking thread over the channel's streams
/// (buffered, with the idle timeout), then reports its error on stderr.
async fn run_git(
    job: Job,
    channel: Channel<Msg>,
    handle: &Handle,
    id: ChannelId,
) -> (u32, Option<Keep>) {
    let idle = job.shared.config.idle_timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let (io, gone) = ChannelIo::new(channel);
    let stream = IdleIo::new(io, idle, fired.clone());
    let (read, write) = tokio::io::split(stream);
    let runtime = tokio::runtime::Handle::current();
    let app = job.app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut input = BufReader::with_capacity(STREAM_BUFFER, SyncIoBridge::new(read));
        let mut output = BufWriter::with_capacity(STREAM_BUFFER, SyncIoBridge::new(write));
        let r: Result<(), (String, bool)> = match job.service {
            Service::ReceivePack => {
                let ctx = crate::receive::Receive {
                    repo: &job.repo,
                    app: &job.app,
                    user: &job.user,
                    deploy_branches: &job.shared.config.deploy_branches,
                    hook: job.shared.hook.clone(),
                    runtime,
                    max_pack_bytes: job.shared.config.max_pack_bytes,
                    claims: &job.shared.claims,
                    client_gone: gone,
                };
                crate::receive::run(&ctx, &mut input, &mut output).map_err(|e| {
                    let told = matches!(e, crate::receive::ReceiveError::Reported(_));
                    (e.to_string(), !told)
                })
            }
            Service::UploadPack => {
                crate::upload::run(&job.repo, &job.git_protocol, &mut input, &mut output)
                    .map(|outcome| {
                        tracing::info!(app = %job.app, version = ?outcome.version, packs = ?outcome.packs, "gitd: upload-pack done");
                    })
                    .map_err(|e| {
                        let told = matches!(e, crate::upload::UploadError::Refused(_));
                        (e.to_string(), !told)
                    })
            }
        };
        let _ = std::io::Write::flush(&mut output);
        (r, input, output)
    })
    .await;
    match result {
        Ok((Ok(()), i, o)) => (0, Some(Box::new((i, o)))),
        Ok((Err((e, tell)), i, o)) => {
            let msg = if fired.load(Ordering::SeqCst) {
                wording::idle(idle)
            } else {
                format!("byteport: {e}")
            };
            tracing::warn!(%app, error = %e, "gitd: git service failed");
            if tell || fired.load(Ordering::SeqCst) {
                stderr(handle, id, &msg).await;
            }
            (1, Some(Box::new((i, o))))
        }
        Err(e) => {
            tracing::error!(%app, error = %e, "gitd: git service task failed");
            (1, None)
        }
    }
}
