//! The command line: clap definitions and dispatch to [`crate::commands`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

/// BytePort: `git push` to a live URL, every app in its own microVM.
#[derive(Debug, Parser)]
#[command(name = "byteport", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: $BYTEPORT_CONFIG, else $BYTEPORT_HOME/byteport.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run BytePort: git over SSH, the app router (and the dashboard as it lands).
    Up,
    /// Fetch and cache the guest kernel and busybox (idempotent, with progress).
    Setup(builder::cli::SetupArgs),
    /// Build an app directory (or one of its commits) into an artifact locally.
    Build(builder::cli::BuildArgs),
    /// Run and control microVMs with BytePort's own VMM (needs usable KVM).
    #[command(disable_help_flag = true)]
    Vm {
        /// Arguments for `byteport-vmm` (`run`, `list`, `pause`, `resume`,
        /// `stop`; `byteport vm --help` shows them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Show BytePort's effective configuration, or set app config vars.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// What this host can do: KVM, QEMU, Chromium, filesystem tools, disk.
    Doctor(JsonFlag),
    /// Check or create a `Byteport` manifest.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// SSH keys allowed to push.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Users (dashboard logins, key owners).
    #[command(subcommand)]
    Users(UsersCommand),
    /// API tokens for scripts and Prometheus (shown once, stored hashed).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// List apps, or manage one.
    Apps(AppsArgs),
    /// Secrets of an app (sealed at rest, values never printed).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Running VMs: deploy, uptime, crashes (asks `byteport up`).
    Ps {
        /// Only this app.
        app: Option<String>,
    },
    /// An app's logs: its processes, the router, BytePort's events (asks `byteport up`).
    Logs {
        /// The app.
        app: String,
        /// How many past lines.
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
    },
    /// Boot a fresh VM of the live deploy (new config vars and secrets), no downtime.
    Restart {
        /// The app.
        app: String,
    },
    /// Run an earlier deploy's artifact again, as a new deploy (no rebuild).
    Rollback {
        /// The app.
        app: String,
        /// The deploy to go back to (3, #3 or v3; default: the previous live one).
        deploy: Option<String>,
    },
    /// Run a command in a one-off VM of an app's live deploy (its config,
    /// secrets and egress), e.g. `byteport run blog -- ls -l`; exits with
    /// the command's status. `--stop-app` stops the app for the command
    /// (needed when it has a volume) and boots it again after.
    Run {
        /// The app.
        app: String,
        /// Stop the app for the command (its volumes are then attached).
        #[arg(long)]
        stop_app: bool,
        /// Do not use this terminal even if stdin is one: output is
        /// streamed line by line and nothing is read from stdin.
        #[arg(long)]
        no_tty: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run N web VMs of the live deploy, balanced by the router (`scale APP web=2`);
    /// kept across deploys and restarts.
    Scale {
        /// The app.
        app: String,
        /// PROCESS=N pairs (only `web` scales).
        #[arg(required = true, value_name = "web=N")]
        formation: Vec<String>,
    },
    /// Stop serving an app; it stays stopped across restarts until `start`.
    Stop {
        /// The app.
        app: String,
    },
    /// Start a stopped app on its live deploy.
    Start {
        /// The app.
        app: String,
    },
    /// Deploy history of an app, or cancel its running job.
    Deploys(DeploysArgs),
    /// An app's managed PostgreSQL database: `db APP`, `db backup APP [FILE]`
    /// (pg_dump custom format), `db restore APP BACKUP|FILE`, `db psql APP`
    /// (interactive, on this host).
    #[command(disable_help_flag = true)]
    Db {
        /// The subcommand (or the app) and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// An app's persistent volumes (asks `byteport up`): `volumes APP`,
    /// `volumes backup APP NAME [FILE]`, `volumes restore APP NAME BACKUP|FILE`,
    /// `volumes destroy APP NAME --confirm NAME`. Backup and restore stop the
    /// app's VM for the copy and boot it again.
    #[command(disable_help_flag = true)]
    Volumes {
        /// The subcommand (or the app) and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Review drafted portfolio pages and manage the site (asks `byteport up`):
    /// list, show APP [N], diff APP [N], edit APP --title/--summary/--body/--tags,
    /// approve APP [N], reject APP, regenerate APP, profile --name/--bio/--site-url/--link,
    /// export DIR, publish [--remote R --branch B].
    #[command(disable_help_flag = true)]
    Portfolio {
        /// The subcommand and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

/// `byteport deploys APP` or `byteport deploys cancel APP [JOB]`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeploysArgs {
    /// What to do (default: list an app's deploys).
    #[command(subcommand)]
    pub command: Option<DeploysCommand>,
    /// The app.
    pub app: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `byteport deploys …`
#[derive(Debug, Subcommand)]
pub enum DeploysCommand {
    /// Cancel the app's running job (else its oldest queued one), or JOB:
    /// its build processes are killed, a half-booted VM is stopped, the
    /// previous version keeps serving. A job past its switch finishes.
    Cancel {
        /// The app.
        app: String,
        /// The job's number (see `byteport deploys APP`).
        job: Option<String>,
    },
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `byteport config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show(JsonFlag),
    /// Print an app's config vars.
    Get {
        /// The app.
        app: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Set app config vars: `byteport config set APP KEY=VALUE...`; a
    /// running app restarts to apply them.
    Set {
        /// The app.
        app: String,
        /// KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Do not restart; the vars apply on the next deploy or restart.
        #[arg(long)]
        no_restart: bool,
    },
    /// Remove app config vars (a running app restarts, as with set).
    Unset {
        /// The app.
        app: String,
        /// Do not restart.
        #[arg(long)]
        no_restart: bool,
        /// Keys to remove.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// `byteport manifest …`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Check a manifest (default: ./Byteport); exit 1 with diagnostics if invalid.
    Check {
        /// The manifest file, or a directory holding `Byteport`.
        path: Option<PathBuf>,
        /// Print the normalized model as JSON (or the diagnostics as JSON).
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter manifest guessed from the repository.
    Init {
        /// The repository directory (default: current directory).
        dir: Option<PathBuf>,
        /// App name (default: the directory's name, made DNS-safe).
        #[arg(long)]
        name: Option<String>,
        /// Overwrite an existing `Byteport`.
        #[arg(long)]
        force: bool,
    },
}

/// `byteport keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Allow a public key to push; NAME is the key's owner (created if new).
    Add {
        /// Owner name (a user).
        name: String,
        /// The `.pub` file (`-` for stdin).
        pubkey_file: PathBuf,
    },
    /// List keys.
    List(JsonFlag),
    /// Remove a user's keys (by name) or one key (by SHA256 fingerprint).
    Remove {
        /// User name or fingerprint.
        name: String,
    },
}

/// `byteport users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the dashboard password is read from stdin.
    Add {
        /// User name.
        name: String,
        /// An operator sees every app and the dashboard's Host page.
        #[arg(long)]
        operator: bool,
    },
}

/// `byteport tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token carrying USER's rights; it is printed once.
    Create {
        /// The user whose rights the token carries.
        name: String,
        /// What it is for (shown by `tokens list`).
        #[arg(long, default_value = "")]
        label: String,
        /// Only for reading /metrics (Prometheus), nothing else.
        #[arg(long)]
        metrics: bool,
    },
    /// List tokens (never their secrets).
    List(JsonFlag),
    /// Revoke a token by its id (`bpt_<id>_…`).
    Revoke {
        /// The token's id, or the whole token.
        id: String,
    },
}

/// `byteport apps [SUBCOMMAND]`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AppsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<AppsCommand>,
    /// Machine-readable output (for the list).
    #[arg(long)]
    pub json: bool,
}

/// `byteport apps …`
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an app without pushing (normally the first push does this).
    Create {
        /// App name.
        app: String,
        /// Its owner.
        #[arg(long)]
        owner: String,
    },
    /// Let another user push to and fetch from an app.
    Share {
        /// The app.
        app: String,
        /// The collaborator (a key owner name).
        user: String,
    },
    /// Take a collaborator away.
    Unshare {
        /// The app.
        app: String,
        /// The collaborator.
        user: String,
    },
    /// Delete an app: its VM, deploys, config, secrets, repository and logs.
    Destroy {
        /// The app.
        app: String,
        /// Repeat the app name to confirm.
        #[arg(long, value_name = "APP")]
        confirm: Option<String>,
    },
}

/// `byteport secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set a secret; the value is read from stdin (never from the command line).
    Set {
        /// The app.
        app: String,
        /// Secret name, e.g. DATABASE_URL.
        name: String,
    },
    /// Remove a secret.
    Unset {
        /// The app.
        app: String,
        /// Secret name.
        name: String,
    },
    /// List secret names (values are never shown).
    List {
        /// The app.
        app: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::from_env(cli.config.as_deref())?;
    crate::commands::dispatch(cli.command, &config).await
}
