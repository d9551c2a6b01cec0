//! The job queue: every change to an app is a [`JobSpec`] written to the
//! store first ([`crate::store::JobRow`]), then run by that app's single
//! worker ([`dispatch`]). One app runs one job at a time; different apps
//! run in parallel, up to [`JobSettings::max_parallel`].
//!
//! Whoever asked follows the job's events ([`follow`]): a push prints them
//! as `remote:` lines, the CLI and SSH print them, the dashboard streams
//! them. A job can be cancelled until its point of no return (the switch);
//! every job has a deadline; a job whose node dies is marked
//! `interrupted` when the node comes back or its lease runs out.

pub mod dispatch;
pub mod follow;
pub mod run;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::JobRow;

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Build and run a pushed commit.
    Deploy {
        /// The commit (hex).
        commit: String,
        /// The pushed ref.
        git_ref: String,
        /// `git push -o` options.
        #[serde(default)]
        push_options: Vec<String>,
    },
    /// A fresh VM of the live deploy (today's config vars and secrets).
    Restart,
    /// Run an earlier deploy's artifact again as a new deploy.
    Rollback {
        /// Which deploy (default: the previous good one).
        target: Option<i64>,
    },
    /// Stop serving; stays stopped across restarts of `byteport up`.
    Stop,
    /// Start a stopped app.
    Start,
    /// Delete the app: VM, routes, deploys, config, repository, logs.
    Destroy,
    /// Boot the live deploy again after its VM crashed.
    Recover {
        /// Crashes in a row so far (for the backoff).
        crashes: u32,
    },
    /// Boot the live deploy after `byteport up` started.
    Restore,
    /// Draft a portfolio page for a live deploy (screenshots, facts,
    /// write-up) for the owner's review.
    Portfolio {
        /// The deploy it is for (`None`: regenerate from the live one).
        deploy: Option<i64>,
        /// The deployed commit.
        commit: String,
    },
    /// Run N web VMs (`byteport scale APP web=N`).
    Scale {
        /// How many.
        web: u32,
    },
    /// `run --stop-app`: stop the app, run a command in a one-off VM with
    /// its volumes, boot it again.
    Run {
        /// The command line.
        command: String,
    },
    /// Back up, restore or destroy one of the app's volumes.
    Volume {
        /// What to do.
        action: crate::volumes::VolumeAction,
    },
}

impl JobSpec {
    /// The kind's name as stored and shown (`deploy`, `restart`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Deploy { .. } => "deploy",
            JobSpec::Restart => "restart",
            JobSpec::Rollback { .. } => "rollback",
            JobSpec::Stop => "stop",
            JobSpec::Start => "start",
            JobSpec::Destroy => "destroy",
            JobSpec::Recover { .. } => "recover",
            JobSpec::Restore => "restore",
            JobSpec::Portfolio { .. } => "portfolio",
            JobSpec::Volume { .. } => "volume",
            JobSpec::Scale { .. } => "scale",
            JobSpec::Run { .. } => "run",
        }
    }

    fn args_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    fn from_row(row: &JobRow) -> Result<JobSpec, JobError> {
        serde_json::from_str(&row.args_json).map_err(|e| JobError::Internal {
            message: format!("job #{} has unreadable arguments: {e}", row.id),
        })
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its app's worker.
    Queued,
    /// Running.
    Running,
    /// Done.
    Succeeded,
    /// Failed; see its failure.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl JobState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Queued,
        }
    }

    /// Has the job ended?
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Why a job did not succeed. Each says what failed and, where there is
/// one, what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobError {
    /// The input was refused (manifest, missing deploy, wrong state).
    #[error("{message}")]
    Rejected {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The build failed.
    #[error("build failed: {message}")]
    Build {
        /// The builder's reason.
        message: String,
    },
    /// The VM did not boot or did not pass its health check.
    #[error("{message}")]
    Boot {
        /// What happened.
        message: String,
    },
    /// The release command failed (non-zero exit, timeout, crash).
    #[error("release failed: {message}")]
    Release {
        /// What happened, and which version serves.
        message: String,
    },
    /// Cancelled (by a user, or because the push that asked went away).
    #[error("cancelled: {reason}")]
    Cancelled {
        /// By whom or why.
        reason: String,
    },
    /// It ran past its deadline and was stopped.
    #[error("stopped after its deadline of {}", humantime(*deadline_ms))]
    Deadline {
        /// The deadline.
        deadline_ms: i64,
    },
    /// `byteport up` stopped while it ran.
    #[error("interrupted: {message}")]
    Interrupted {
        /// What happened.
        message: String,
    },
    /// BytePort itself failed (the store, a task); not the user's doing.
    #[error("internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

fn humantime(ms: i64) -> String {
    if ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.0} s", ms as f64 / 1000.0)
    }
}

impl JobError {
    /// The stored failure kind.
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::Rejected { .. } => "rejected",
            JobError::Build { .. } => "build",
            JobError::Boot { .. } => "boot",
            JobError::Release { .. } => "release",
            JobError::Cancelled { .. } => "cancelled",
            JobError::Deadline { .. } => "deadline",
            JobError::Interrupted { .. } => "interrupted",
            JobError::Internal { .. } => "internal",
        }
    }

    fn from_stored(kind: &str, message: String) -> JobError {
        match kind {
            "rejected" | "precondition" => JobError::Rejected { message },
            "build" => JobError::Build {
                message: message
                    .strip_prefix("build failed: ")
                    .unwrap_or(&message)
                    .to_string(),
            },
            "boot" | "health" => JobError::Boot { message },
            "release" => JobError::Release { message },
            "cancelled" => JobError::Cancelled {
                reason: message
                    .strip_prefix("cancelled: ")
                    .unwrap_or(&message)
                    .to_string(),
            },
            "deadline" => JobError::Deadline {
                deadline_ms: message.parse().unwrap_or(0),
            },
            "interrupted" => JobError::Interrupted {
                message: message
                    .strip_prefix("interrupted: ")
                    .unwrap_or(&message)
                    .to_string(),
            },
            _ => JobError::Internal { message },
        }
    }

    /// The message stored with the job (read back by `from_stored`).
    fn stored_message(&self) -> String {
        match self {
            JobError::Deadline { deadline_ms } => deadline_ms.to_string(),
            JobError::Build { message } => message.clone(),
            JobError::Cancelled { reason } => reason.clone(),
            JobError::Interrupted { message } => message.clone(),
            JobError::Rejected { message }
            | JobError::Boot { message }
            | JobError::Release { message }
            | JobError::Internal { message } => message.clone(),
        }
    }
}

impl From<crate::store::StoreError> for JobError {
    fn from(e: crate::store::StoreError) -> JobError {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::Invalid(_)
            | StoreError::DomainTaken { .. } => JobError::Rejected {
                message: e.to_string(),
            },
            other => JobError::Internal {
                message: error_chain(&other),
            },
        }
    }
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A job, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Queue-wide id.
    pub id: i64,
    /// The app.
    pub app: String,
    /// What it does.
    pub spec: JobSpec,
    /// Who asked.
    pub requested_by: Option<String>,
    /// Where it is.
    pub state: JobState,
    /// Queued at (Unix ms).
    pub created_at: i64,
    /// Started at.
    pub started_at: Option<i64>,
    /// Ended at.
    pub finished_at: Option<i64>,
    /// Why it failed or was cancelled.
    pub failure: Option<JobError>,
    /// The deploy it made or ran.
    pub deploy_number: Option<i64>,
    /// Times a worker took it.
    pub attempts: i64,
    /// The node that ran it.
    pub ran_on: Option<String>,
    /// First event id of its log.
    pub first_event: Option<i64>,
    /// Last event id of its log.
    pub last_event: Option<i64>,
}

impl Job {
    /// Reads a stored row.
    pub fn from_row(row: JobRow) -> Job {
        let spec = JobSpec::from_row(&row).unwrap_or(JobSpec::Restart);
        let failure = row
            .failure_kind
            .as_deref()
            .map(|k| JobError::from_stored(k, row.failure_message.clone().unwrap_or_default()));
        Job {
            id: row.id,
            app: row.app,
            spec,
            requested_by: row.requested_by,
            state: JobState::parse(&row.state),
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            failure,
            deploy_number: row.deploy_number,
            attempts: row.attempts,
            ran_on: row.lease_owner,
            first_event: row.first_event,
            last_event: row.last_event,
        }
    }

    /// `deploy #41`, `restart`, … for messages.
    pub fn title(&self) -> String {
        match (&self.spec, self.deploy_number) {
            (JobSpec::Deploy { .. }, Some(n)) => format!("deploy #{n}"),
            (spec, _) => format!("{} (job {})", spec.kind(), self.id),
        }
    }
}

/// Queue settings.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Jobs of different apps running at once on this node.
    pub max_parallel: usize,
    /// Overall deadline of a job that builds (deploy).
    pub build_deadline: Duration,
    /// Overall deadline of every other job.
    pub deadline: Duration,
    /// How long a running job's lease lasts without renewal.
    pub lease: Duration,
    /// How often the dispatcher looks for jobs queued by other nodes (its
    /// own are picked up at once).
    pub poll: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            max_parallel: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            build_deadline: Duration::from_secs(15 * 60),
            deadline: Duration::from_secs(10 * 60),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests;
