//! The deploy pipeline a push to a deploy branch runs, as far as the landed
//! components go: record the deploy, read and check the manifest, (build,
//! boot, health, switch as they land), and report each phase with its time.

use std::path::PathBuf;
use std::time::Instant;

use crate::store::{DeployStatus, Store};

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
pub async fn run(store: &Store, req: &DeployRequest, progress: &dyn Progress) -> Result<DeployOutcome, String> {
    if option(&req.push_options, "deploy") == Some("false") {
        progress.line(&format!("-----> {}: deploy=false: ref updated, nothing deployed", req.app));
        return Ok(DeployOutcome {
            number: None,
            status: None,
        });
    }
    let deploy = store
        .start_deploy(&req.app, &req.commit, &req.git_ref, req.pushed_by.as_deref())
        .await
        .map_err(|e| format!("cannot record the deploy: {e}"))?;
    let number = deploy.number;
    let fail = |reason: String| async move {
        if let Err(e) = store.fail_deploy(&req.app, number, &reason).await {
            tracing::error!(app = %req.app, number, error = %e, "cannot record deploy failure");
        }
        Err(reason)
    };

    // Manifest.
    let started = Instant::now();
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
            return fail(format!(
                "no `{}` manifest at the repository root; create one with `byteport manifest init`",
                manifest_spec::MANIFEST_FILE_NAME
            ))
            .await
        }
        Ok(Err(e)) => return fail(e.to_string()).await,
        Err(e) => return fail(format!("reading the manifest panicked: {e}")).await,
    };
    let manifest = match manifest_spec::parse(&bytes, manifest_spec::MANIFEST_FILE_NAME) {
        Ok(m) => m,
        Err(diags) => {
            for line in diags.to_string().lines() {
                progress.line(line);
            }
            let first = diags
                .iter()
                .next()
                .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))
                .unwrap_or_else(|| "invalid manifest".into());
            return fail(format!("invalid Byteport manifest: {first}")).await;
        }
    };
    let manifest_ms = started.elapsed().as_millis() as i64;
    progress.line(&format!("-----> {}", manifest.summary()));
    if manifest.app != req.app {
        progress.line(&format!(
            "       note: the manifest names the app `{}`; deploying as `{}` (the repository's name)",
            manifest.app, req.app
        ));
    }
    store
        .set_deploy_status(&req.app, number, DeployStatus::Checked, Some(("manifest", manifest_ms)))
        .await
        .map_err(|e| format!("cannot record the deploy: {e}"))?;
    progress.line(&format!(
        "-----> deploy #{number} recorded; building and booting land with the builder and runtime"
    ));
    Ok(DeployOutcome {
        number: Some(number),
        status: Some(DeployStatus::Checked),
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
