//! `gitd`: BytePort's in-process SSH git server (russh + gix).
//!
//! Owns SSH authentication, the git smart protocol (receive-pack; upload-pack
//! next), the bare repository store and the push → deploy hook call. It must
//! not build or run apps itself: deploys go through the [`DeployHook`] the
//! `byteport` binary provides, keys and access through [`Authority`].
//!
//! Flow of data: [`ssh`] (russh session, auth, exec) → [`names`] (which
//! service, which app) → [`receive`] (pkt-lines via gix-packetline, pack via
//! gix-pack, refs via a gix transaction) → [`hook`] (deploy before the ref
//! moves, progress as side-band `remote:` lines).
//!
//! gitoxide has no server side of the protocol, so the receive-pack state
//! machine (ref advertisement, command parsing, report-status, side-band
//! multiplexing) is written here on top of gix's pkt-line codec, pack
//! indexer and ref transactions. No `git` binary runs on the server.
#![deny(missing_docs)]

pub mod hook;
pub mod names;
pub mod pktline;
pub mod receive;
pub mod repo;
pub mod ssh;
pub mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
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
    /// Connections beyond this are refused at authentication.
    pub max_connections: usize,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Largest pack a push may send.
    pub max_pack_bytes: u64,
}

impl GitdConfig {
    /// Defaults for a data directory: `home/ssh_host_ed25519_key`,
    /// `home/repos`, deploy branches main and master, 64 connections,
    /// 10 minutes idle, 1 GiB packs.
    pub fn new(listen: SocketAddr, home: &Path) -> GitdConfig {
        GitdConfig {
            listen,
            host_key_path: home.join("ssh_host_ed25519_key"),
            repos_dir: home.join("repos"),
            deploy_branches: vec!["main".into(), "master".into()],
            max_connections: 64,
            idle_timeout: Duration::from_secs(600),
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
        inactivity_timeout: Some(config.idle_timeout),
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
    let task = tokio::spawn(async move {
        let mut server = Server { shared };
        use russh::server::Server as _;
        if let Err(e) = server.run_on_socket(ssh_config, &listener).await {
            tracing::error!(error = %e, "gitd: server stopped");
        }
    });
    Ok(Gitd { local_addr, task })
}

struct Server {
    shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = ssh::Connection;
    fn new_client(&mut self, peer: Option<SocketAddr>) -> ssh::Connection {
        ssh::Connection::new(self.shared.clone(), peer)
    }
}
