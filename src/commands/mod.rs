//! Command implementations, one module per area, each a thin layer over the
//! store or a crate.

mod apps;
mod keys;
mod manifest;
mod tokens;

mod vars;

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Command, ConfigCommand};
use crate::config::Config;
use platform::store::Store;

/// Opens the state store named by the config.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    config
        .ensure_home()
        .with_context(|| format!("creating the data directory {}", config.home.display()))?;
    Store::open(&config.database_url, &config.home)
        .await
        .with_context(|| format!("opening the state store under {}", config.home.display()))
}

/// Runs one command.
pub async fn dispatch(command: Command, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up => {
            crate::daemon::up(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup(args) => {
            let home = config.home.clone();
            tokio::task::spawn_blocking(move || builder::cli::run_setup(&home, &args)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            // run_build prints the outcome (text or --json) itself.
            let home = config.home.clone();
            tokio::task::spawn_blocking(move || builder::cli::run_build(&home, &args)).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Vm { args } => {
            // The VMM's own CLI, in its own binary: the daemon does not
            // link KVM device code.
            let vmm = runtime::drivers::kvm::find_vmm().context(
                "byteport-vmm not found beside byteport (or in $BYTEPORT_VMM): install it with `cargo install --locked --path vmm --bin byteport-vmm`",
            )?;
            let dir = config.home.join("vms");
            let status = tokio::task::spawn_blocking(move || {
                runtime::drivers::kvm::run_vmm_cli(&vmm, &dir, &args)
            })
            .await??;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        Command::Config(ConfigCommand::Show(flag)) => {
            if flag.json {
                println!("{}", serde_json::to_string_pretty(config)?);
            } else {
                print!("{}", config.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(cmd) => vars::config(cmd, config).await,
        Command::Doctor(flag) => {
            let report = crate::doctor::run(config);
            if flag.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifest(cmd) => manifest::run(cmd),
        Command::Keys(cmd) => keys::keys(cmd, config).await,
        Command::Users(cmd) => keys::users(cmd, config).await,
        Command::Tokens(cmd) => tokens::tokens(cmd, config).await,
        Command::Apps(args) => apps::run(args, config).await,
        Command::Secrets(cmd) => vars::secrets(cmd, config).await,
        Command::Deploys(args) => match (args.command, args.app) {
            (Some(crate::cli::DeploysCommand::Cancel { app, job }), _) => {
                let extra: Vec<&str> = job.as_deref().into_iter().collect();
                daemon_command(config, "deploys cancel", Some(&app), &extra).await
            }
            (None, Some(app)) => apps::deploys(&app, args.limit, args.json, config).await,
            (None, None) => {
                anyhow::bail!("which app? byteport deploys APP (or: deploys cancel APP)")
            }
        },
        Command::Ps { app } => daemon_command(config, "ps", app.as_deref(), &[]).await,
        Command::Logs { app, lines, follow } => {
            let n = lines.to_string();
            let mut extra = vec!["-n", n.as_str()];
            if follow {
                extra.push("-f");
            }
            daemon_command(config, "logs", Some(&app), &extra).await
        }
        Command::Restart { app } => daemon_command(config, "restart", Some(&app), &[]).await,
        Command::Rollback { app, deploy } => {
            let extra: Vec<&str> = deploy.iter().map(String::as_str).collect();
            daemon_command(config, "rollback", Some(&app), &extra).await
        }
        Command::Stop { app } => daemon_command(config, "stop", Some(&app), &[]).await,
        Command::Run {
            app,
            stop_app,
            no_tty,
            command,
        } => {
            let mut words = vec!["run", app.as_str()];
            if stop_app {
                words.push("--stop-app");
            }
            words.push("--");
            words.extend(command.iter().map(String::as_str));
            if !stop_app && !no_tty && crate::control::terminal_is_stdin() {
                // Heroku's `run bash`: this terminal becomes the VM's.
                let line = shlex::try_join(words).context("quoting the command")?;
                let code = crate::control::call_on_terminal(&config.home, &line).await?;
                return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            daemon_command(config, "run", Some(&app), &words[2..]).await
        }
        Command::Scale { app, formation } => {
            let extra: Vec<&str> = formation.iter().map(String::as_str).collect();
            daemon_command(config, "scale", Some(&app), &extra).await
        }
        Command::Portfolio { mut args } => {
            // A directory for `export` is the caller's, relative to here.
            if args.first().map(String::as_str) == Some("export") {
                if let Some(dir) = args.get_mut(1) {
                    let abs =
                        std::path::absolute(&*dir).context("resolving the export directory")?;
                    *dir = abs.display().to_string();
                }
            }
            let extra: Vec<&str> = args.iter().map(String::as_str).collect();
            daemon_command(config, "portfolio", None, &extra).await
        }
        Command::Start { app } => daemon_command(config, "start", Some(&app), &[]).await,
        Command::Db { mut args } => {
            if let ["psql", app] = args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                // Interactive: psql runs here, on the caller's terminal.
                let home = platform::Platform::database_home(&config.home);
                let mut psql = database::Cluster::attach(&home)
                    .and_then(|c| c.psql_command(app))
                    .with_context(|| format!("opening a psql session on {app}'s database"))?;
                let status = psql.status().context("running psql")?;
                return Ok(ExitCode::from(
                    status.code().unwrap_or(1).clamp(0, 255) as u8
                ));
            }
            // A file named here is the caller's, relative to here.
            let file_at = match args.first().map(String::as_str) {
                Some("backup") => Some(2),
                Some("restore") => args
                    .get(2)
                    .filter(|f| f.contains('/') || std::path::Path::new(f).exists())
                    .map(|_| 2),
                _ => None,
            };
            if let Some(file) = file_at.and_then(|i| args.get_mut(i)) {
                let abs = std::path::absolute(&*file).context("resolving the backup file")?;
                *file = abs.display().to_string();
            }
            let extra: Vec<&str> = args.iter().map(String::as_str).collect();
            daemon_command(config, "db", None, &extra).await
        }
        Command::Volumes { mut args } => {
            // A file named here is the caller's, relative to here.
            let file_at = match args.first().map(String::as_str) {
                Some("backup") => Some(3),
                Some("restore") => args
                    .get(3)
                    .filter(|f| f.contains('/') || std::path::Path::new(f).exists())
                    .map(|_| 3),
                _ => None,
            };
            if let Some(file) = file_at.and_then(|i| args.get_mut(i)) {
                let abs = std::path::absolute(&*file).context("resolving the backup file")?;
                *file = abs.display().to_string();
            }
            let extra: Vec<&str> = args.iter().map(String::as_str).collect();
            daemon_command(config, "volumes", None, &extra).await
        }
    }
}

/// Runs an admin command on the running `byteport up` (the same command
/// lines as over SSH) and exits with its status.
async fn daemon_command(
    config: &Config,
    command: &str,
    app: Option<&str>,
    extra: &[&str],
) -> anyhow::Result<ExitCode> {
    let words: Vec<&str> = command
        .split_whitespace()
        .chain(app)
        .chain(extra.iter().copied())
        .collect();
    let line = shlex::try_join(words).context("quoting the command")?;
    let code = crate::control::call(&config.home, &line).await?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Reads all of stdin as one value, trimming one trailing newline.
pub(crate) fn read_stdin_value(what: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .with_context(|| format!("reading {what} from stdin"))?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

pub(crate) use platform::time::fmt_time;
