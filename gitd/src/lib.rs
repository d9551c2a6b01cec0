//! `gitd`: BytePort's in-process SSH git server (russh + gix).
//!
//! Owns SSH authentication, the git smart protocol (receive-pack for
//! pushes; upload-pack for clone, fetch and ls-remote, protocol v0, v1 and
//! v2), the bare repository store, the connection limits and the push →
//! deploy hook call. It must not build or run apps itself: deploys go
//! through the [`DeployHook`] the `byteport` binary provides, keys and
//! access through [`Authority`]. No `git` binary runs on the server.
//!
//! Flow of data: [`ssh`] (russh session, auth, `GIT_PROTOCOL` env, exec;
//! [`limits`]: connection limit, idle timeout) → [`names`] (which service,
//! which app) → [`receive`] (commands → pack ingest → deploy hook → ref
//! transaction → report) or [`upload`] (refs → negotiation → shallow →
//! pack) → [`hook`] (deploy before the ref moves, progress as side-band
//! `remote:` lines).
//!
//! ## What gix provides and what is written here
//!
//! gitoxide implements the *client* side of the git protocols; it has no
//! server. So the server state machines are written in this crate on top
//! of gix's building blocks:
//!
//! | part | from gix | written here, and why |
//! | --- | --- | --- |
//! | pkt-line framing | `gix-packetline` length decoding and encoders | [`pktline::Reader`]: tells a clean hang-up from a truncated packet, v2 delim packets, `ERR` lines, side-band sizing |
//! | push: pack ingest | `gix-pack` `Bundle::write_to_directory` (index, verify, complete thin packs) | the size limit around it ([`receive::ingest`]) |
//! | push: refs | `gix-ref` transactions with old-value checks | command parsing, report-status, atomic, push options, hook ordering |
//! | fetch: negotiation | — | [`upload::negotiate`]: `have` handling, multi_ack / multi_ack_detailed / no-done, v2 acknowledgments and `ready` (git's "ok to give up" rule) |
//! | fetch: commit selection | commit decoding | [`upload::graph`]: the date-ordered "wants minus haves" walk, because gix's rev-walk cannot treat shallow boundaries as parentless |
//! | fetch: shallow | — | [`upload::shallow`]: deepen, deepen-relative, deepen-since, deepen-not, unshallow |
//! | fetch: pack | `gix-pack` object counting (tree additions or whole trees) and entry generation (copies existing deltas from packs) | [`upload::pack`]: which objects per commit, include-tag, side-band framing, progress |
//! | protocol v2 | — | [`upload::v2`]: capability advertisement, command loop, `ls-refs`, `fetch` sections |
//!
//! Not supported (refused with a clear message): partial clone
//! (`--filter`; git falls back to a full clone), `want-ref`, packfile URIs,
//! sideband-all, SHA-256 repositories. Packs sent are never thin (gix can
//! only make thin packs against objects it cannot prove the client has),
//! and new deltas are never computed: deltas come from the pushed packs.
#![deny(missing_docs)]

pub mod hook;
pub mod limits;
pub mod names;
pub mod pktline;
pub mod receive;
pub mod repo;
pub mod ssh;
pub mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use hook::{
    Access, Authority, BoxFuture, CommandOutput, Commands, DeployHook, DeployRequest, Stream,
};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum GitdError {
    /// The host key cannot be read or written.
    #[error("host key {path}: {message}")]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct GitdConfig {
    /// Where to listen (port 0 picks one; see [`Gitd::local_addr`]).
    pub listen: SocketAddr,
    /// The ed25519 host key (created on first start, mode 0600).
    pub host_key_path: PathBuf,
    /// Bare repositories live here as `<app>.git`.
    pub repos_dir: PathBuf,
    /// Branches whose pushes call the deploy hook.
    pub deploy_branches: Vec<String>,
    /// Connections beyond this are told the server is full (after
    /// authentication, on stderr, exit status 1).
    pub max_connections: usize,
    /// A git exchange with no data from the client for this long ends with
    /// a message; a connection that runs no command for this long is
    /// disconnected with a reason.
    pub idle_timeout: Duration,
    /// Authentication must complete within this.
    pub login_timeout: Duration,
    /// Largest pack a push may send.
    pub max_pack_bytes: u64,
}

impl GitdConfig {
    /// Defaults for a data directory: `home/ssh_host_ed25519_key`,
    /// `home/repos`, deploy branches main and master, 64 connections,
    /// 10 minutes idle, 1 minute to authenticate, 1 GiB packs.
    pub fn new(listen: SocketAddr, home: &Path) -> GitdConfig {
        GitdConfig {
            listen,
            host_key_path: home.join("ssh_host_ed25519_key"),
            repos_dir: home.join("repos"),
            deploy_branches: vec!["main".into(), "master".into()],
            max_connections: 64,
            idle_timeout: Duration::from_secs(600),
            login_timeout: Duration::from_secs(60),
            max_pack_bytes: 1 << 30,
        }
    }
}

/// State shared by all connections.
pub struct Shared {
    config: GitdConfig,
    authority: Arc<dyn Authority>,
    hook: Arc<dyn DeployHook>,
    commands: Arc<dyn Commands>,
    connections: AtomicUsize,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Shared {
    fn app_lock(&self, app: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .clone()
    }
}

/// A running server.
pub struct Gitd {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Gitd {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Gitd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn load_or_create_host_key(path: &Path) -> Result<russh::keys::PrivateKey, GitdError> {
    let err = |message: String| GitdError::HostKey {
        path: path.to_path_buf(),
        message,
    };
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| err(e.to_string()));
    }
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .map_err(|e| err(e.to_string()))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    Ok(key)
}

/// Binds and serves until the returned [`Gitd`] is dropped.
pub async fn serve(
    config: GitdConfig,
    authority: Arc<dyn Authority>,
    hook: Arc<dyn DeployHook>,
    commands: Arc<dyn Commands>,
) -> Result<Gitd, GitdError> {
    let key = load_or_create_host_key(&config.host_key_path)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| GitdError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| GitdError::Bind {
        addr: config.listen,
        source,
    })?;
    let ssh_config = Arc::new(russh::server::Config {
        keys: vec![key],
        // A backstop only: the watchdog and the idle streams (see
        // `limits`) close idle connections first, with a message. russh's
        // timer also restarts on server output, and a deploy sends
        // keepalives, so long deploys are not cut.
        inactivity_timeout: Some(config.idle_timeout.max(config.login_timeout) + BACKSTOP_GRACE),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        nodelay: true,
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        config,
        authority,
        hook,
        commands,
        connections: AtomicUsize::new(0),
        locks: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(accept_loop(listener, ssh_config, shared));
    Ok(Gitd { local_addr, task })
}

/// How long after the idle timeout russh's own timer drops a connection.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);

/// Counts a connection while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ssh_config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::error!(error = %e, "gitd: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let n = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let counted = Counted(shared.clone());
        let max = shared.config.max_connections;
        if n > max + limits::HARD_EXTRA {
            tracing::warn!(?peer, n, "gitd: connection dropped, far over the limit");
            continue;
        }
        if n > max {
            tracing::warn!(?peer, n, max, "gitd: over the connection limit");
        }
        let (ssh_config, shared) = (ssh_config.clone(), shared.clone());
        tokio::spawn(async move {
            let _counted = counted;
            let _ = socket.set_nodelay(true);
            let state = Arc::new(limits::ConnState::default());
            let handler = ssh::Connection::new(shared.clone(), Some(peer), n > max, state.clone());
            let login = shared.config.login_timeout;
            let session = match tokio::time::timeout(
                login,
                russh::server::run_stream(ssh_config, socket, handler),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(?peer, error = %e, "gitd: handshake failed");
                    return;
                }
                Err(_) => return, // never sent an SSH version line
            };
            let handle = session.handle();
            let mut session = std::pin::pin!(session);
            tokio::select! {
                r = &mut session => {
                    if let Err(e) = r {
                        tracing::debug!(?peer, error = %e, "gitd: session ended with an error");
                    }
                }
                reason = limits::watchdog(&state, shared.config.idle_timeout, login) => {
                    tracing::info!(?peer, %reason, "gitd: closing connection");
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, reason, String::new())
                        .await;
                    let _ = session.await;
                }
            }
        });
    }
}
