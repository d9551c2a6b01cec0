//! The SSH side: russh server, public-key authentication against the
//! [`Authority`](crate::Authority), exec requests dispatched to the git
//! services or the admin [`Commands`](crate::Commands), exit statuses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::names::{parse_exec, Request, Service};
use crate::Shared;

/// One client connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    git_protocol: HashMap<ChannelId, String>,
    counted: bool,
}

impl Connection {
    /// A handler for a new client.
    pub fn new(shared: Arc<Shared>, peer: Option<SocketAddr>) -> Connection {
        let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let counted = true;
        if n > shared.config.max_connections {
            tracing::warn!(?peer, n, "gitd: too many connections");
        }
        Connection {
            shared,
            peer,
            user: None,
            channels: HashMap::new(),
            git_protocol: HashMap::new(),
            counted,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.counted {
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
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
        if self.shared.connections.load(Ordering::SeqCst) > self.shared.config.max_connections {
            return Ok(Auth::reject());
        }
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.shared.authority.user_for_key(&fingerprint).await {
            Ok(Some(user)) => {
                tracing::info!(peer = ?self.peer, %user, "gitd: authenticated");
                self.user = Some(user);
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
        if self.channels.len() >= 8 {
            drop(reply);
            return Ok(());
        }
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

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let handle = session.handle();
        let shared = self.shared.clone();
        let line = data.to_vec();
        let protocol = self.git_protocol.remove(&id).unwrap_or_default();
        tokio::spawn(async move {
            // The channel's streams live until the exit status is sent: an
            // EOF before exit-status makes OpenSSH report status -1.
            let (code, keep) =
                run_exec(&shared, &user, &line, &protocol, channel, &handle, id).await;
            let _ = handle.exit_status_request(id, code).await;
            let _ = handle.eof(id).await;
            let _ = handle.close(id).await;
            drop(keep);
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
    _git_protocol: &str,
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
    match request {
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
            (code, Some(Box::new((channel, out))))
        }
        Request::Git { service, app } => {
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
                        stderr(
                            handle,
                            id,
                            &format!("byteport: cannot create the repository for {app}: {e}"),
                        )
                        .await;
                        return (1, Some(Box::new(channel)));
                    }
                    receive(shared, user, &app, repo, channel, handle, id).await
                }
                Service::UploadPack => {
                    if !repo.join("HEAD").exists() {
                        stderr(
                            handle,
                            id,
                            &format!(
                                "byteport: app `{app}` has no repository yet: push to it first"
                            ),
                        )
                        .await;
                        return (1, Some(Box::new(channel)));
                    }
                    upload(repo, channel, handle, id).await
                }
            }
        }
    }
}

async fn receive(
    shared: &Arc<Shared>,
    user: &str,
    app: &str,
    repo: std::path::PathBuf,
    channel: Channel<Msg>,
    handle: &Handle,
    id: ChannelId,
) -> (u32, Keep) {
    let stream = channel.into_stream();
    let (read, write) = tokio::io::split(stream);
    let shared2 = shared.clone();
    let (user, app_s) = (user.to_string(), app.to_string());
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let lock = shared2.app_lock(&app_s);
        let mut input = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(read));
        let mut output = tokio_util::io::SyncIoBridge::new(write);
        let ctx = crate::receive::Receive {
            repo: &repo,
            app: &app_s,
            user: &user,
            deploy_branches: &shared2.config.deploy_branches,
            hook: shared2.hook.as_ref(),
            runtime,
            max_pack_bytes: shared2.config.max_pack_bytes,
            app_lock: &lock,
        };
        let r = crate::receive::run(&ctx, &mut input, &mut output);
        let _ = std::io::Write::flush(&mut output);
        (r, input, output)
    })
    .await;
    match result {
        Ok((Ok(()), input, output)) => (0, Some(Box::new((input, output)))),
        Ok((Err(e), input, output)) => {
            tracing::warn!(%app, error = %e, "gitd: receive-pack failed");
            stderr(handle, id, &format!("byteport: {e}")).await;
            (1, Some(Box::new((input, output))))
        }
        Err(e) => {
            tracing::error!(%app, error = %e, "gitd: receive-pack task failed");
            (1, None)
        }
    }
}

async fn upload(
    repo: std::path::PathBuf,
    channel: Channel<Msg>,
    handle: &Handle,
    id: ChannelId,
) -> (u32, Keep) {
    let (read, write) = tokio::io::split(channel.into_stream());
    let result = tokio::task::spawn_blocking(move || {
        let mut input = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(read));
        let mut output = tokio_util::io::SyncIoBridge::new(write);
        let r = crate::upload::run(&repo, &mut input, &mut output);
        let _ = std::io::Write::flush(&mut output);
        (r, input, output)
    })
    .await;
    match result {
        Ok((Ok(()), i, o)) => (0, Some(Box::new((i, o)))),
        Ok((Err(e), i, o)) => {
            tracing::warn!(error = %e, "gitd: upload-pack failed");
            stderr(handle, id, &format!("byteport: {e}")).await;
            (1, Some(Box::new((i, o))))
        }
        Err(e) => {
            tracing::error!(error = %e, "gitd: upload-pack task failed");
            (1, None)
        }
    }
}

/// Connections currently open (for limits and tests).
pub fn open_connections(shared: &Shared) -> usize {
    shared.connections.load(Ordering::SeqCst)
}

#[allow(dead_code)]
fn _assert_send(c: Connection) -> impl Send {
    let _: &AtomicUsize = &c.shared.connections;
    c
}
