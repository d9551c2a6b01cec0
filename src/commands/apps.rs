//! `byteport apps …` and `byteport deploys APP`.

use std::process::ExitCode;

use super::{fmt_time, open_store};
use crate::cli::{AppsArgs, AppsCommand};
use crate::config::Config;

pub async fn run(args: AppsArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    match args.command {
        None => {
            let apps = store.list_apps(None).await?;
            if args.json {
                let mut out = vec![];
                for a in &apps {
                    let live = store.live_deploy(&a.name).await?;
                    out.push(serde_json::json!({
                        "name": a.name,
                        "owner": a.owner,
                        "collaborators": a.collaborators,
                        "created_at": a.created_at,
                        "live_deploy": live.map(|d| d.number),
                        "url": app_url(config, &a.name),
                    }));
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if apps.is_empty() {
                println!("no apps yet: push a repository with a Byteport manifest to create one");
            } else {
                for a in apps {
                    let live = store.live_deploy(&a.name).await?;
                    println!(
                        "{:<24} owner {:<12} {:<10} {}",
                        a.name,
                        a.owner,
                        live.map(|d| format!("deploy #{}", d.number))
                            .unwrap_or_else(|| "not live".into()),
                        app_url(config, &a.name)
                    );
                }
            }
        }
        Some(AppsCommand::Create { app, owner }) => {
            store.create_app(&app, &owner).await?;
            println!("created {app} (owner {owner})");
        }
        Some(AppsCommand::Share { app, user }) => {
            store.share_app(&app, &user).await?;
            println!("{user} can now push to and fetch from {app}");
        }
        Some(AppsCommand::Unshare { app, user }) => {
            store.unshare_app(&app, &user).await?;
            println!("{user} no longer has access to {app}");
        }
        Some(AppsCommand::Destroy { app, confirm }) => {
            if confirm.as_deref() != Some(app.as_str()) {
                anyhow::bail!(
                    "destroying `{app}` deletes its deploys, config and secrets; run again with --confirm {app}"
                );
            }
            // The running daemon stops the VM and unroutes the app itself.
            let line = shlex::try_join(["destroy", app.as_str(), "--confirm", app.as_str()])?;
            match crate::control::call(&config.home, &line).await {
                Ok(code) => return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
                Err(crate::control::CallError::NotRunning { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            store.delete_app(&app).await?;
            platform::lifecycle::remove_app_files(&config.home, &app)?;
            let _ = std::fs::remove_dir_all(config.home.join("logs").join(&app));
            println!("destroyed {app}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deploys(
    app: &str,
    limit: i64,
    json: bool,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    store.require_app(app).await?;
    let list = store.list_deploys(app, limit.clamp(1, 1000)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for j in store.active_jobs(app).await? {
        let job = platform::Job::from_row(j);
        println!(
            "job {:<5} {:<10} {:<8} requested by {}  {}",
            job.id,
            job.spec.kind(),
            job.state.as_str(),
            job.requested_by.as_deref().unwrap_or("-"),
            fmt_time(job.created_at)
        );
    }
    if list.is_empty() {
        println!("{app} has no deploys yet");
    }
    for d in list {
        let short = d.commit.get(..12).unwrap_or(&d.commit);
        println!(
            "#{:<4} {:<10} {short}  {}  {}{}",
            d.number,
            d.status.as_str(),
            fmt_time(d.created_at),
            d.pushed_by.unwrap_or_default(),
            d.failure_reason
                .map(|r| format!("  ({})", r.lines().next().unwrap_or_default()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The public URL of an app behind the router.
pub fn app_url(config: &Config, app: &str) -> String {
    format!("http://{app}.localhost:{}", config.router_addr.port())
}
