//! The deploy pipeline a push to a deploy branch runs, as far as the landed
//! components go: record the deploy, read and check the manifest, (build,
//! boot, health, switch as they land), and report each phase with its time.

use std::path::PathBuf;
use std::time::Instant;

use crate::platform::Platform;
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

/// How a deploy ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployOutcome {
    /// The deploy's number, if one was recorded.
    pub number: Option<i64>,
    /// The last status reached.
    pub status: Option<DeployStatus>,
}

/// Receives progress lines (`remote:` lines for a git client).
pub trait Progress: Send + Sync {
    /// One line, without trailing newline.
    fn line(&self, text: &str);
}

impl<F: Fn(&str) + Send + Sync> Progress for F {
    fn line(&self, text: &str) {
        self(text)
    }
}

fn option<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options.iter().rev().find_map(|o| {
        o.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .or((o == key).then_some("true"))
    })
}

/// Runs the pipeline; `Err` carries the reason the push is rejected with.
pub async fn run(
    platform: &Platform,
    req: &DeployRequest,
    progress: &dyn Progress,
) -> Result<DeployOutcome, String> {
    let store = &platform.store;
    if option(&req.push_options, "deploy") == Some("false") {
        progress.line(&format!(
            "-----> {}: deploy=false: ref updated, nothing deployed",
            req.app
        ));
        return Ok(DeployOutcome {
            number: None,
            status: None,
        });
    }
    let deploy = store
        .start_deploy(
            &req.app,
            &req.commit,
            &req.git_ref,
            req.pushed_by.as_deref(),
        )
        .await
        .map_err(|e| format!("cannot record the deploy: {e}"))?;
    let number = deploy.number;
    match pipeline(platform, req, number, progress).await {
        Ok(status) => Ok(DeployOutcome {
            number: Some(number),
            status: Some(status),
        }),
        Err(reason) => {
            if let Err(e) = store.fail_deploy(&req.app, number, &reason).await {
                tracing::error!(app = %req.app, number, error = %e, "cannot record deploy failure");
            }
            Err(reason)
        }
    }
}

async fn timed<T>(
    platform: &Platform,
    req: &DeployRequest,
    number: i64,
    status: DeployStatus,
    phase: &str,
    started: Instant,
    value: T,
) -> Result<T, String> {
    platform
        .store
        .set_deploy_status(
            &req.app,
            number,
            status,
            Some((phase, started.elapsed().as_millis() as i64)),
        )
        .await
        .map_err(|e| format!("cannot record the deploy: {e}"))?;
    Ok(value)
}

async fn pipeline(
    platform: &Platform,
    req: &DeployRequest,
    number: i64,
    progress: &dyn Progress,
) -> Result<DeployStatus, String> {
    // 1. Manifest.
    let started = Instant::now();
    let manifest = read_manifest(req, progress).await?;
    progress.line(&format!("-----> {}", manifest.summary()));
    if manifest.app != req.app {
        progress.line(&format!(
            "       note: the manifest names the app `{}`; deploying as `{}` (the repository's name)",
            manifest.app, req.app
        ));
    }
    timed(
        platform,
        req,
        number,
        DeployStatus::Building,
        "manifest",
        started,
        (),
    )
    .await?;

    // 2. Build.
    let started = Instant::now();
    progress.line("-----> Building rootfs ...");
    let home = platform_home(platform);
    let (repo, commit) = (req.repo.clone(), req.commit.clone());
    let ca_trust = platform.build_ca().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let build = tokio::task::spawn_blocking(move || {
        let sink = move |line: &str| {
            let _ = tx.send(line.to_string());
        };
        let mut request =
            builder::BuildRequest::new(home, builder::Source::Git { repo, rev: commit }, &sink);
        request.ca_trust = ca_trust;
        builder::build(&request)
    });
    let mut build = std::pin::pin!(build);
    let outcome = loop {
        tokio::select! {
            Some(line) = rx.recv() => progress.line(&format!("       {line}")),
            done = &mut build => {
                while let Ok(line) = rx.try_recv() {
                    progress.line(&format!("       {line}"));
                }
                break done.map_err(|e| format!("build task failed: {e}"))?.map_err(|e| format!("build failed: {e}"))?;
            }
        }
    };
    platform
        .store
        .set_deploy_artifact(&req.app, number, &outcome.digest)
        .await
        .map_err(|e| e.to_string())?;
    progress.line(&format!(
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
        req,
        number,
        DeployStatus::Booting,
        "build",
        started,
        (),
    )
    .await?;

    // 3. Boot + health.
    if let Some(problem) = platform.boot_problem() {
        return Err(format!("cannot boot here: {problem}"));
    }
    progress.line("-----> Booting microVM ...");
    // From here on this push changes which VM serves the app: one at a time
    // with restarts, rollbacks and crash recovery.
    let _app_lock = platform.lock_app(&req.app).await;
    let booted = platform
        .boot(&req.app, number, &outcome.digest, &|l: &str| {
            progress.line(l)
        })
        .await?;
    for (phase, ms) in &booted.timings {
        platform
            .store
            .set_deploy_status(&req.app, number, DeployStatus::Booting, Some((phase, *ms)))
            .await
            .map_err(|e| e.to_string())?;
    }
    let boot_ms = booted.timings.iter().map(|(_, ms)| ms).sum::<i64>();
    progress.line(&format!(
        "-----> Healthy in {:.1}s",
        boot_ms as f64 / 1000.0
    ));

    // 4. Switch.
    let previous = platform
        .store
        .live_deploy(&req.app)
        .await
        .map_err(|e| e.to_string())?;
    let switch_ms = platform.switch(&req.app, &manifest.domains, booted).await?;
    platform
        .store
        .set_deploy_status(
            &req.app,
            number,
            DeployStatus::Live,
            Some(("switch", switch_ms)),
        )
        .await
        .map_err(|e| e.to_string())?;
    platform
        .store
        .mark_live(&req.app, number)
        .await
        .map_err(|e| e.to_string())?;
    // A push to a stopped app is a request to run it.
    platform
        .store
        .set_app_stopped(&req.app, false)
        .await
        .map_err(|e| e.to_string())?;
    progress.line(&format!(
        "-----> Live at http://{}.localhost:{}   (deploy #{number}{})",
        req.app,
        platform.router_port(),
        previous
            .map(|p| format!(", previous #{} draining", p.number))
            .unwrap_or_default()
    ));
    Ok(DeployStatus::Live)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn platform_home(platform: &Platform) -> std::path::PathBuf {
    platform.home().to_path_buf()
}

async fn read_manifest(
    req: &DeployRequest,
    progress: &dyn Progress,
) -> Result<manifest_spec::Manifest, String> {
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
            return Err(format!(
                "no `{}` manifest at the repository root; create one with `byteport manifest init`",
                manifest_spec::MANIFEST_FILE_NAME
            ))
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(format!("reading the manifest failed: {e}")),
    };
    manifest_spec::parse(&bytes, manifest_spec::MANIFEST_FILE_NAME).map_err(|diags| {
        for line in diags.to_string().lines() {
            progress.line(line);
        }
        let first = diags
            .iter()
            .next()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))
            .unwrap_or_else(|| "invalid manifest".into());
        format!("invalid Byteport manifest: {first}")
    })
}

#[cfg(test)]
mod tests {
    use super::option;

    #[test]
    fn push_options() {
        let o = vec!["deploy=false".to_string(), "x".to_string()];
        assert_eq!(option(&o, "deploy"), Some("false"));
        assert_eq!(option(&o, "x"), Some("true"));
        assert_eq!(option(&o, "y"), None);
    }
}
