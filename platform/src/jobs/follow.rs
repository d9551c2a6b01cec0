//! Following a job from its requester's side: its progress lines as they
//! come, a word about what it waits for, and its verdict.

use std::time::Duration;

use super::{Job, JobError, JobSpec};
use crate::events::{EventKind, Follower, Item};
use crate::store::now_ms;
use crate::Platform;

/// What a requester sees next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobUpdate {
    /// A progress line (`-----> Building rootfs ...`, build output).
    Line(String),
    /// Lines lost because the requester read too slowly.
    Skipped(u64),
    /// The job ended: the job as stored, or why it did not succeed.
    Done(Box<Result<Job, JobError>>),
}

/// Follows one job; see [`Platform::submit`].
pub struct JobFollower {
    /// The job, as queued.
    pub job: Job,
    events: Follower,
    pending: std::collections::VecDeque<String>,
    done: bool,
}

/// How often a follower asks the store whether its job ended elsewhere
/// (another node, or its end event was skipped).
const RECHECK: Duration = Duration::from_secs(2);

impl Platform {
    /// Queues `spec` for `app` and follows it from its very first event.
    pub async fn submit(
        &self,
        app: &str,
        spec: JobSpec,
        requested_by: Option<&str>,
        here_only: bool,
    ) -> Result<JobFollower, JobError> {
        let mark = self.events.last_id(app);
        let job = self.enqueue(app, spec, requested_by, here_only).await?;
        let events = self.events.follow(app, Some(mark));
        let mut pending = std::collections::VecDeque::new();
        if let Some(line) = self.waiting_line(&job).await {
            pending.push_back(line);
        }
        Ok(JobFollower {
            job,
            events,
            pending,
            done: false,
        })
    }

    /// `waiting for deploy #41 of hello (running 12 s)` when other jobs of
    /// the app come first.
    async fn waiting_line(&self, job: &Job) -> Option<String> {
        let active = self.store.active_jobs(&job.app).await.ok()?;
        let ahead: Vec<Job> = active
            .into_iter()
            .filter(|j| j.id < job.id)
            .map(Job::from_row)
            .collect();
        let first = ahead.first()?;
        let what = match &first.spec {
            JobSpec::Deploy { .. } => match first.deploy_number {
                Some(n) => format!("deploy #{n} of {}", job.app),
                None => format!("a deploy of {}", job.app),
            },
            spec => format!("{} of {}", spec.kind(), job.app),
        };
        let since = match first.started_at {
            Some(t) => format!("running {} s", (now_ms() - t).max(0) / 1000),
            None => "queued".to_string(),
        };
        let more = match ahead.len() {
            1 => String::new(),
            n => format!(", {} more ahead", n - 1),
        };
        Some(format!("waiting for {what} ({since}{more})"))
    }

    /// The job as stored now.
    async fn job_state(&self, job: &Job) -> Option<Job> {
        self.store
            .job(job.id)
            .await
            .ok()
            .flatten()
            .map(Job::from_row)
    }
}

impl JobFollower {
    /// The next update; after [`JobUpdate::Done`], `None`.
    pub async fn next(&mut self, platform: &Platform) -> Option<JobUpdate> {
        if let Some(line) = self.pending.pop_front() {
            return Some(JobUpdate::Line(line));
        }
        if self.done {
            return None;
        }
        // Once the store says the job ended, its last lines and end event
        // are at most a moment behind (they are written after the store's
        // record); wait that moment for them, then end regardless (the job
        // may have run on another node, whose events we never see).
        let mut ending: Option<std::time::Instant> = None;
        loop {
            let wait = if ending.is_some() {
                Duration::from_millis(200)
            } else {
                RECHECK
            };
            let item = match tokio::time::timeout(wait, self.events.next()).await {
                Ok(Some(item)) => item,
                Ok(None) | Err(_) => {
                    match ending {
                        Some(since) if since.elapsed() >= Duration::from_secs(2) => {
                            if let Some(done) = self.ended(platform).await {
                                return Some(done);
                            }
                        }
                        Some(_) => {}
                        None => {
                            if self.is_final(platform).await {
                                ending = Some(std::time::Instant::now());
                            }
                        }
                    }
                    continue;
                }
            };
            match item {
                Item::Skipped(n) => {
                    if let Some(done) = self.ended(platform).await {
                        return Some(done);
                    }
                    return Some(JobUpdate::Skipped(n));
                }
                Item::Event(e) if e.job == Some(self.job.id) => match &e.kind {
                    EventKind::JobFinished { .. } => {
                        if let Some(done) = self.ended(platform).await {
                            return Some(done);
                        }
                    }
                    _ => {
                        if let Some(text) = e.progress_text() {
                            return Some(JobUpdate::Line(text));
                        }
                    }
                },
                Item::Event(_) => {}
            }
        }
    }

    async fn is_final(&self, platform: &Platform) -> bool {
        platform
            .job_state(&self.job)
            .await
            .is_some_and(|j| j.state.is_final())
    }

    /// `Done` if the job has ended (as the store says).
    async fn ended(&mut self, platform: &Platform) -> Option<JobUpdate> {
        let job = platform.job_state(&self.job).await?;
        if !job.state.is_final() {
            return None;
        }
        self.done = true;
        self.job = job.clone();
        Some(JobUpdate::Done(Box::new(match job.failure.clone() {
            Some(e) if job.state != super::JobState::Succeeded => Err(e),
            _ => Ok(job),
        })))
    }

    /// Follows to the end, handing each line to `line`; returns the verdict.
    pub async fn wait(mut self, platform: &Platform, line: impl Fn(&str)) -> Result<Job, JobError> {
        while let Some(update) = self.next(platform).await {
            match update {
                JobUpdate::Line(l) => line(&l),
                JobUpdate::Skipped(n) => line(&format!("… {n} lines skipped")),
                JobUpdate::Done(result) => return *result,
            }
        }
        Err(JobError::Internal {
            message: "the job's event stream ended before the job".into(),
        })
    }
}
