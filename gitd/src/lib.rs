//! `gitd`: BytePort's in-process SSH git server (russh + gix).
//!
//! Owns SSH authentication, the git smart protocol (receive-pack for
//! pushes; upload-pack for clone, fetch and ls-remote, protocol v0, v1 and
//! v2), the bare repository store, the connection limits and the push →
//! deploy hook call. It must not build or run apps itself: deploys go
//! through the [`DeployHook`] the `byteport` binary provides, keys and
//! access through [`Authority`]. No `git` binary runs on the server.
//!
//! Flow of data: [`admission`] (who gets a slot: handshakes capped per
//! address and globally, a separate budget for authenticated users) →
//! [`severable`] (a socket the server can cut before the key exchange) →
//! [`ssh`] (russh session, auth, `GIT_PROTOCOL` env, exec, every other
//! request refused at once; [`limits`]: handshake, login and idle
//! deadlines, rate-limited WARN lines) → [`names`] (which service,
//! which app) → [`receive`] (commands → pack ingest → deploy hook → ref
//! transaction → report) or [`upload`] (refs → negotiation → shallow →
//! pack) → [`hook`] (deploy before the ref moves, progress as side-band
//! `remote:` lines). Admin commands go to [`Commands`] with the client's
//! terminal request, stdin and window changes ([`terminal`], which also
//! says how a stdin flood is held back and where it is cut).
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

mod accept;
pub mod admission;
pub mod hook;
pub mod limits;
pub mod names;
pub mod pktline;
pub mod receive;
pub mod repo;
pub mod severable;
pub mod ssh;
pub mod terminal;
pub mod upload;
pub mod wording;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use admission::{ConnectionStats, Startups};
pub use hook::{
    Access, AuthError, Authority, BoxFuture, CommandOutput, Commands, DeployError, DeployHook,
    DeployRequest, Stream,
};
pub use terminal::{Interactive, Tty, WindowSize};

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
    /// A setting cannot work.
    #[error("setting {setting}: {message}")]
    Config {
        /// Which setting.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The repositories directory cannot be created or made private.
    #[error(transparent)]
    Repos(repo::RepoError),
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

/// Server settings. Every limit has a default that suits a small shared
/// host; the `byteport.toml` key of each is in the binary's docs.
#[derive(Debug, Clone)]
pub struct GitdConfig {
    /// Where to listen (port 0 picks one; see [`Gitd::local_addr`]).
    pub listen: SocketAddr,
    /// The ed25519 host key (created on first start, mode 0600).
    pub host_key_path: PathBuf,
    /// Bare repositories live here as `<app>.git` (created 0700, every
    /// repository in it 0700 with 0600 files, whatever the umask).
    pub repos_dir: PathBuf,
    /// Branches whose pushes call the deploy hook.
    pub deploy_branches: Vec<String>,
    /// Authenticated connections served at once (a budget of their own:
    /// unauthenticated connections never use it). Beyond it a client is
    /// told the server is full (on stderr, exit status 1). Default 64.
    pub max_connections: usize,
    /// Unauthenticated connections (handshakes) in progress at once, as
    /// OpenSSH's `MaxStartups` `start:rate:full`, with random early drop
    /// between `start` and `full` for addresses that already have one.
    /// An address with none in progress is never dropped at random and,
    /// when the pool is full, displaces the oldest handshake of the
    /// address holding the most (see [`admission`]). Default `10:30:100`.
    pub max_startups: Startups,
    /// Handshakes in progress from one address (IPv4, or IPv6 /64) at
    /// once; more are closed at accept. Default 10.
    pub max_startups_per_source: usize,
    /// From accept, the client must have sent its version line, finished
    /// the key exchange and begun to authenticate within this, or its
    /// socket is closed (no message can be sent before the key exchange).
    /// Default 10 s.
    pub handshake_timeout: Duration,
    /// From accept, authentication must succeed within this (OpenSSH's
    /// `LoginGraceTime`): the client is sent the reason, then the socket
    /// is closed. Default 30 s (time to type a key's passphrase).
    pub login_timeout: Duration,
    /// A git exchange with no data from the client for this long ends with
    /// a message; a connection that runs no command for this long is
    /// disconnected with a reason. Default 10 min.
    pub idle_timeout: Duration,
    /// Connections closed at accept or at a deadline write at most one
    /// WARN line per this interval (with a count of those left out).
    /// Default 10 s.
    pub refusal_log_interval: Duration,
    /// Largest pack a push may send. Default 1 GiB.
    pub max_pack_bytes: u64,
}

impl GitdConfig {
    /// Defaults for a data directory: `home/ssh_host_ed25519_key`,
    /// `home/repos`, deploy branches main and master, and the limits'
    /// defaults as documented on each field.
    pub fn new(listen: SocketAddr, home: &Path) -> GitdConfig {
        GitdConfig {
            listen,
            host_key_path: home.join("ssh_host_ed25519_key"),
            repos_dir: home.join("repos"),
            deploy_branches: vec!["main".into(), "master".into()],
            max_connections: 64,
            max_startups: Startups::default(),
            max_startups_per_source: 10,
            handshake_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            refusal_log_interval: Duration::from_secs(10),
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
    admission: Arc<admission::Admission>,
    warn: limits::WarnLimiter,
    claims: receive::claims::Claims,
}

impl Shared {
    fn stats(&self) -> ConnectionStats {
        let mut s = self.admission.stats();
        (s.warn_lines, s.warn_suppressed) = self.warn.counts();
        s
    }
}

/// A running server.
pub struct Gitd {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Gitd {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connection pools now and what the limits refused or closed so far
    /// (for `/metrics` and tests).
    pub fn stats(&self) -> ConnectionStats {
        self.shared.stats()
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
    config
        .max_startups
        .check()
        .map_err(|why| GitdError::Config {
            setting: "max_startups",
            message: format!("{}: {why}", config.max_startups),
        })?;
    let key = load_or_create_host_key(&config.host_key_path)?;
    repo::ensure_private_dir(&config.repos_dir).map_err(GitdError::Repos)?;
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
        // A backstop only: the watchdog, the severable socket and the idle
        // streams (see `limits`) close connections first. russh's timer
        // also restarts on server output, and a deploy sends keepalives,
        // so long deploys are not cut.
        inactivity_timeout: Some(config.idle_timeout.max(config.login_timeout) + BACKSTOP_GRACE),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        nodelay: true,
        window_size: ssh::NORMAL_WINDOW,
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        admission: Arc::new(admission::Admission::new(
            config.max_startups,
            config.max_startups_per_source,
            config.max_connections,
        )),
        warn: limits::WarnLimiter::new(config.refusal_log_interval),
        claims: receive::claims::Claims::default(),
        config,
        authority,
        hook,
        commands,
    });
    let task = tokio::spawn(accept::accept_loop(listener, ssh_config, shared.clone()));
    Ok(Gitd {
        local_addr,
        task,
        shared,
    })
}

/// How long after the idle timeout russh's own timer drops a connection.
const BACKSTOP_GRACE: Duration = Duration::from_secs(5);
