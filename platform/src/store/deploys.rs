//! Deploys: one row per push (or rollback) of an app, numbered per app.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{now_ms, q, Store, StoreError};

/// Where a deploy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// Received, not yet started.
    Pending,
    /// The manifest was read and validated (the furthest a deploy goes
    /// until the builder is wired in).
    Checked,
    /// The builder is working on it.
    Building,
    /// Its VM is booting / being health-checked.
    Booting,
    /// Serving traffic.
    Live,
    /// Was live, replaced by a newer deploy.
    Superseded,
    /// Failed; see the failure reason.
    Failed,
}

impl DeployStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Pending => "pending",
            DeployStatus::Checked => "checked",
            DeployStatus::Building => "building",
            DeployStatus::Booting => "booting",
            DeployStatus::Live => "live",
            DeployStatus::Superseded => "superseded",
            DeployStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DeployStatus {
        match s {
            "checked" => DeployStatus::Checked,
            "building" => DeployStatus::Building,
            "booting" => DeployStatus::Booting,
            "live" => DeployStatus::Live,
            "superseded" => DeployStatus::Superseded,
            "failed" => DeployStatus::Failed,
            _ => DeployStatus::Pending,
        }
    }
}

/// One deploy of an app.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Deploy {
    /// The app.
    pub app: String,
    /// Per-app sequence number, from 1.
    pub number: i64,
    /// The commit that was deployed.
    pub commit: String,
    /// The ref that was pushed (e.g. `refs/heads/main`).
    pub git_ref: String,
    /// Who pushed it.
    pub pushed_by: Option<String>,
    /// Current status.
    pub status: DeployStatus,
    /// Artifact digest, once built.
    pub artifact: Option<String>,
    /// Why it failed, if it did.
    pub failure_reason: Option<String>,
    /// Phase name → milliseconds (receive, build, boot, health, switch...).
    pub timings: BTreeMap<String, i64>,
    /// When it started, Unix ms.
    pub created_at: i64,
    /// When it finished (live or failed), Unix ms.
    pub finished_at: Option<i64>,
    /// For a rollback: the deploy whose artifact it runs again.
    pub rollback_of: Option<i64>,
    /// The job that made it (its build log is that job's events).
    pub job_id: Option<i64>,
    /// The commit's author, `Name <email>`.
    pub commit_author: Option<String>,
    /// The first line of the commit's message.
    pub commit_message: Option<String>,
}

const COLUMNS: &str = "app, number, commit_id, git_ref, pushed_by, status, artifact, failure_reason, timings_json, created_at, finished_at, rollback_of, job_id, commit_author, commit_message";

fn from_row(r: &sqlx::any::AnyRow) -> Deploy {
    let timings: String = r.get(8);
    Deploy {
        app: r.get(0),
        number: r.get(1),
        commit: r.get(2),
        git_ref: r.get(3),
        pushed_by: r.get(4),
        status: DeployStatus::parse(&r.get::<String, _>(5)),
        artifact: r.get(6),
        failure_reason: r.get(7),
        timings: serde_json::from_str(&timings).unwrap_or_default(),
        created_at: r.get(9),
        finished_at: r.get(10),
        rollback_of: r.get(11),
        job_id: r.get(12),
        commit_author: r.get(13),
        commit_message: r.get(14),
    }
}

impl Store {
    /// Records a new deploy of `app` and returns it (status `pending`).
    pub async fn start_deploy(
        &self,
        app: &str,
        commit: &str,
        git_ref: &str,
        pushed_by: Option<&str>,
        job: Option<i64>,
    ) -> Result<Deploy, StoreError> {
        self.insert_deploy(app, commit, git_ref, pushed_by, None, job)
            .await
    }

    /// Records what the deployed commit says about itself.
    pub async fn set_deploy_commit_info(
        &self,
        app: &str,
        number: i64,
        author: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deploys SET commit_author = $1, commit_message = $2 WHERE app = $3 AND number = $4",
        )
        .bind(author)
        .bind(message)
        .bind(app)
        .bind(number)
        .execute(&self.pool)
        .await
        .map_err(q("recording a commit's author"))?;
        Ok(())
    }

    /// Records a rollback of `app` to deploy `target`: a new deploy (status
    /// `booting`) with `target`'s commit and artifact. Fails if `target`
    /// does not exist or was never built.
    pub async fn start_rollback(
        &self,
        app: &str,
        target: i64,
        by: Option<&str>,
        job: Option<i64>,
    ) -> Result<Deploy, StoreError> {
        let t = self.require_deploy(app, target).await?;
        let Some(artifact) = t.artifact.as_deref() else {
            return Err(StoreError::Invalid(format!(
                "deploy #{target} of {app} has no artifact (it failed before its build finished); pick another with `byteport deploys {app}`"
            )));
        };
        self.insert_deploy(
            app,
            &t.commit,
            &t.git_ref,
            by,
            Some((artifact, target)),
            job,
        )
        .await
    }

    async fn insert_deploy(
        &self,
        app: &str,
        commit: &str,
        git_ref: &str,
        pushed_by: Option<&str>,
        rollback: Option<(&str, i64)>,
        job: Option<i64>,
    ) -> Result<Deploy, StoreError> {
        self.require_app(app).await?;
        let mut tx = self.begin_write().await.map_err(q("starting a deploy"))?;
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM deploys WHERE app = $1")
                .bind(app)
                .fetch_one(&mut *tx)
                .await
                .map_err(q("numbering a deploy"))?
                .get(0);
        let status = match rollback {
            Some(_) => DeployStatus::Booting,
            None => DeployStatus::Pending,
        };
        sqlx::query(
            "INSERT INTO deploys (app, number, commit_id, git_ref, pushed_by, status, timings_json, created_at, artifact, rollback_of, job_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(app)
        .bind(next)
        .bind(commit)
        .bind(git_ref)
        .bind(pushed_by.map(String::from))
        .bind(status.as_str())
        .bind("{}")
        .bind(now_ms())
        .bind(rollback.map(|(artifact, _)| artifact.to_string()))
        .bind(rollback.map(|(_, target)| target))
        .bind(job)
        .execute(&mut *tx)
        .await
        .map_err(q("starting a deploy"))?;
        tx.commit().await.map_err(q("starting a deploy"))?;
        self.deploy(app, next)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "deploy",
                name: format!("{app}#{next}"),
            })
    }

    /// Moves a deploy to `status`, recording a phase timing if given.
    pub async fn set_deploy_status(
        &self,
        app: &str,
        number: i64,
        status: DeployStatus,
        phase_timing: Option<(&str, i64)>,
    ) -> Result<(), StoreError> {
        let mut d = self.require_deploy(app, number).await?;
        if let Some((phase, ms)) = phase_timing {
            d.timings.insert(phase.to_string(), ms);
        }
        let finished = matches!(status, DeployStatus::Live | DeployStatus::Failed).then(now_ms);
        sqlx::query(
            "UPDATE deploys SET status = $1, timings_json = $2, finished_at = COALESCE($3, finished_at) WHERE app = $4 AND number = $5",
        )
        .bind(status.as_str())
        .bind(serde_json::to_string(&d.timings).unwrap_or_else(|_| "{}".into()))
        .bind(finished)
        .bind(app)
        .bind(number)
        .execute(&self.pool)
        .await
        .map_err(q("updating a deploy"))?;
        Ok(())
    }

    /// Records the built artifact's digest.
    pub async fn set_deploy_artifact(
        &self,
        app: &str,
        number: i64,
        digest: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deploys SET artifact = $1 WHERE app = $2 AND number = $3")
            .bind(digest)
            .bind(app)
            .bind(number)
            .execute(&self.pool)
            .await
            .map_err(q("recording an artifact"))?;
        Ok(())
    }

    /// Marks a deploy failed with a reason a person can act on.
    pub async fn fail_deploy(
        &self,
        app: &str,
        number: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deploys SET status = 'failed', failure_reason = $1, finished_at = $2 WHERE app = $3 AND number = $4",
        )
        .bind(reason)
        .bind(now_ms())
        .bind(app)
        .bind(number)
        .execute(&self.pool)
        .await
        .map_err(q("failing a deploy"))?;
        Ok(())
    }

    /// Makes `number` the live deploy; the previously live one becomes superseded.
    pub async fn mark_live(&self, app: &str, number: i64) -> Result<(), StoreError> {
        let mut tx = self
            .begin_write()
            .await
            .map_err(q("switching the live deploy"))?;
        sqlx::query("UPDATE deploys SET status = 'superseded' WHERE app = $1 AND status = 'live' AND number <> $2")
            .bind(app)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(q("switching the live deploy"))?;
        sqlx::query("UPDATE deploys SET status = 'live', finished_at = COALESCE(finished_at, $1) WHERE app = $2 AND number = $3")
            .bind(now_ms())
            .bind(app)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(q("switching the live deploy"))?;
        tx.commit().await.map_err(q("switching the live deploy"))?;
        Ok(())
    }

    /// Makes `number` the live deploy, the app running, and — in the same
    /// transaction — ends the job that did it as succeeded (when `job` is
    /// `(id, node)` and that node still holds it). A `kill -9` of the
    /// daemon therefore leaves either the old deploy live and the job
    /// running (to be marked interrupted), or the new one live and the job
    /// succeeded — never a live deploy whose job was interrupted.
    pub async fn commit_live(
        &self,
        app: &str,
        number: i64,
        job: Option<(i64, &str)>,
    ) -> Result<(), StoreError> {
        let ctx = "switching the live deploy";
        let mut tx = self.begin_write().await.map_err(q(ctx))?;
        let now = now_ms();
        if let Some((id, node)) = job {
            let held = sqlx::query(
                "UPDATE jobs SET state = 'succeeded', finished_at = $1, lease_until = NULL \
                 WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
            )
            .bind(now)
            .bind(id)
            .bind(node)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
            if held.rows_affected() != 1 {
                tx.rollback().await.map_err(q(ctx))?;
                return Err(StoreError::Invalid(format!(
                    "job {id} is no longer this node's (it was marked interrupted); deploy #{number} of {app} was not made live"
                )));
            }
        }
        sqlx::query("UPDATE deploys SET status = 'superseded' WHERE app = $1 AND status = 'live' AND number <> $2")
            .bind(app)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
        sqlx::query("UPDATE deploys SET status = 'live', finished_at = COALESCE(finished_at, $1) WHERE app = $2 AND number = $3")
            .bind(now)
            .bind(app)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
        sqlx::query("UPDATE apps SET desired_state = 'running' WHERE name = $1")
            .bind(app)
            .execute(&mut *tx)
            .await
            .map_err(q(ctx))?;
        tx.commit().await.map_err(q(ctx))?;
        Ok(())
    }

    /// One deploy.
    pub async fn deploy(&self, app: &str, number: i64) -> Result<Option<Deploy>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deploys WHERE app = $1 AND number = $2"
        )))
        .bind(app)
        .bind(number)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a deploy"))?;
        Ok(row.as_ref().map(from_row))
    }

    async fn require_deploy(&self, app: &str, number: i64) -> Result<Deploy, StoreError> {
        self.deploy(app, number)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "deploy",
                name: format!("{app}#{number}"),
            })
    }

    /// Deploys of an app, newest first.
    pub async fn list_deploys(&self, app: &str, limit: i64) -> Result<Vec<Deploy>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deploys WHERE app = $1 ORDER BY number DESC LIMIT $2"
        )))
        .bind(app)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing deploys"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The live deploy of an app, if any.
    pub async fn live_deploy(&self, app: &str) -> Result<Option<Deploy>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deploys WHERE app = $1 AND status = 'live' ORDER BY number DESC LIMIT 1"
        )))
        .bind(app)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("finding the live deploy"))?;
        Ok(row.as_ref().map(from_row))
    }
}
