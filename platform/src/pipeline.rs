//! The deploy pipeline a push to a deploy branch runs as a job: record the
//! deploy, read and check the manifest, build, run the release command,
//! boot, health-check, switch,
//! reporting each phase with its time. Until the switch the job can be
//! cancelled and the old version keeps serving; the switch is its point
//! of no return.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::apps::Platform;
use crate::boot::stop_vm;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::store::DeployStatus;

/// Largest manifest the pipeline reads from a commit.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What a push asks to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The app (the repository's name).
    pub app: String,
    /// The bare repository.
    pub repo: PathBuf,
    /// The pushed ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The commit to deploy (hex).
    pub commit: String,
    /// Who pushed.
    pub pushed_by: Option<String>,
    /// `git push -o KEY=VALUE` options.
    pub push_options: Vec<String>,
}

/// The value of push option `key` (`-o key=value`; a bare `-o key` is
/// `true`); the last one wins.
pub fn push_option<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options.iter().rev().find_map(|o| {
        o.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .or((o == key).then_some("true"))
    })
}

/// Runs the pipeline; returns the deploy's number (`None` with
/// `-o deploy=false`).
pub async fn run(
    platform: &Platform,
    ctx: &JobCtx,
    req: &DeployRequest,
) -> Result<Option<i64>, JobError> {
    let store = &platform.store;
    if push_option(&req.push_options, "deploy") == Some("false") {
        ctx.say(&format!(
            "-----> {}: deploy=false: ref updated, nothing deployed",
            req.app
        ));
        return Ok(None);
    }
    let deploy = store
        .start_deploy(
            &req.app,
            &req.commit,
            &req.git_ref,
            req.pushed_by.as_deref(),
            Some(ctx.id),
        )
        .await?;
    let number = deploy.number;
    ctx.set_deploy(number).await;
    if let Ok(Some((author, message))) = {
        let (repo, commit) = (req.repo.clone(), req.commit.clone());
        tokio::task::spawn_blocking(move || crate::repo_files::commit_info(&repo, &commit))
            .await
            .map(|r| r.ok())
    } {
        let _ = store
            .set_deploy_commit_info(&req.app, number, &author, &message)
            .await;
    }
    match pipeline(platform, ctx, req, number).await {
        Ok(()) => Ok(Some(number)),
        Err(reason) => {
            if let Err(e) = store
                .fail_deploy(&req.app, number, &reason.to_string())
                .await
            {
                tracing::error!(app = %req.app, number, error = %e, "cannot record deploy failure");
            }
            Err(reason)
        }
    }
}

async fn timed(
    platform: &Platform,
    ctx: &JobCtx,
    number: i64,
    status: DeployStatus,
    phase: &str,
    started: Instant,
) -> Result<(), JobError> {
    let ms = started.elapsed().as_millis() as i64;
    platform
        .store
        .set_deploy_status(&ctx.app, number, status, Some((phase, ms)))
        .await?;
    ctx.phase(phase, ms);
    Ok(())
}

async fn pipeline(
    platform: &Platform,
    ctx: &JobCtx,
    req: &DeployRequest,
    number: i64,
) -> Result<(), JobError> {
    // 1. Manifest.
    let started = Instant::now();
    let manifest = ctx.control.guard(read_manifest(req, ctx)).await??;
    ctx.say(&format!("-----> {}", manifest.summary()));
    if manifest.app != req.app {
        ctx.say(&format!(
            "       note: the manifest names the app `{}`; deploying as `{}` (the repository's name wins)",
            manifest.app, req.app
        ));
    }
    check_domains(&req.app, &manifest.domains, &platform.base_domain)?;
    platform
        .store
        .claim_domains(&req.app, &manifest.domains)
        .await?;
    timed(
        platform,
        ctx,
        number,
        DeployStatus::Building,
        "manifest",
        started,
    )
    .await?;

    // 2. Build.
    let started = Instant::now();
    ctx.say("-----> Building rootfs ...");
    let outcome = build(platform, ctx, req).await?;
    platform
        .store
        .set_deploy_artifact(&req.app, number, &outcome.digest)
        .await?;
    ctx.say(&format!(
        "-----> Built {} in {:.1}s{}",
        short(&outcome.digest),
        started.elapsed().as_secs_f64(),
        if outcome.cache_hit {
            " (cached: nothing changed)"
        } else {
            ""
        }
    ));
    timed(
        platform,
        ctx,
        number,
        DeployStatus::Booting,
        "build",
        started,
    )
    .await?;

    // 3. Release phase, then boot + health.
    if let Some(problem) = platform.boot_problem() {
        return Err(JobError::Boot {
            message: format!("cannot boot here: {problem}"),
        });
    }
    let (descriptor, _) = platform.artifact(&outcome.digest)?;
    if let Some(release) = &descriptor.release {
        let ms = platform
            .release(
                ctx,
                number,
                &outcome.digest,
                &release.run,
                !descriptor.volumes.is_empty(),
            )
            .await?;
        platform
            .store
            .set_deploy_status(
                &req.app,
                number,
                DeployStatus::Booting,
                Some(("release", ms)),
            )
            .await?;
        ctx.phase("release", ms);
    }
    let count = platform.instances_wanted(&req.app, &outcome.digest).await?;
    ctx.say(&if count > 1 {
        format!("-----> Booting {count} microVMs ...")
    } else {
        "-----> Booting microVM ...".to_string()
    });
    // An app that runs several VMs is rolled: one new VM healthy before
    // the switch, the others replace the running ones one by one after it.
    let rolling = platform.rolls(&req.app, count);
    let booted = platform
        .boot_fleet(
            ctx,
            number,
            &outcome.digest,
            if rolling { 1 } else { count },
        )
        .await?;
    let timings = crate::scale::fleet_timings(&booted);
    for (phase, ms) in &timings {
        platform
            .store
            .set_deploy_status(&req.app, number, DeployStatus::Booting, Some((phase, *ms)))
            .await?;
        ctx.phase(phase, *ms);
    }
    let boot_ms = timings.iter().map(|(_, ms)| ms).sum::<i64>();
    ctx.say(&format!(
        "-----> Healthy in {:.1}s",
        boot_ms as f64 / 1000.0
    ));

    // 4. Switch: the point of no return.
    let previous = platform.store.live_deploy(&req.app).await?;
    if let Err(why) = ctx.control.commit() {
        crate::scale::discard_all(booted, platform).await;
        return Err(why);
    }
    let switch_ms = if rolling {
        ctx.say(&format!(
            "-----> Replacing the running VMs one by one ({count} of deploy #{number})"
        ));
        platform
            .roll_in(ctx, &manifest.domains, booted, &outcome.digest, count)
            .await
    } else {
        platform.switch_in(&req.app, &manifest.domains, booted, 0)
    };
    platform
        .store
        .set_deploy_status(
            &req.app,
            number,
            DeployStatus::Live,
            Some(("switch", switch_ms)),
        )
        .await?;
    ctx.phase("switch", switch_ms);
    // Live, running (a push to a stopped app is a request to run it) and
    // the job done, in one transaction.
    platform
        .store
        .commit_live(&req.app, number, Some((ctx.id, ctx.node())))
        .await?;
    let released = platform
        .store
        .release_domains_except(&req.app, &manifest.domains)
        .await?;
    if released > 0 {
        ctx.note(&format!(
            "released {released} domain(s) this deploy no longer names"
        ));
    }
    ctx.note(&format!("deploy #{number} is live"));
    platform
        .queue_portfolio(&req.app, number, &req.commit, &manifest)
        .await;
    ctx.say(&format!(
        "-----> Live at {}   (deploy #{number}{})",
        platform.app_url(&req.app),
        previous
            .map(|p| format!(", previous #{} draining", p.number))
            .unwrap_or_default()
    ));
    Ok(())
}

/// Builds the pushed commit on a blocking thread, streaming its output.
async fn build(
    platform: &Platform,
    ctx: &JobCtx,
    req: &DeployRequest,
) -> Result<builder::BuildOutcome, JobError> {
    let home = platform.home().to_path_buf();
    let (repo, commit) = (req.repo.clone(), req.commit.clone());
    let ca_trust = platform.build_ca.clone();
    let app = req.app.clone();
    let egress = platform.egress.build_policy();
    // The build runs on a blocking thread; cancel reaches its steps through
    // this flag (the step's whole process tree is killed).
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cancel_build = cancel.clone();
    // Bounded: a build that prints faster than the events take it waits.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let build = tokio::task::spawn_blocking(move || {
        let sink = move |line: &str| {
            let _ = tx.blocking_send(line.to_string());
        };
        let mut request =
            builder::BuildRequest::new(home, builder::Source::Git { repo, rev: commit }, &sink);
        request.ca_trust = ca_trust;
        // The repository's app keys the cache and the steps' id range,
        // whatever the manifest claims.
        request.app = Some(app);
        request.egress = egress;
        request.cancel = Some(cancel_build);
        builder::build(&request)
    });
    let mut build = std::pin::pin!(build);
    loop {
        tokio::select! {
            Some(line) = rx.recv() => ctx.build_output(&line),
            done = &mut build => {
                while let Ok(line) = rx.try_recv() {
                    ctx.build_output(&line);
                }
                return done
                    .map_err(|e| JobError::Internal { message: format!("build task failed: {e}") })?
                    .map_err(|e| JobError::Build { message: crate::jobs::error_chain(&e) });
            }
            why = ctx.control.stopped() => {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                // Wait for the step's processes to be gone before the job
                // ends: a cancelled build leaves nothing running.
                // Its lines are drained meanwhile so its sink never blocks;
                // the channel closes when the build thread ends.
                while rx.recv().await.is_some() {}
                let _ = (&mut build).await;
                return Err(why);
            }
        }
    }
}

impl crate::boot::Booted {
    /// Powers off a VM that will not be switched in.
    pub(crate) async fn discard(self, platform: &Platform) {
        stop_vm(
            self.into_running(),
            Duration::from_secs(5),
            &platform.events,
        )
        .await;
    }
}

/// Every app owns `<app>.<base>`: no other app may claim that name, nor
/// anything under `<other-app>.<base>`, nor the base itself.
pub fn check_domains(app: &str, domains: &[String], base: &str) -> Result<(), JobError> {
    for d in domains {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d == base {
            return Err(JobError::Rejected {
                message: format!("domain `{d}` is BytePort's own base domain; no app can claim it"),
            });
        }
        let Some(under) = d.strip_suffix(&format!(".{base}")) else {
            continue;
        };
        let owner = under.rsplit('.').next().unwrap_or(under);
        if owner != app {
            return Err(JobError::Rejected {
                message: format!(
                    "domain `{d}` is under `{owner}.{base}`, the address of app `{owner}`; an app may only use `{app}.{base}` and names under it"
                ),
            });
        }
    }
    Ok(())
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

async fn read_manifest(
    req: &DeployRequest,
    ctx: &JobCtx,
) -> Result<manifest_spec::Manifest, JobError> {
    let repo = req.repo.clone();
    let commit = req.commit.clone();
    let read = tokio::task::spawn_blocking(move || {
        crate::repo_files::read_root_file(
            &repo,
            &commit,
            manifest_spec::MANIFEST_FILE_NAME,
            MAX_MANIFEST_BYTES,
        )
    })
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(crate::repo_files::RepoFileError::Missing { .. })) => {
            return Err(JobError::Rejected {
                message: format!(
                    "no `{}` manifest at the repository root; create one with `byteport manifest init`",
                    manifest_spec::MANIFEST_FILE_NAME
                ),
            })
        }
        Ok(Err(e)) => {
            return Err(JobError::Rejected {
                message: e.to_string(),
            })
        }
        Err(e) => {
            return Err(JobError::Internal {
                message: format!("reading the manifest failed: {e}"),
            })
        }
    };
    manifest_spec::parse(&bytes, manifest_spec::MANIFEST_FILE_NAME).map_err(|diags| {
        for line in diags.to_string().lines() {
            ctx.say(line);
        }
        let first = diags
            .iter()
            .next()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))
            .unwrap_or_else(|| "invalid manifest".into());
        JobError::Rejected {
            message: format!("invalid Byteport manifest: {first}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{check_domains, push_option};

    #[test]
    fn other_apps_addresses_cannot_be_claimed() {
        let own = |d: &[&str]| {
            check_domains(
                "blog",
                &d.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "localhost",
            )
        };
        own(&["blog.localhost", "www.blog.localhost", "example.com"]).unwrap();
        for bad in [
            "victim.localhost",
            "a.victim.localhost",
            "localhost",
            "VICTIM.localhost.",
        ] {
            let e = own(&[bad]).unwrap_err().to_string();
            assert!(e.contains("domain"), "{bad}: {e}");
        }
    }

    #[test]
    fn push_options() {
        let o = vec!["deploy=false".to_string(), "x".to_string()];
        assert_eq!(push_option(&o, "deploy"), Some("false"));
        assert_eq!(push_option(&o, "x"), Some("true"));
        assert_eq!(push_option(&o, "y"), None);
    }
}
