//! The dispatcher: claims due jobs from the store (its own node's at once,
//! other nodes' on a short poll), runs each on its own task with a
//! deadline and a cancel handle, renews the leases of the jobs it runs and
//! marks jobs of dead nodes `interrupted`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::{Job, JobError, JobSettings, JobSpec, JobState};
use crate::events::{EventKind, JobVerdict};
use crate::store::{now_ms, CancelOutcome, NewJob};
use crate::Platform;

/// The queue's in-memory half on one node.
pub struct Queue {
    /// This node's id (`$BYTEPORT_HOME/node-id`).
    pub node: String,
    /// Limits and deadlines.
    pub settings: JobSettings,
    wake: Arc<Notify>,
    running: Mutex<HashMap<i64, Arc<JobControl>>>,
    slots: Arc<Semaphore>,
}

impl Queue {
    /// A queue for `node`.
    pub fn new(node: String, settings: JobSettings) -> Queue {
        let slots = Arc::new(Semaphore::new(settings.max_parallel.max(1)));
        Queue {
            node,
            settings,
            wake: Arc::new(Notify::new()),
            running: Mutex::new(HashMap::new()),
            slots,
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<JobControl>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Jobs running on this node now.
    pub fn running_ids(&self) -> Vec<i64> {
        self.running().keys().copied().collect()
    }
}

/// A running job's handle: cancel it, or learn it passed its point of no
/// return.
pub struct JobControl {
    /// The job.
    pub id: i64,
    /// Its app.
    pub app: String,
    stop: tokio_util::sync::CancellationToken,
    why: Mutex<Option<JobError>>,
    committed: AtomicBool,
}

impl JobControl {
    fn new(id: i64, app: &str) -> JobControl {
        JobControl {
            id,
            app: app.to_string(),
            stop: tokio_util::sync::CancellationToken::new(),
            why: Mutex::new(None),
            committed: AtomicBool::new(false),
        }
    }

    /// Asks the job to stop with `why`; false when it is past its point of
    /// no return (it will finish).
    pub fn cancel(&self, why: JobError) -> bool {
        if self.committed.load(Ordering::SeqCst) {
            return false;
        }
        let mut slot = self.why.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(why);
        self.stop.cancel();
        true
    }

    /// Marks the point of no return (the switch begins). Fails when the
    /// job was cancelled before it got there.
    pub fn commit(&self) -> Result<(), JobError> {
        // The lock orders this against `cancel`: either the cancel lands
        // first (and we stop) or the commit does (and the cancel is refused).
        let why = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = why.as_ref() {
            return Err(e.clone());
        }
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Is it past its point of no return?
    pub fn is_committed(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
    }

    /// `Err` with the reason once cancelled.
    pub fn check(&self) -> Result<(), JobError> {
        match self.why.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(e) if !self.is_committed() => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Resolves when the job is asked to stop; returns why.
    pub async fn stopped(&self) -> JobError {
        self.stop.cancelled().await;
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or(JobError::Cancelled {
                reason: "stopped".into(),
            })
    }

    /// Runs `work` unless the job is stopped first (then `work` is
    /// dropped: only for work that is safe to abandon).
    pub async fn guard<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, JobError> {
        self.check()?;
        tokio::select! {
            biased;
            why = self.stopped(), if !self.is_committed() => Err(why),
            value = work => Ok(value),
        }
    }
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReport {
    /// It had not started; it never will.
    Dequeued(Job),
    /// It was running and is stopping.
    Stopping(Job),
    /// It is past its point of no return; it will finish.
    TooLate(Job),
    /// It had already ended.
    AlreadyFinished(Job),
}

impl Platform {
    /// Writes a job to the queue and wakes the dispatcher. `here_only`
    /// pins it to this node (a push: the repository lives here).
    pub async fn enqueue(
        &self,
        app: &str,
        spec: JobSpec,
        requested_by: Option<&str>,
        here_only: bool,
    ) -> Result<Job, JobError> {
        self.enqueue_at(app, spec, requested_by, here_only, now_ms())
            .await
    }

    /// [`Platform::enqueue`], not to run before `run_after` (Unix ms).
    pub async fn enqueue_at(
        &self,
        app: &str,
        spec: JobSpec,
        requested_by: Option<&str>,
        here_only: bool,
        run_after: i64,
    ) -> Result<Job, JobError> {
        let deadline = match spec {
            JobSpec::Deploy { .. } => self.queue.settings.build_deadline,
            _ => self.queue.settings.deadline,
        };
        let row = self
            .store
            .enqueue_job(&NewJob {
                app,
                kind: spec.kind(),
                args_json: &spec.args_json(),
                requested_by,
                node: here_only.then_some(self.queue.node.as_str()),
                run_after,
                deadline_ms: deadline.as_millis() as i64,
            })
            .await?;
        let job = Job::from_row(row);
        if matches!(spec, JobSpec::Deploy { .. }) {
            self.cancel_portfolio_jobs(app, job.id).await;
        }
        self.events.emit(
            app,
            None,
            Some(job.id),
            EventKind::JobQueued {
                job_kind: spec.kind().to_string(),
                requested_by: requested_by.map(String::from),
            },
        );
        self.queue.wake.notify_one();
        Ok(job)
    }

    /// A new deploy makes drafting a page for an older one pointless, and
    /// must not wait behind it: its portfolio jobs are cancelled (the new
    /// deploy queues its own).
    async fn cancel_portfolio_jobs(&self, app: &str, except: i64) {
        let Ok(active) = self.store.active_jobs(app).await else {
            return;
        };
        for j in active
            .into_iter()
            .filter(|j| j.kind == "portfolio" && j.id != except)
        {
            let _ = self.cancel(app, Some(j.id), "a newer deploy").await;
        }
    }

    /// A job by id, if it belongs to `app`.
    pub async fn job(&self, app: &str, id: i64) -> Result<Option<Job>, JobError> {
        Ok(self
            .store
            .job(id)
            .await?
            .filter(|j| j.app == app)
            .map(Job::from_row))
    }

    /// Cancels `app`'s job `id`, or its running (else oldest queued) job.
    pub async fn cancel(
        &self,
        app: &str,
        id: Option<i64>,
        by: &str,
    ) -> Result<CancelReport, JobError> {
        let job = match id {
            Some(id) => self.job(app, id).await?.ok_or_else(|| JobError::Rejected {
                message: format!("{app} has no job {id} (see byteport deploys {app})"),
            })?,
            None => {
                let active = self.store.active_jobs(app).await?;
                let pick = active
                    .iter()
                    .find(|j| j.state == "running")
                    .or_else(|| active.first())
                    .cloned()
                    .ok_or_else(|| JobError::Rejected {
                        message: format!("{app} has no queued or running job to cancel"),
                    })?;
                Job::from_row(pick)
            }
        };
        let reason = format!("by {by}");
        let local = self.queue.running().get(&job.id).cloned();
        if let Some(control) = &local {
            if control.is_committed() {
                return Ok(CancelReport::TooLate(job));
            }
        }
        match self.store.request_cancel(job.id).await? {
            CancelOutcome::Dequeued => {
                self.events.emit(
                    app,
                    None,
                    Some(job.id),
                    EventKind::JobFinished {
                        verdict: JobVerdict::Cancelled,
                        reason: Some(format!("cancelled {reason} before it started")),
                    },
                );
                Ok(CancelReport::Dequeued(job))
            }
            CancelOutcome::Requested => match local {
                Some(control) if !control.cancel(JobError::Cancelled { reason }) => {
                    Ok(CancelReport::TooLate(job))
                }
                // A job on another node sees the request at its next lease
                // renewal.
                _ => Ok(CancelReport::Stopping(job)),
            },
            CancelOutcome::AlreadyFinished => {
                let job = self.job(app, job.id).await?.unwrap_or(job);
                Ok(CancelReport::AlreadyFinished(job))
            }
        }
    }

    /// The cancel handle of a job running on this node.
    pub fn job_control(&self, id: i64) -> Option<Arc<JobControl>> {
        self.queue.running().get(&id).cloned()
    }

    /// After a start: every job this node was running when it died is
    /// marked `interrupted` (its deploy too), and says so in its app's
    /// events.
    pub async fn interrupt_previous_run(&self) -> Result<Vec<Job>, JobError> {
        let rows = self.store.interrupt_jobs_of(&self.queue.node).await?;
        let mut out = Vec::new();
        for row in rows {
            let job = Job::from_row(row);
            self.after_interrupt(&job).await;
            out.push(job);
        }
        Ok(out)
    }

    async fn after_interrupt(&self, job: &Job) {
        let why = "interrupted: byteport up stopped while it ran";
        if let Some(number) = job.deploy_number {
            if let Ok(Some(d)) = self.store.deploy(&job.app, number).await {
                if !matches!(
                    d.status,
                    crate::store::DeployStatus::Live | crate::store::DeployStatus::Superseded
                ) {
                    let _ = self.store.fail_deploy(&job.app, number, why).await;
                }
            }
        }
        self.events.emit(
            &job.app,
            job.deploy_number,
            Some(job.id),
            EventKind::JobFinished {
                verdict: JobVerdict::Failed,
                reason: Some(why.to_string()),
            },
        );
    }

    /// Starts the dispatcher and the lease keeper; they run until
    /// `byteport up` stops.
    pub fn spawn_dispatcher(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(platform) = this.upgrade() else {
                    return;
                };
                let poll = platform.queue.settings.poll;
                let wake = platform.queue.wake.clone();
                platform.dispatch_once().await;
                drop(platform);
                let _ = tokio::time::timeout(poll, wake.notified()).await;
            }
        });
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(platform) = this.upgrade() else {
                    return;
                };
                let every = platform.queue.settings.lease / 3;
                platform.keep_leases().await;
                drop(platform);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// Claims as many due jobs as there are free slots and starts them.
    async fn dispatch_once(self: &Arc<Self>) {
        let free = self.queue.slots.available_permits();
        if free == 0 {
            return;
        }
        let lease_until = now_ms() + self.queue.settings.lease.as_millis() as i64;
        let claimed = match self
            .store
            .claim_jobs(&self.queue.node, free, lease_until)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %super::error_chain(&e), "cannot claim jobs");
                return;
            }
        };
        for row in claimed {
            let Ok(permit) = self.queue.slots.clone().try_acquire_owned() else {
                break;
            };
            let job = Job::from_row(row);
            let control = Arc::new(JobControl::new(job.id, &job.app));
            self.queue.running().insert(job.id, control.clone());
            let this = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                this.run_job(job, control).await;
                // A slot is free: look for the next job now.
                this.queue.wake.notify_one();
            });
        }
    }

    /// Renews this node's leases, passes on cancel requests made through
    /// other nodes, and marks jobs of nodes that stopped renewing as
    /// interrupted.
    async fn keep_leases(&self) {
        let until = now_ms() + self.queue.settings.lease.as_millis() as i64;
        match self.store.renew_leases(&self.queue.node, until).await {
            Ok(held) => {
                let held: HashMap<i64, bool> = held.into_iter().collect();
                let local: Vec<Arc<JobControl>> = self.queue.running().values().cloned().collect();
                for control in local {
                    match held.get(&control.id) {
                        Some(true) => {
                            control.cancel(JobError::Cancelled {
                                reason: "by request".into(),
                            });
                        }
                        Some(false) => {}
                        None => {
                            control.cancel(JobError::Interrupted {
                                message: "this node lost its lease on the job".into(),
                            });
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %super::error_chain(&e), "cannot renew job leases"),
        }
        match self.store.interrupt_expired(now_ms()).await {
            Ok(rows) => {
                for row in rows {
                    let job = Job::from_row(row);
                    tracing::warn!(job = job.id, app = %job.app, "job interrupted: its node stopped renewing its lease");
                    self.after_interrupt(&job).await;
                }
            }
            Err(e) => tracing::error!(error = %super::error_chain(&e), "cannot check job leases"),
        }
    }

    /// Runs one claimed job to its end and records how it ended.
    async fn run_job(self: &Arc<Self>, job: Job, control: Arc<JobControl>) {
        let first = self.events.emit(
            &job.app,
            None,
            Some(job.id),
            EventKind::JobStarted {
                job_kind: job.spec.kind().to_string(),
            },
        );
        if let Err(e) = self
            .store
            .set_job_progress(job.id, None, Some(first as i64))
            .await
        {
            tracing::warn!(job = job.id, error = %e, "cannot record the job's first event");
        }
        let deadline = match job.spec {
            JobSpec::Deploy { .. } => self.queue.settings.build_deadline,
            _ => self.queue.settings.deadline,
        };
        let timer = {
            let control = control.clone();
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                control.cancel(JobError::Deadline {
                    deadline_ms: deadline.as_millis() as i64,
                });
            })
        };
        let ctx = super::run::JobCtx::new(self.clone(), &job, control.clone());
        let result = self.execute(&ctx, &job).await;
        timer.abort();
        let deploy = ctx.deploy();
        let (state, failure, verdict, reason) = match &result {
            Ok(()) => (JobState::Succeeded, None, JobVerdict::Succeeded, None),
            Err(e @ JobError::Cancelled { .. }) => (
                JobState::Cancelled,
                Some(e.clone()),
                JobVerdict::Cancelled,
                Some(e.to_string()),
            ),
            Err(e) => (
                JobState::Failed,
                Some(e.clone()),
                JobVerdict::Failed,
                Some(e.to_string()),
            ),
        };
        crate::metrics::metrics().job_finished(job.spec.kind(), state.as_str());
        // The store first, then the event: a requester that sees the end
        // event finds the job ended in the store.
        let stored = failure.as_ref().map(|f| (f.kind(), f.stored_message()));
        // A job's end must be written, or its app's queue stalls behind it:
        // try again through a busy or briefly unreachable database.
        let mut wait = Duration::from_millis(50);
        for attempt in 1.. {
            match self
                .store
                .finish_job(
                    job.id,
                    &self.queue.node,
                    state.as_str(),
                    stored.as_ref().map(|(k, m)| (*k, m.as_str())),
                )
                .await
            {
                Ok(true) => break,
                Ok(false) => {
                    // Either its deploy committed it already (commit_live),
                    // or it was marked interrupted meanwhile.
                    let now = self.store.job(job.id).await.ok().flatten();
                    if now.as_ref().map(|j| j.state.as_str()) != Some(state.as_str()) {
                        tracing::warn!(job = job.id, app = %job.app, "job ended after it was marked interrupted");
                    }
                    break;
                }
                Err(e) if attempt < 40 => {
                    tracing::warn!(job = job.id, attempt, error = %super::error_chain(&e), "cannot record how a job ended yet; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(job = job.id, error = %super::error_chain(&e), "cannot record how a job ended; its lease will run out");
                    break;
                }
            }
        }
        let last = self.events.emit(
            &job.app,
            deploy,
            Some(job.id),
            EventKind::JobFinished { verdict, reason },
        );
        if let Err(e) = self.store.set_job_last_event(job.id, last as i64).await {
            tracing::warn!(job = job.id, error = %e, "cannot record the job's last event");
        }
        if matches!((&job.spec, &result), (JobSpec::Destroy, Ok(()))) {
            if let Err(e) = self.events.remove(&job.app) {
                tracing::warn!(app = %job.app, error = %e, "cannot remove the app's event journal");
            }
        }
        self.queue.running().remove(&job.id);
        if result.is_err() && ctx.took_down_live() {
            // It stopped the old VM (volumes: one VM at a time) and did not
            // bring its own: the live deploy comes back.
            if let Err(e) = self
                .enqueue_at(
                    &job.app,
                    JobSpec::Recover { crashes: 0 },
                    Some("byteport"),
                    true,
                    crate::store::now_ms(),
                )
                .await
            {
                tracing::error!(app = %job.app, error = %e, "cannot queue the live deploy's return after a failed job");
            }
        }
        match &result {
            Ok(()) => {
                tracing::info!(job = job.id, app = %job.app, kind = job.spec.kind(), "job succeeded")
            }
            Err(e) => {
                tracing::info!(job = job.id, app = %job.app, kind = job.spec.kind(), error = %e, "job did not succeed")
            }
        }
    }
}
