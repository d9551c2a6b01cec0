//! The SSH side: russh session handler, public-key authentication against
//! the [`Authority`](crate::Authority), `GIT_PROTOCOL` from env requests,
//! exec requests dispatched to the git services or the admin
//! [`Commands`](crate::Commands), exit statuses, and the per-command
//! limits from [`crate::limits`] (connection limit, idle streams).

use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::SyncIoBridge;

use crate::limits::{self, ConnState, IdleIo};
use crate::names::{parse_exec, Request, Service};
use crate::Shared;

/// Buffer sizes for the git streams: a few SSH packets per syscall-ish
/// hop between the blocking git thread and the async session.
const STREAM_BUFFER: usize = 128 * 1024;

/// Most session channels one connection may open.
const MAX_CHANNELS: usize = 8;

/// One client connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    git_protocol: HashMap<ChannelId, String>,
    over_limit: bool,
    state: Arc<ConnState>,
}

impl Connection {
    /// A handler for a new client; `over_limit` connections may only learn
    /// that the server is full.
    pub fn new(
        shared: Arc<Shared>,
        peer: Option<SocketAddr>,
        over_limit: bool,
        state: Arc<ConnState>,
    ) -> Connection {
        Connection {
            shared,
            peer,
            user: None,
            channels: HashMap::new(),
            git_protocol: HashMap::new(),
            over_limit,
            state,
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.shared.authority.user_for_key(&fingerprint).await {
            Ok(Some(user)) => {
                tracing::info!(peer = ?self.peer, %user, over_limit = self.over_limit, "gitd: authenticated");
                self.user = Some(user);
                self.state.authenticated();
                Ok(Auth::Accept)
            }
            Ok(None) => {
                tracing::info!(peer = ?self.peer, %fingerprint, "gitd: unknown key refused");
                Ok(Auth::reject())
            }
            Err(e) => {
                tracing::error!(error = %e, "gitd: key lookup failed");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            drop(reply);
            return Ok(());
        }
        self.state.touch();
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "GIT_PROTOCOL" && value.len() < 256 {
            self.git_protocol.insert(channel, value.to_string());
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = if self.over_limit { "" } else { "help" };
        self.start(id, line.as_bytes().to_vec(), session)
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(id, data.to_vec(), session)
    }
}

impl Connection {
    /// Runs `line` on channel `id` in its own task; the exit status and
    /// close follow when it ends.
    fn start(
        &mut self,
        id: ChannelId,
        line: Vec<u8>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let handle = session.handle();
        let shared = self.shared.clone();
        let protocol = self.git_protocol.remove(&id).unwrap_or_default();
        let running = self.state.running();
        let over_limit = self.over_limit;
        tokio::spawn(async move {
            let (code, keep) = if over_limit {
                let max = shared.config.max_connections;
                stderr(&handle, id, &limits::at_connection_limit(max)).await;
                (1, Some(Box::new(channel) as Box<dyn std::any::Any + Send>))
            } else {
                run_exec(&shared, &user, &line, &protocol, channel, &handle, id).await
            };
            // The channel's streams live until the exit status is sent: an
            // EOF before exit-status makes OpenSSH report status -1.
            let _ = handle.exit_status_request(id, code).await;
            let _ = handle.eof(id).await;
            let _ = handle.close(id).await;
            drop(keep);
            drop(running);
        });
        Ok(())
    }
}

async fn stderr(handle: &Handle, id: ChannelId, text: &str) {
    let mut t = text.to_string();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    let _ = handle.extended_data(id, 1, t.into_bytes()).await;
}

/// An admin command's live output: the channel's stdout and stderr.
struct ChannelOutput {
    stdout: tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>,
    stderr: tokio::sync::Mutex<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl ChannelOutput {
    fn new(channel: &Channel<Msg>) -> ChannelOutput {
        ChannelOutput {
            stdout: tokio::sync::Mutex::new(Box::pin(channel.make_writer())),
            stderr: tokio::sync::Mutex::new(Box::pin(channel.make_writer_ext(Some(1)))),
        }
    }

    async fn flush(&self) {
        let _ = self.stdout.lock().await.flush().await;
        let _ = self.stderr.lock().await.flush().await;
    }
}

impl crate::CommandOutput for ChannelOutput {
    fn write<'a>(&'a self, stream: crate::Stream, text: &'a str) -> crate::BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut w = match stream {
                crate::Stream::Stdout => self.stdout.lock().await,
                crate::Stream::Stderr => self.stderr.lock().await,
            };
            // A client that went away is noticed by `client_gone`.
            if w.write_all(text.as_bytes()).await.is_ok() {
                let _ = w.flush().await;
            }
        })
    }
}

/// Resolves when the client closes the channel or the connection drops.
/// An EOF on the client's stdin (`ssh -n`, `< /dev/null`) is not leaving.
async fn client_gone(channel: &mut Channel<Msg>) {
    while let Some(msg) = channel.wait().await {
        if matches!(msg, russh::ChannelMsg::Close) {
            return;
        }
    }
}

/// Whatever must outlive the exit-status message (the channel's streams).
type Keep = Option<Box<dyn std::any::Any + Send>>;

async fn run_exec(
    shared: &Arc<Shared>,
    user: &str,
    line: &[u8],
    git_protocol: &str,
    channel: Channel<Msg>,
    handle: &Handle,
    id: ChannelId,
) -> (u32, Keep) {
    let request = match parse_exec(line) {
        Ok(r) => r,
        Err(e) => {
            stderr(handle, id, &format!("byteport: {e}")).await;
            return (1, Some(Box::new(channel)));
        }
    };
    let (service, app) = match request {
        Request::Command(cmd) => {
            let mut channel = channel;
            let out = ChannelOutput::new(&channel);
            let code = tokio::select! {
                code = shared.commands.run(user, &cmd, &out) => code,
                () = client_gone(&mut channel) => {
                    tracing::debug!(%user, "gitd: client left during an admin command");
                    130
                }
            };
            out.flush().await;
            return (code, Some(Box::new((channel, out))));
        }
        Request::Git { service, app } => (service, app),
    };
    let access = match service {
        Service::ReceivePack => crate::Access::Write,
        Service::UploadPack => crate::Access::Read,
    };
    if let Err(e) = shared.authority.authorize(user, &app, access).await {
        stderr(handle, id, &format!("byteport: {e}")).await;
        return (1, Some(Box::new(channel)));
    }
    let repo = shared.config.repos_dir.join(format!("{app}.git"));
    match service {
        Service::ReceivePack => {
            if let Err(e) = crate::repo::ensure_bare(&repo) {
                let msg = format!("byteport: cannot create the repository for {app}: {e}");
                stderr(handle, id, &msg).await;
                return (1, Some(Box::new(channel)));
            }
        }
        Service::UploadPack => {
            if !repo.join("HEAD").exists() {
                let msg = format!("byteport: app `{app}` has no repository yet: push to it first");
                stderr(handle, id, &msg).await;
                return (1, Some(Box::new(channel)));
            }
        }
    }
    let job = Job {
        shared: shared.clone(),
        user: user.to_string(),
        app: app.clone(),
        repo,
        git_protocol: git_protocol.to_string(),
        service,
    };
    run_git(job, channel, handle, id).await
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
async fn run_git(job: Job, channel: Channel<Msg>, handle: &Handle, id: ChannelId) -> (u32, Keep) {
    let idle = job.shared.config.idle_timeout;
    let fired = Arc::new(AtomicBool::new(false));
    let stream = IdleIo::new(channel.into_stream(), idle, fired.clone());
    let (read, write) = tokio::io::split(stream);
    let runtime = tokio::runtime::Handle::current();
    let app = job.app.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut input = BufReader::with_capacity(STREAM_BUFFER, SyncIoBridge::new(read));
        let mut output = BufWriter::with_capacity(STREAM_BUFFER, SyncIoBridge::new(write));
        let r: Result<(), (String, bool)> = match job.service {
            Service::ReceivePack => {
                let lock = job.shared.app_lock(&job.app);
                let ctx = crate::receive::Receive {
                    repo: &job.repo,
                    app: &job.app,
                    user: &job.user,
                    deploy_branches: &job.shared.config.deploy_branches,
                    hook: job.shared.hook.as_ref(),
                    runtime,
                    max_pack_bytes: job.shared.config.max_pack_bytes,
                    app_lock: &lock,
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
                limits::idle_message(idle)
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
