//! BytePort's own configuration: defaults, an optional `byteport.toml`, and
//! environment overrides — each effective value remembers where it came from
//! so `byteport config show` can explain it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file exists but cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, including line and column.
        message: String,
    },
    /// A value (from the file or the environment) does not parse.
    #[error("invalid value for `{key}` from {source_name}: {message}")]
    Value {
        /// Which setting.
        key: &'static str,
        /// Where the bad value came from.
        source_name: String,
        /// Why it is invalid.
        message: String,
    },
    /// No home directory could be determined.
    #[error("cannot determine a data directory: set BYTEPORT_HOME")]
    NoHome,
}

/// Which VM engine runs apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// `kvm` where hardware virtualization is usable, else `qemu`.
    Auto,
    /// BytePort's own VMM.
    Kvm,
    /// QEMU's microvm machine.
    Qemu,
}

impl std::str::FromStr for Driver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Driver::Auto),
            "kvm" => Ok(Driver::Kvm),
            "qemu" => Ok(Driver::Qemu),
            other => Err(format!(
                "unknown driver `{other}` (expected auto, kvm or qemu)"
            )),
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Auto => "auto",
            Driver::Kvm => "kvm",
            Driver::Qemu => "qemu",
        })
    }
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "from", rename_all = "lowercase")]
pub enum Source {
    /// Built-in default.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
        }
    }
}

/// The file format of `byteport.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    ssh_addr: Option<String>,
    http_addr: Option<String>,
    http_trusted_proxy: Option<String>,
    router_addr: Option<String>,
    driver: Option<String>,
    database_url: Option<String>,
    deploy_branches: Option<Vec<String>>,
    ssh_max_connections: Option<u64>,
    ssh_idle_timeout_secs: Option<u64>,
    max_pack_size: Option<String>,
    build_ca: Option<String>,
    ssh_max_startups: Option<String>,
    ssh_max_startups_per_source: Option<u64>,
    ssh_handshake_timeout_secs: Option<u64>,
    ssh_login_timeout_secs: Option<u64>,
    max_parallel_jobs: Option<u64>,
    build_deadline_secs: Option<u64>,
    job_deadline_secs: Option<u64>,
    log_segment_size: Option<String>,
    log_retention: Option<String>,
    egress_allow: Option<String>,
    router_header_timeout_secs: Option<u64>,
    router_idle_timeout_secs: Option<u64>,
    router_upstream_timeout_secs: Option<u64>,
    router_max_connections: Option<u64>,
    router_max_connections_per_client: Option<u64>,
    router_max_header_size: Option<String>,
    router_max_body_size: Option<String>,
    router_trusted_proxies: Option<String>,
    chromium_path: Option<String>,
    portfolio_load_timeout_secs: Option<u64>,
    llm_base_url: Option<String>,
    llm_model: Option<String>,
    llm_timeout_secs: Option<u64>,
    llm_max_concurrent: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Data directory (`$BYTEPORT_HOME`).
    pub home: PathBuf,
    /// Git over SSH listens here.
    pub ssh_addr: SocketAddr,
    /// Dashboard + API listen here.
    pub http_addr: SocketAddr,
    /// The app router listens here.
    pub router_addr: SocketAddr,
    /// A reverse proxy in front of the dashboard whose `X-Forwarded-For`
    /// and `X-Forwarded-Proto` are believed (none by default).
    pub http_trusted_proxy: Option<std::net::IpAddr>,
    /// The runtime driver.
    pub driver: Driver,
    /// State store URL: `sqlite://…` (default, under home) or `postgres://…`.
    pub database_url: String,
    /// Branches whose push deploys.
    pub deploy_branches: Vec<String>,
    /// SSH connections beyond this are told the server is full.
    pub ssh_max_connections: usize,
    /// An SSH connection idle this long is closed, with a message.
    pub ssh_idle_timeout_secs: u64,
    /// Largest pack a push may send, in bytes.
    pub max_pack_size: u64,
    /// Which CA certificates build steps trust: `host` (default), `none`,
    /// or a PEM bundle path (see builder/README.md).
    #[serde(serialize_with = "serialize_ca")]
    pub build_ca: builder::CaTrust,
    /// Unauthenticated SSH connections at once, as OpenSSH's MaxStartups
    /// `start:rate:full`.
    #[serde(serialize_with = "serialize_display")]
    pub ssh_max_startups: gitd::admission::Startups,
    /// Unauthenticated SSH connections at once from one address.
    pub ssh_max_startups_per_source: usize,
    /// Seconds from accept to a finished key exchange before the socket is cut.
    pub ssh_handshake_timeout_secs: u64,
    /// Seconds from accept to a successful login before the socket is cut.
    pub ssh_login_timeout_secs: u64,
    /// Jobs of different apps run at once (one app runs one job at a time).
    pub max_parallel_jobs: usize,
    /// Overall deadline of a deploy (build, boot, health, switch), seconds.
    pub build_deadline_secs: u64,
    /// Overall deadline of every other job (restart, rollback, ...), seconds.
    pub job_deadline_secs: u64,
    /// An app's event journal starts a new file past this size, in bytes.
    pub log_segment_size: u64,
    /// An app's event journal keeps at most this much, in bytes (oldest
    /// files go first).
    pub log_retention: u64,
    /// What app VMs and build steps may reach besides the internet (and
    /// VMs the router): `ADDR:PORT` or `CIDR`, comma-separated — an
    /// internal package mirror or database on a private address.
    pub egress_allow: Vec<String>,
    /// The router's deadlines, caps, limits and trusted proxies
    /// (`router_*` keys).
    #[serde(skip)]
    pub router: ::router::RouterConfig,
    /// Chromium for portfolio screenshots (empty: `$CHROME`, else PATH).
    pub chromium_path: Option<PathBuf>,
    /// Longest page load of a portfolio screenshot, seconds.
    pub portfolio_load_timeout_secs: u64,
    /// An OpenAI-compatible endpoint for portfolio drafts (with `/v1`);
    /// none: offline drafts. The key comes from `BYTEPORT_LLM_API_KEY`.
    pub llm_base_url: Option<String>,
    /// The model asked for drafts.
    pub llm_model: String,
    /// Longest wait for one draft (all retries), seconds.
    pub llm_timeout_secs: u64,
    /// Drafts asked of the model at once.
    pub llm_max_concurrent: usize,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where each setting came from, by key.
    pub sources: BTreeMap<&'static str, Source>,
}

impl Config {
    /// Loads the configuration: defaults, then `byteport.toml` (from
    /// `explicit_file`, `$BYTEPORT_CONFIG`, or `$BYTEPORT_HOME/byteport.toml`),
    /// then environment overrides. `env` is injected so tests need not touch
    /// the process environment.
    pub fn load(
        explicit_file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut sources = BTreeMap::new();
        let home = match env("BYTEPORT_HOME").filter(|h| !h.is_empty()) {
            Some(h) => {
                sources.insert("home", Source::Env("BYTEPORT_HOME".into()));
                PathBuf::from(h)
            }
            None => {
                sources.insert("home", Source::Default);
                default_home().ok_or(ConfigError::NoHome)?
            }
        };

        let (file, file_path) = read_file(explicit_file, env, &home)?;
        let file_source = |p: &Option<PathBuf>| Source::File(p.clone().unwrap_or_default());

        let mut pick = |key: &'static str,
                        env_var: Option<&'static str>,
                        from_file: Option<String>,
                        default: &str|
         -> (String, Source) {
            if let Some(var) = env_var {
                if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                    sources.insert(key, Source::Env(var.into()));
                    return (v, Source::Env(var.into()));
                }
            }
            if let Some(v) = from_file {
                let s = file_source(&file_path);
                sources.insert(key, s.clone());
                return (v, s);
            }
            sources.insert(key, Source::Default);
            (default.to_string(), Source::Default)
        };

        let ssh = pick(
            "ssh_addr",
            Some("BYTEPORT_SSH_ADDR"),
            file.ssh_addr,
            "127.0.0.1:2222",
        );
        let http = pick(
            "http_addr",
            Some("BYTEPORT_HTTP_ADDR"),
            file.http_addr,
            "127.0.0.1:8080",
        );
        let trusted_proxy = pick(
            "http_trusted_proxy",
            Some("BYTEPORT_HTTP_TRUSTED_PROXY"),
            file.http_trusted_proxy,
            "",
        );
        let router = pick(
            "router_addr",
            Some("BYTEPORT_ROUTER_ADDR"),
            file.router_addr,
            "127.0.0.1:8000",
        );
        let driver = pick("driver", Some("BYTEPORT_DRIVER"), file.driver, "auto");
        let default_db = format!("sqlite://{}?mode=rwc", home.join("state.db").display());
        let db = pick(
            "database_url",
            Some("BYTEPORT_DATABASE_URL"),
            file.database_url,
            &default_db,
        );
        let branches = pick(
            "deploy_branches",
            Some("BYTEPORT_DEPLOY_BRANCHES"),
            file.deploy_branches.map(|b| b.join(",")),
            "main,master",
        );
        let build_ca = pick(
            "build_ca",
            Some(builder::trust::CA_TRUST_ENV),
            file.build_ca,
            "host",
        );

        let max_conns = pick(
            "ssh_max_connections",
            Some("BYTEPORT_SSH_MAX_CONNECTIONS"),
            file.ssh_max_connections.map(|v| v.to_string()),
            "64",
        );
        let idle = pick(
            "ssh_idle_timeout_secs",
            Some("BYTEPORT_SSH_IDLE_TIMEOUT_SECS"),
            file.ssh_idle_timeout_secs.map(|v| v.to_string()),
            "600",
        );
        let max_pack = pick(
            "max_pack_size",
            Some("BYTEPORT_MAX_PACK_SIZE"),
            file.max_pack_size,
            "1G",
        );

        let startups = pick(
            "ssh_max_startups",
            Some("BYTEPORT_SSH_MAX_STARTUPS"),
            file.ssh_max_startups,
            "10:30:100",
        );
        let per_source = pick(
            "ssh_max_startups_per_source",
            Some("BYTEPORT_SSH_MAX_STARTUPS_PER_SOURCE"),
            file.ssh_max_startups_per_source.map(|v| v.to_string()),
            "10",
        );
        let handshake = pick(
            "ssh_handshake_timeout_secs",
            Some("BYTEPORT_SSH_HANDSHAKE_TIMEOUT_SECS"),
            file.ssh_handshake_timeout_secs.map(|v| v.to_string()),
            "10",
        );
        let login = pick(
            "ssh_login_timeout_secs",
            Some("BYTEPORT_SSH_LOGIN_TIMEOUT_SECS"),
            file.ssh_login_timeout_secs.map(|v| v.to_string()),
            "30",
        );
        let chromium = pick(
            "chromium_path",
            Some("BYTEPORT_CHROMIUM_PATH"),
            file.chromium_path,
            "",
        );
        let load_timeout = pick(
            "portfolio_load_timeout_secs",
            Some("BYTEPORT_PORTFOLIO_LOAD_TIMEOUT_SECS"),
            file.portfolio_load_timeout_secs.map(|v| v.to_string()),
            "30",
        );
        let llm_url = pick(
            "llm_base_url",
            Some("BYTEPORT_LLM_BASE_URL"),
            file.llm_base_url,
            "",
        );
        let llm_model = pick(
            "llm_model",
            Some("BYTEPORT_LLM_MODEL"),
            file.llm_model,
            "gpt-4o-mini",
        );
        let llm_timeout = pick(
            "llm_timeout_secs",
            Some("BYTEPORT_LLM_TIMEOUT_SECS"),
            file.llm_timeout_secs.map(|v| v.to_string()),
            "60",
        );
        let llm_parallel = pick(
            "llm_max_concurrent",
            Some("BYTEPORT_LLM_MAX_CONCURRENT"),
            file.llm_max_concurrent.map(|v| v.to_string()),
            "2",
        );
        let cpus = std::thread::available_parallelism()
            .map_or(2, |n| n.get().max(2))
            .to_string();
        let parallel = pick(
            "max_parallel_jobs",
            Some("BYTEPORT_MAX_PARALLEL_JOBS"),
            file.max_parallel_jobs.map(|v| v.to_string()),
            &cpus,
        );
        let build_deadline = pick(
            "build_deadline_secs",
            Some("BYTEPORT_BUILD_DEADLINE_SECS"),
            file.build_deadline_secs.map(|v| v.to_string()),
            "900",
        );
        let job_deadline = pick(
            "job_deadline_secs",
            Some("BYTEPORT_JOB_DEADLINE_SECS"),
            file.job_deadline_secs.map(|v| v.to_string()),
            "600",
        );
        let segment = pick(
            "log_segment_size",
            Some("BYTEPORT_LOG_SEGMENT_SIZE"),
            file.log_segment_size,
            "8M",
        );
        let retention = pick(
            "log_retention",
            Some("BYTEPORT_LOG_RETENTION"),
            file.log_retention,
            "64M",
        );
        let egress_allow = pick(
            "egress_allow",
            Some("BYTEPORT_EGRESS_ALLOW"),
            file.egress_allow,
            "",
        );

        let router_addr = parse_addr("router_addr", router.clone())?;
        let router_file = router::RouterFile {
            header_timeout_secs: file.router_header_timeout_secs,
            idle_timeout_secs: file.router_idle_timeout_secs,
            upstream_timeout_secs: file.router_upstream_timeout_secs,
            max_connections: file.router_max_connections,
            max_connections_per_client: file.router_max_connections_per_client,
            max_header_size: file.router_max_header_size.clone(),
            max_body_size: file.router_max_body_size.clone(),
            trusted_proxies: file.router_trusted_proxies.clone(),
        };
        let router_config = router::load(&mut pick, router_file, router_addr)?;
        let config = Config {
            router: router_config,
            chromium_path: (!chromium.0.is_empty()).then(|| PathBuf::from(&chromium.0)),
            portfolio_load_timeout_secs: parse_count("portfolio_load_timeout_secs", load_timeout)?
                .max(1),
            llm_base_url: (!llm_url.0.is_empty()).then(|| llm_url.0.clone()),
            llm_model: llm_model.0,
            llm_timeout_secs: parse_count("llm_timeout_secs", llm_timeout)?.max(1),
            llm_max_concurrent: parse_count("llm_max_concurrent", llm_parallel)?.max(1) as usize,
            ssh_max_startups: startups.0.parse().map_err(|e| ConfigError::Value {
                key: "ssh_max_startups",
                source_name: startups.1.to_string(),
                message: format!("{e} (expected start:rate:full, e.g. 10:30:100, or one number)"),
            })?,
            ssh_max_startups_per_source: parse_count("ssh_max_startups_per_source", per_source)?
                .max(1) as usize,
            ssh_handshake_timeout_secs: parse_count("ssh_handshake_timeout_secs", handshake)?
                .max(1),
            ssh_login_timeout_secs: parse_count("ssh_login_timeout_secs", login)?.max(1),
            max_parallel_jobs: parse_count("max_parallel_jobs", parallel)?.max(1) as usize,
            build_deadline_secs: parse_count("build_deadline_secs", build_deadline)?.max(1),
            job_deadline_secs: parse_count("job_deadline_secs", job_deadline)?.max(1),
            log_segment_size: parse_size("log_segment_size", segment)?.max(4096),
            log_retention: parse_size("log_retention", retention)?,
            egress_allow: parse_allow_list(&egress_allow.0).map_err(|message| {
                ConfigError::Value {
                    key: "egress_allow",
                    source_name: egress_allow.1.to_string(),
                    message,
                }
            })?,
            ssh_max_connections: parse_count("ssh_max_connections", max_conns)? as usize,
            ssh_idle_timeout_secs: parse_count("ssh_idle_timeout_secs", idle)?,
            max_pack_size: parse_size("max_pack_size", max_pack)?,
            ssh_addr: parse_addr("ssh_addr", ssh)?,
            http_addr: parse_addr("http_addr", http)?,
            router_addr: parse_addr("router_addr", router)?,
            http_trusted_proxy: match trusted_proxy.0.trim() {
                "" | "none" => None,
                ip => Some(ip.parse().map_err(|e| ConfigError::Value {
                    key: "http_trusted_proxy",
                    source_name: trusted_proxy.1.to_string(),
                    message: format!("{e} (expected the proxy's IP address, e.g. 127.0.0.1)"),
                })?),
            },
            driver: driver.0.parse().map_err(|message| ConfigError::Value {
                key: "driver",
                source_name: driver.1.to_string(),
                message,
            })?,
            database_url: db.0,
            deploy_branches: branches
                .0
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(String::from)
                .collect(),
            build_ca: builder::CaTrust::parse(&build_ca.0),
            home,
            file: file_path,
            sources,
        };
        if let builder::CaTrust::File(bundle) = &config.build_ca {
            if let Err(e) = config.build_ca.bundle() {
                return Err(ConfigError::Value {
                    key: "build_ca",
                    source_name: config.sources["build_ca"].to_string(),
                    message: format!("{}: {e} (use host, none, or a PEM file)", bundle.display()),
                });
            }
        }
        if !(config.database_url.starts_with("sqlite:")
            || config.database_url.starts_with("postgres://")
            || config.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Value {
                key: "database_url",
                source_name: config.sources["database_url"].to_string(),
                message: "expected a sqlite:// or postgres:// URL".into(),
            });
        }
        Ok(config)
    }

    /// Creates the data directory, private to its owner (0700, tightened
    /// if it exists wider): it holds the secrets key, the store,
    /// repositories and logs.
    pub fn ensure_home(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.home)?;
        let mode = std::fs::metadata(&self.home)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// Loads from the real process environment.
    pub fn from_env(explicit_file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load(explicit_file, &|k| std::env::var(k).ok())
    }

    /// Where bare git repositories live.
    pub fn repos_dir(&self) -> PathBuf {
        self.home.join("repos")
    }
}

/// `host`, `none` or the bundle's path, as written in `byteport.toml`.
fn ca_text(trust: &builder::CaTrust) -> String {
    match trust {
        builder::CaTrust::Host => "host".into(),
        builder::CaTrust::None => "none".into(),
        builder::CaTrust::File(p) => p.display().to_string(),
    }
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn serialize_ca<S: serde::Serializer>(trust: &builder::CaTrust, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ca_text(trust))
}

pub use platform::store::redact_url;

fn default_home() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "byteport").map(|d| d.data_dir().to_path_buf())
}

fn read_file(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    home: &Path,
) -> Result<(FileConfig, Option<PathBuf>), ConfigError> {
    let (path, must_exist) = match (explicit, env("BYTEPORT_CONFIG")) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (home.join("byteport.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok((FileConfig::default(), None))
        }
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let parsed: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((parsed, Some(path)))
}

mod router;
mod show;
mod values;

use values::{parse_addr, parse_allow_list, parse_count, parse_size};
#[cfg(test)]
mod tests;
