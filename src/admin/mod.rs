//! The admin commands, in the spirit of Dokku: the same command lines over
//! SSH (`ssh -p 2222 git@host CMD`, as a key's owner) and from the local
//! CLI through `byteport up`'s control socket (as the operator, who may
//! touch every app). Output is written as it happens, so `logs -f`,
//! `restart` and `rollback` show progress live.

mod db;
mod logs;
mod portfolio;
mod run;
mod volumes;

use gitd::{CommandOutput, Stream};
use platform::jobs::dispatch::CancelReport;
use platform::{JobSpec, JobUpdate};

use platform::store::StoreError;
use platform::Platform;

/// Who runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A key's owner over SSH: only their own and shared apps.
    User(&'a str),
    /// The local operator (the CLI through the control socket): every app.
    Operator,
}

impl Caller<'_> {
    fn name(&self) -> Option<&str> {
        match self {
            Caller::User(u) => Some(u),
            Caller::Operator => None,
        }
    }
}

/// Help text shown by `help` and for unknown commands.
pub const HELP: &str = "\
BytePort commands (ssh -p PORT git@HOST COMMAND):
  help                                 this text
  apps                                 apps you own or collaborate on
  ps [APP]                             running VMs: deploy, uptime, crashes
  config APP                           show APP's config vars
  config APP set KEY=VALUE...          set config vars; a running APP restarts (--no-restart: later)
  config APP unset KEY...              remove config vars (restarts as set does)
  deploys APP                          deploy history and queued/running jobs
  deploys cancel APP [JOB]             cancel APP's running (else queued) job, or JOB
  logs APP [-n LINES] [-f]             app logs (-f: follow until Ctrl-C)
  restart APP                          fresh VM of the live deploy, no downtime
  rollback APP [DEPLOY]                run an earlier deploy again (default: the previous)
  db APP | db backup APP | db restore APP BACKUP   APP's managed PostgreSQL database
  run APP [--stop-app] -- CMD...       run CMD in a one-off VM of the live deploy (--stop-app: with its volumes)
  scale APP web=N                      run N web VMs, balanced by the router (1..16; not with a volume)
  stop APP                             stop serving APP (stays stopped)
  start APP                            start a stopped APP
  destroy APP --confirm APP            delete APP: VM, deploys, config, repository (owner only)
  volumes APP                          APP's volumes and backups
  volumes backup APP NAME              a consistent copy (the VM stops for it), kept on the host
  volumes restore APP NAME BACKUP      replace the volume with a backup (owner only)
  volumes destroy APP NAME --confirm NAME   delete a volume the manifest no longer names
  portfolio list|show APP|diff APP|edit APP --title T|approve APP|reject APP|regenerate APP
                                       review the drafted portfolio pages of your apps
git:
  git push ssh://git@HOST:PORT/APP.git main   deploy
";

/// Longest admin command line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Writes `text` and a newline to the caller's stdout.
async fn say(out: &dyn CommandOutput, text: &str) {
    out.write(Stream::Stdout, &with_newline(text)).await;
}

/// Writes `text` to the caller's stderr and returns exit status 1.
async fn fail(out: &dyn CommandOutput, text: &str) -> u32 {
    out.write(Stream::Stderr, &with_newline(text)).await;
    1
}

fn with_newline(text: &str) -> String {
    let mut t = text.to_string();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    t
}

/// Runs one admin command line; returns its exit status.
pub async fn run(
    platform: &Platform,
    caller: Caller<'_>,
    line: &str,
    out: &dyn CommandOutput,
) -> u32 {
    if line.len() > MAX_LINE {
        return fail(
            out,
            &format!("command too long ({} bytes; limit {MAX_LINE})", line.len()),
        )
        .await;
    }
    let Some(words) = shlex::split(line) else {
        return fail(out, "cannot parse the command: unbalanced quotes").await;
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match dispatch(platform, caller, &words, out).await {
        Ok(code) => code,
        Err(e) => fail(out, &format!("error: {e}")).await,
    }
}

/// [`run`] with the client's connection: `run APP -- CMD` on a terminal
/// when the client asked for one (`ssh -t`); every other command ignores
/// the terminal and stdin.
pub async fn run_interactive(
    platform: &Platform,
    caller: Caller<'_>,
    line: &str,
    session: gitd::Interactive,
    out: &dyn CommandOutput,
) -> u32 {
    let on_terminal = session.tty.is_some()
        && line.len() <= MAX_LINE
        && shlex::split(line).is_some_and(|w| w.first().is_some_and(|w| w == "run"));
    if !on_terminal {
        drop(session);
        return run(platform, caller, line, out).await;
    }
    let words = shlex::split(line).unwrap_or_default();
    let words: Vec<&str> = words.iter().skip(1).map(String::as_str).collect();
    run::run_on_terminal(platform, caller, &words, session, out).await
}

/// Why a command failed before doing anything.
#[derive(Debug, thiserror::Error)]
enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
}

async fn require_access(
    platform: &Platform,
    caller: Caller<'_>,
    app: &str,
) -> Result<(), AdminError> {
    let allowed = match caller {
        Caller::User(user) => platform.store.can_access(user, app).await?,
        Caller::Operator => platform.store.app(app).await?.is_some(),
    };
    if allowed {
        Ok(())
    } else {
        // Same message whether the app exists or not: no probing for names.
        Err(StoreError::NotFound {
            kind: "app (or you have no access to it)",
            name: app.to_string(),
        }
        .into())
    }
}

/// `3`, `#3` or `v3` (Heroku's spelling) → 3.
fn parse_deploy_number(word: &str) -> Result<i64, AdminError> {
    let digits = word.trim_start_matches(['#', 'v']);
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            AdminError::Usage(format!(
                "`{}` is not a deploy number (e.g. 3, #3 or v3)",
                word.escape_default()
            ))
        })
}

async fn dispatch(
    platform: &Platform,
    caller: Caller<'_>,
    words: &[&str],
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let store = &platform.store;
    let router_port = platform.router_port();
    match words {
        [] | ["help"] | ["--help"] | ["-h"] => {
            out.write(Stream::Stdout, HELP).await;
            Ok(0)
        }
        ["apps"] => {
            let apps = store.list_apps(caller.name()).await?;
            if apps.is_empty() {
                say(
                    out,
                    "no apps yet: git push a repository with a Byteport manifest",
                )
                .await;
            }
            for a in apps {
                let live = store.live_deploy(&a.name).await?;
                let state = match (&live, a.stopped, platform.is_running(&a.name)) {
                    (None, _, _) => "not live".to_string(),
                    (Some(d), true, _) => format!("#{} stopped", d.number),
                    (Some(d), false, true) => format!("#{} running", d.number),
                    (Some(d), false, false) => format!("#{} down", d.number),
                };
                say(
                    out,
                    &format!(
                        "{:<24} {:<14} http://{}.localhost:{router_port}",
                        a.name, state, a.name
                    ),
                )
                .await;
            }
            Ok(0)
        }
        ["ps"] | ["ps", _] => {
            let only = words.get(1).copied();
            if let Some(app) = only {
                require_access(platform, caller, app).await?;
            }
            let mut shown = 0;
            for vm in platform.status() {
                if only.is_some_and(|a| a != vm.app) {
                    continue;
                }
                if let Caller::User(u) = caller {
                    if !store.can_access(u, &vm.app).await? {
                        continue;
                    }
                }
                shown += 1;
                say(
                    out,
                    &format!(
                        "{:<24} deploy #{:<4} vm {:<20} pid {:<8} up {}s  crashes {}  upstream {}",
                        vm.app,
                        vm.deploy,
                        vm.vm,
                        vm.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        vm.uptime_secs,
                        vm.crashes,
                        vm.upstream.as_deref().unwrap_or("-")
                    ),
                )
                .await;
            }
            if shown == 0 {
                say(out, "no VMs running").await;
            }
            Ok(0)
        }
        ["config", app] => {
            require_access(platform, caller, app).await?;
            for (k, v) in store.config_vars(app).await? {
                say(out, &format!("{k}={v}")).await;
            }
            Ok(0)
        }
        ["config", app, "set", args @ ..] if !args.is_empty() => {
            require_access(platform, caller, app).await?;
            let (no_restart, pairs) = split_no_restart(args);
            if pairs.is_empty() {
                return Ok(fail(out, "config set needs KEY=VALUE pairs").await);
            }
            let mut parsed = vec![];
            for p in pairs {
                match p.split_once('=') {
                    Some((k, v)) if !k.is_empty() => parsed.push((k.to_string(), v.to_string())),
                    _ => return Ok(fail(out, &format!("`{p}` is not KEY=VALUE")).await),
                }
            }
            store.set_config(app, &parsed).await?;
            let keys: Vec<&str> = parsed.iter().map(|(k, _)| k.as_str()).collect();
            apply_config(platform, caller, app, &format!("set {}", keys.join(", ")), no_restart, out).await
        }
        ["config", app, "unset", args @ ..] if !args.is_empty() => {
            require_access(platform, caller, app).await?;
            let (no_restart, keys) = split_no_restart(args);
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            let n = store.unset_config(app, &keys).await?;
            apply_config(platform, caller, app, &format!("removed {n} var(s)"), no_restart || n == 0, out).await
        }
        ["deploys", "cancel", app] | ["deploys", "cancel", app, _] => {
            require_access(platform, caller, app).await?;
            let job = words
                .get(3)
                .map(|w| {
                    w.trim_start_matches('#').parse::<i64>().map_err(|_| {
                        AdminError::Usage(format!("`{}` is not a job number", w.escape_default()))
                    })
                })
                .transpose()?;
            let by = caller.name().unwrap_or("the operator");
            match platform.cancel(app, job, by).await {
                Ok(report) => Ok(cancel_report(out, report).await),
                Err(e) => Ok(fail(out, &format!("error: {e}")).await),
            }
        }
        ["deploys", app] => {
            require_access(platform, caller, app).await?;
            for j in store.active_jobs(app).await? {
                let job = platform::Job::from_row(j);
                say(
                    out,
                    &format!(
                        "job {:<5} {:<10} {:<8} requested by {}",
                        job.id,
                        job.spec.kind(),
                        job.state.as_str(),
                        job.requested_by.as_deref().unwrap_or("-")
                    ),
                )
                .await;
            }
            let deploys = store.list_deploys(app, 20).await?;
            if deploys.is_empty() {
                say(out, &format!("{app} has no deploys yet")).await;
            }
            for d in deploys {
                let what = match d.rollback_of {
                    Some(n) => format!("rollback to #{n}"),
                    None => d.commit.get(..12).unwrap_or(&d.commit).to_string(),
                };
                say(
                    out,
                    &format!(
                        "#{:<4} {:<10} {what}{}",
                        d.number,
                        d.status.as_str(),
                        d.failure_reason
                            .map(|r| format!("  ({})", r.lines().next().unwrap_or_default()))
                            .unwrap_or_default()
                    ),
                )
                .await;
            }
            Ok(0)
        }
        ["logs", args @ ..] => {
            let opts = logs::LogsOptions::parse(args).map_err(AdminError::Usage)?;
            require_access(platform, caller, &opts.app).await?;
            logs::show(platform, &opts.app, &opts, out).await?;
            Ok(0)
        }
        ["restart", app] => {
            require_access(platform, caller, app).await?;
            run_job(platform, caller, app, JobSpec::Restart, out).await
        }
        ["rollback", app] | ["rollback", app, _] => {
            require_access(platform, caller, app).await?;
            let target = words.get(2).map(|w| parse_deploy_number(w)).transpose()?;
            run_job(platform, caller, app, JobSpec::Rollback { target }, out).await
        }
        ["run", rest @ ..] => run::run(platform, caller, rest, out).await,
        ["db", rest @ ..] => db::run(platform, caller, rest, out).await,
        ["scale", app, formation @ ..] if !formation.is_empty() => {
            require_access(platform, caller, app).await?;
            let web = parse_formation(formation)?;
            run_job(platform, caller, app, JobSpec::Scale { web }, out).await
        }
        ["stop", app] => {
            require_access(platform, caller, app).await?;
            run_job(platform, caller, app, JobSpec::Stop, out).await
        }
        ["start", app] => {
            require_access(platform, caller, app).await?;
            run_job(platform, caller, app, JobSpec::Start, out).await
        }
        ["destroy", app, "--confirm", confirm] if app == confirm => {
            require_access(platform, caller, app).await?;
            if let Caller::User(user) = caller {
                let owner = store.require_app(app).await?.owner;
                if owner != user {
                    return Ok(fail(
                        out,
                        &format!("only {app}'s owner ({owner}) may destroy it"),
                    )
                    .await);
                }
            }
            run_job(platform, caller, app, JobSpec::Destroy, out).await
        }
        ["portfolio", rest @ ..] => portfolio::run(platform, caller, rest, out).await,
        ["volumes", rest @ ..] if !rest.is_empty() => {
            volumes::run(platform, caller, rest, out).await
        }
        ["destroy", app, ..] => Ok(fail(
            out,
            &format!(
                "destroying {app} deletes its VM, deploys, config, secrets, repository and logs; run again with --confirm {app}"
            ),
        )
        .await),
        [cmd, ..] => Ok(fail(
            out,
            &format!(
                "unknown or incomplete command `{}`\n\n{HELP}",
                cmd.escape_default()
            ),
        )
        .await),
    }
}

/// `web=N` (Heroku's `ps:scale` formation; `web` is the only process
/// that scales today).
fn parse_formation(words: &[&str]) -> Result<u32, AdminError> {
    let mut web = None;
    for w in words {
        match w.split_once('=') {
            Some(("web", n)) => {
                web = Some(n.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    AdminError::Usage(format!(
                        "`{}`: web=N needs a whole number from 1 to {}",
                        w.escape_default(),
                        platform::scale::MAX_INSTANCES
                    ))
                })?)
            }
            Some((process, _)) => {
                return Err(AdminError::Usage(format!(
                    "`{}`: only the web process runs in several VMs; workers run in each of them",
                    process.escape_default()
                )))
            }
            None => {
                return Err(AdminError::Usage(format!(
                    "`{}` is not PROCESS=N (e.g. web=2)",
                    w.escape_default()
                )))
            }
        }
    }
    web.ok_or_else(|| AdminError::Usage("scale APP web=N".into()))
}

/// `--no-restart` anywhere among `args`, and the other words.
fn split_no_restart<'w>(args: &[&'w str]) -> (bool, Vec<&'w str>) {
    let no_restart = args.contains(&"--no-restart");
    (
        no_restart,
        args.iter()
            .copied()
            .filter(|a| *a != "--no-restart")
            .collect(),
    )
}

/// After a config change: a running app restarts (a job, as Dokku does)
/// unless `--no-restart`; a stopped one picks it up when it starts.
async fn apply_config(
    platform: &Platform,
    caller: Caller<'_>,
    app: &str,
    done: &str,
    no_restart: bool,
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    if no_restart || !platform.is_running(app) {
        say(
            out,
            &format!("{done} on {app} (takes effect on the next deploy or `restart {app}`)"),
        )
        .await;
        return Ok(0);
    }
    say(
        out,
        &format!("{done} on {app}; restarting it to apply them"),
    )
    .await;
    run_job(platform, caller, app, JobSpec::Restart, out).await
}

/// Queues `spec` for `app` and prints its progress until it ends. A
/// client that goes away (Ctrl-C) leaves the job running: it is the app's
/// now, and `deploys cancel` stops it.
async fn run_job(
    platform: &Platform,
    caller: Caller<'_>,
    app: &str,
    spec: JobSpec,
    out: &dyn CommandOutput,
) -> Result<u32, AdminError> {
    let by = caller.name().unwrap_or("operator");
    let mut follower = match platform.submit(app, spec, Some(by), false).await {
        Ok(f) => f,
        Err(e) => return Ok(fail(out, &format!("error: {e}")).await),
    };
    while let Some(update) = follower.next(platform).await {
        match update {
            JobUpdate::Line(line) => say(out, &line).await,
            JobUpdate::Skipped(n) => say(out, &format!("… {n} lines skipped")).await,
            JobUpdate::Done(result) => {
                return match *result {
                    Ok(_) => Ok(0),
                    Err(e) => Ok(fail(out, &format!("error: {e}")).await),
                }
            }
        }
    }
    Ok(fail(out, "error: the job's progress stream ended early").await)
}

async fn cancel_report(out: &dyn CommandOutput, report: CancelReport) -> u32 {
    match report {
        CancelReport::Dequeued(job) => {
            say(out, &format!("cancelled {} before it started", job.title())).await;
            0
        }
        CancelReport::Stopping(job) => {
            say(
                out,
                &format!(
                    "cancelling {}: its build and VM are being stopped; the previous version keeps serving",
                    job.title()
                ),
            )
            .await;
            0
        }
        CancelReport::TooLate(job) => {
            fail(
                out,
                &format!(
                    "{} is past its point of no return (switching to the new VM); it will finish",
                    job.title()
                ),
            )
            .await
        }
        CancelReport::AlreadyFinished(job) => {
            fail(
                out,
                &format!("{} already ended ({})", job.title(), job.state.as_str()),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests;
