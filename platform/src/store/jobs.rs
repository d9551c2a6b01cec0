//! Job rows: the queue's durable half. Claiming works the way a
//! multi-node system needs it to: on PostgreSQL the candidates are locked
//! with `FOR UPDATE SKIP LOCKED`, on SQLite the claim is one transaction;
//! on both, the partial unique index `jobs_one_running_per_app` refuses a
//! second running job of one app, whoever tries. A running job holds a
//! lease that its node renews; a lease that runs out marks the job
//! `interrupted` (its node died).
//!
//! The typed view of a job (its kind and arguments, its failure) is
//! [`crate::jobs`]'s; this module stores text.

use sqlx::Row;

use super::{is_unique_violation, now_ms, q, Backend, Store, StoreError};

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Queue-wide id, increasing.
    pub id: i64,
    /// The app it changes.
    pub app: String,
    /// `deploy`, `restart`, …
    pub kind: String,
    /// The kind's arguments, JSON.
    pub args_json: String,
    /// Who asked (a user, or `byteport` for crash recovery).
    pub requested_by: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// When it was queued, Unix ms.
    pub created_at: i64,
    /// Not before this time (crash-recovery backoff).
    pub run_after: i64,
    /// When a worker took it.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// Its overall deadline once running, ms.
    pub deadline_ms: i64,
    /// The only node that may run it (a push's repository lives there).
    pub node: Option<String>,
    /// The node running it.
    pub lease_owner: Option<String>,
    /// How many times a worker took it (1 in a healthy system).
    pub attempts: i64,
    /// Someone asked to cancel it.
    pub cancel_requested: bool,
    /// Why it failed: `rejected`, `build`, `boot`, `health`, `deadline`,
    /// `interrupted`, `cancelled`, `precondition`, `internal`.
    pub failure_kind: Option<String>,
    /// The failure in words.
    pub failure_message: Option<String>,
    /// The deploy it made or ran, once known.
    pub deploy_number: Option<i64>,
    /// Its first event's id (its log starts there).
    pub first_event: Option<i64>,
    /// Its last event's id.
    pub last_event: Option<i64>,
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// The app.
    pub app: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its arguments, JSON.
    pub args_json: &'a str,
    /// Who asks.
    pub requested_by: Option<&'a str>,
    /// Only this node may run it.
    pub node: Option<&'a str>,
    /// Not before this time (Unix ms).
    pub run_after: i64,
    /// Deadline once running.
    pub deadline_ms: i64,
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was still queued: now cancelled, it will never run.
    Dequeued,
    /// It is running: its worker was asked to stop.
    Requested,
    /// It had already ended.
    AlreadyFinished,
}

const COLUMNS: &str = "id, app, kind, args_json, requested_by, state, created_at, run_after, started_at, finished_at, deadline_ms, node, lease_owner, attempts, cancel_requested, failure_kind, failure_message, deploy_number, first_event, last_event";

fn from_row(r: &sqlx::any::AnyRow) -> JobRow {
    JobRow {
        id: r.get(0),
        app: r.get(1),
        kind: r.get(2),
        args_json: r.get(3),
        requested_by: r.get(4),
        state: r.get(5),
        created_at: r.get(6),
        run_after: r.get(7),
        started_at: r.get(8),
        finished_at: r.get(9),
        deadline_ms: r.get(10),
        node: r.get(11),
        lease_owner: r.get(12),
        attempts: r.get(13),
        cancel_requested: r.get::<i64, _>(14) != 0,
        failure_kind: r.get(15),
        failure_message: r.get(16),
        deploy_number: r.get(17),
        first_event: r.get(18),
        last_event: r.get(19),
    }
}

/// Candidates for a claim: the oldest due job of each app that has none
/// running, which this node may run.
const CANDIDATES: &str = "SELECT j.id FROM jobs j \
    WHERE j.state = 'queued' AND j.run_after <= $1 AND (j.node IS NULL OR j.node = $2) \
    AND j.id = (SELECT MIN(q.id) FROM jobs q WHERE q.app = j.app AND q.state = 'queued' AND q.run_after <= $1) \
    AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.app = j.app AND r.state = 'running') \
    ORDER BY j.id LIMIT $3";

impl Store {
    /// Writes a job to the queue (state `queued`) and returns it.
    pub async fn enqueue_job(&self, job: &NewJob<'_>) -> Result<JobRow, StoreError> {
        // Ids are MAX + 1, portable between SQLite and PostgreSQL; two
        // nodes picking the same id is a unique violation, tried again.
        for _ in 0..20 {
            let now = now_ms();
            let r = sqlx::query(
                "INSERT INTO jobs (id, app, kind, args_json, requested_by, state, created_at, run_after, deadline_ms, node) \
                 SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, 'queued', $5, $6, $7, $8 FROM jobs RETURNING id",
            )
            .bind(job.app)
            .bind(job.kind)
            .bind(job.args_json)
            .bind(job.requested_by.map(String::from))
            .bind(now)
            .bind(job.run_after)
            .bind(job.deadline_ms)
            .bind(job.node.map(String::from))
            .fetch_one(&self.pool)
            .await;
            let id: i64 = match r {
                Ok(row) => row.get(0),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(q("queueing a job")(e)),
            };
            return self.job(id).await?.ok_or_else(|| StoreError::NotFound {
                kind: "job",
                name: id.to_string(),
            });
        }
        Err(StoreError::Invalid(
            "the job queue is too busy to take a job right now; try again".into(),
        ))
    }

    /// Takes up to `max` due jobs for `node`, marking them running with a
    /// lease until `lease_until`. Never two of one app, never one twice.
    pub async fn claim_jobs(
        &self,
        node: &str,
        max: usize,
        lease_until: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let select = match self.backend {
            Backend::Postgres => format!("{CANDIDATES} FOR UPDATE OF j SKIP LOCKED"),
            Backend::Sqlite => CANDIDATES.to_string(),
        };
        let mut claimed = Vec::new();
        // One job per transaction: the candidate is locked (PostgreSQL) and
        // taken in the same transaction; a unique violation (another node
        // took a job of the same app) only rolls back that one claim.
        for _ in 0..max.max(1) * 2 {
            if claimed.len() >= max {
                break;
            }
            let mut tx = self.begin_write().await.map_err(q("claiming jobs"))?;
            let now = now_ms();
            let candidate: Option<i64> = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                .bind(now)
                .bind(node)
                .bind(1_i64)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("claiming jobs"))?
                .map(|r| r.get(0));
            let Some(id) = candidate else {
                tx.commit().await.map_err(q("claiming jobs"))?;
                break;
            };
            // Read after the candidate query: that query saw the app's
            // previous job ended (committed), so this start is never
            // recorded before that end (PostgreSQL's READ COMMITTED takes
            // a snapshot per statement, not at BEGIN).
            let started = now_ms().max(now);
            let r = sqlx::query(
                "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, started_at = $3, attempts = attempts + 1 \
                 WHERE id = $4 AND state = 'queued'",
            )
            .bind(node)
            .bind(lease_until)
            .bind(started)
            .bind(id)
            .execute(&mut *tx)
            .await;
            match r {
                Ok(done) if done.rows_affected() == 1 => {
                    tx.commit().await.map_err(q("claiming a job"))?;
                    if let Some(job) = self.job(id).await? {
                        claimed.push(job);
                    }
                }
                Ok(_) => tx.rollback().await.map_err(q("claiming a job"))?,
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await.map_err(q("claiming a job"))?
                }
                Err(e) => return Err(q("claiming a job")(e)),
            }
        }
        Ok(claimed)
    }

    /// Extends the leases of `node`'s running jobs; returns each still
    /// held job's id and whether someone asked to cancel it. A job missing
    /// from the answer is no longer this node's (its lease ran out).
    pub async fn renew_leases(
        &self,
        node: &str,
        until: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE lease_owner = $2 AND state = 'running'",
        )
        .bind(until)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(q("renewing job leases"))?;
        let rows = sqlx::query(
            "SELECT id, cancel_requested FROM jobs WHERE lease_owner = $1 AND state = 'running'",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await
        .map_err(q("renewing job leases"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<i64, _>(1) != 0))
            .collect())
    }

    /// Ends a running job held by `node`. Returns false when the job was
    /// not this node's any more (it was marked interrupted meanwhile).
    pub async fn finish_job(
        &self,
        id: i64,
        node: &str,
        state: &str,
        failure: Option<(&str, &str)>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2, failure_kind = $3, failure_message = $4, lease_until = NULL \
             WHERE id = $5 AND lease_owner = $6 AND state = 'running'",
        )
        .bind(state)
        .bind(now_ms())
        .bind(failure.map(|(k, _)| k.to_string()))
        .bind(failure.map(|(_, m)| m.to_string()))
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(q("finishing a job"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Records the deploy a job made and where its events start.
    pub async fn set_job_progress(
        &self,
        id: i64,
        deploy_number: Option<i64>,
        first_event: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET deploy_number = COALESCE($1, deploy_number), first_event = COALESCE($2, first_event) WHERE id = $3",
        )
        .bind(deploy_number)
        .bind(first_event)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("recording a job's progress"))?;
        Ok(())
    }

    /// Records a finished job's last event id.
    pub async fn set_job_last_event(&self, id: i64, last_event: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET last_event = $1 WHERE id = $2")
            .bind(last_event)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("recording a job's last event"))?;
        Ok(())
    }

    /// Cancels a queued job, or asks the worker of a running one to stop.
    pub async fn request_cancel(&self, id: i64) -> Result<CancelOutcome, StoreError> {
        let dequeued = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, failure_kind = 'cancelled', failure_message = 'cancelled before it started' \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("cancelling a job"))?;
        if dequeued.rows_affected() == 1 {
            return Ok(CancelOutcome::Dequeued);
        }
        let requested =
            sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'")
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("cancelling a job"))?;
        Ok(if requested.rows_affected() == 1 {
            CancelOutcome::Requested
        } else {
            CancelOutcome::AlreadyFinished
        })
    }

    /// Marks failed (`interrupted`) every job `node` was running: called
    /// when a node starts again after dying with jobs in hand.
    pub async fn interrupt_jobs_of(&self, node: &str) -> Result<Vec<JobRow>, StoreError> {
        self.interrupt(
            "lease_owner = $1 AND state = 'running'",
            |qy| qy.bind(node.to_string()),
            "byteport up stopped while it ran (killed or crashed); nothing it did half-way was kept",
        )
        .await
    }

    /// Marks failed (`interrupted`) every running job whose lease ran out
    /// (its node is gone).
    pub async fn interrupt_expired(&self, now: i64) -> Result<Vec<JobRow>, StoreError> {
        self.interrupt(
            "state = 'running' AND lease_until < $1",
            |qy| qy.bind(now),
            "the node running it stopped renewing its lease (it died or lost the database)",
        )
        .await
    }

    async fn interrupt<'q>(
        &self,
        filter: &'static str,
        bind: impl Fn(
            sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        why: &str,
    ) -> Result<Vec<JobRow>, StoreError> {
        let rows = bind(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE {filter}"
        ))))
        .fetch_all(&self.pool)
        .await
        .map_err(q("finding interrupted jobs"))?;
        let mut out = Vec::new();
        for r in rows {
            let job = from_row(&r);
            let done = sqlx::query(
                "UPDATE jobs SET state = 'failed', finished_at = $1, failure_kind = 'interrupted', failure_message = $2, lease_until = NULL \
                 WHERE id = $3 AND state = 'running'",
            )
            .bind(now_ms())
            .bind(why)
            .bind(job.id)
            .execute(&self.pool)
            .await
            .map_err(q("marking a job interrupted"))?;
            if done.rows_affected() == 1 {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a job"))?;
        Ok(row.as_ref().map(from_row))
    }

    /// An app's jobs, newest first.
    pub async fn list_jobs(&self, app: &str, limit: i64) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE app = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(app)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing jobs"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// An app's queued and running jobs, oldest first.
    pub async fn active_jobs(&self, app: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM jobs WHERE app = $1 AND state IN ('queued', 'running') ORDER BY id"
        )))
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing active jobs"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// How many jobs wait in the queue (all apps).
    pub async fn queue_length(&self) -> Result<i64, StoreError> {
        sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await
            .map(|r| r.get(0))
            .map_err(q("counting queued jobs"))
    }
}
