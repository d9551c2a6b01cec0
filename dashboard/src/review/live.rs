//! The review page's one event stream: the progress of the app's
//! `portfolio` jobs (a regenerate, or the refresh after a deploy) as
//! they run, then — when one ends — a fresh versions table and a notice
//! naming the new version. The edit form is never replaced under the
//! reader's hands: the notice links to the new version instead.
//!
//! Read from the app's event stream like every live page; the SSE id is
//! the event id, so a reconnect (`Last-Event-ID`) resumes without a gap.

use std::collections::{HashSet, VecDeque};

use axum::response::sse::Event as SseEvent;
use futures::stream;
use platform::events::{EventId, EventKind, Follower, Item, JobVerdict};

use crate::auth::Viewer;
use crate::live::{build_line, skipped_line, sse, SseStream};
use crate::Ctx;

/// The job kind whose progress the review page shows.
pub(crate) const PORTFOLIO_JOB: &str = "portfolio";

/// How a portfolio job ended, as its last event said.
pub(crate) struct JobEnd {
    /// The job.
    pub id: i64,
    /// `succeeded`, `failed` or `cancelled`.
    pub verdict: &'static str,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
}

struct ReviewStream {
    ctx: Ctx,
    viewer: Viewer,
    app: String,
    follower: Follower,
    /// `portfolio` jobs of this app seen queued or running.
    jobs: HashSet<i64>,
    pending: VecDeque<SseEvent>,
}

impl ReviewStream {
    async fn next_message(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let item = tokio::select! {
                biased;
                _ = self.ctx.stopping() => return None,
                item = self.follower.next() => item?,
            };
            match item {
                Item::Event(e) => {
                    if let EventKind::JobQueued { job_kind, .. }
                    | EventKind::JobStarted { job_kind } = &e.kind
                    {
                        if job_kind == PORTFOLIO_JOB {
                            self.jobs.extend(e.job);
                        }
                    }
                    let Some(job) = e.job.filter(|j| self.jobs.contains(j)) else {
                        continue;
                    };
                    self.pending.push_back(
                        SseEvent::default()
                            .event("job")
                            .id(e.id.to_string())
                            .data(build_line(&e)),
                    );
                    if let EventKind::JobFinished { verdict, reason } = &e.kind {
                        self.jobs.remove(&job);
                        let verdict = match verdict {
                            JobVerdict::Succeeded => "succeeded",
                            JobVerdict::Failed => "failed",
                            JobVerdict::Cancelled => "cancelled",
                        };
                        let ended = JobEnd {
                            id: job,
                            verdict,
                            reason: reason.clone(),
                        };
                        self.refresh(Some(ended)).await;
                    }
                }
                Item::Skipped(n) => {
                    self.pending
                        .push_back(SseEvent::default().event("job").data(skipped_line(n)));
                    self.refresh(None).await;
                }
            }
        }
    }

    /// The versions table and a notice, after a job ended (or lines were lost).
    async fn refresh(&mut self, job: Option<JobEnd>) {
        match crate::pages::review_fragments(&self.ctx, &self.viewer, &self.app, job).await {
            Ok((versions, notice)) => {
                self.pending
                    .push_back(SseEvent::default().event("versions").data(versions));
                self.pending
                    .push_back(SseEvent::default().event("notice").data(notice));
            }
            Err(e) => tracing::warn!(app = %self.app, error = %e, "review page refresh failed"),
        }
    }
}

/// The review page's stream, resuming after `after`; `jobs` are the
/// app's `portfolio` jobs already queued or running when it starts.
pub(crate) fn review_page(
    ctx: Ctx,
    viewer: Viewer,
    app: String,
    after: Option<EventId>,
    jobs: HashSet<i64>,
) -> SseStream {
    let follower = ctx.platform().events.follow(&app, after);
    let s = ReviewStream {
        ctx,
        viewer,
        app,
        follower,
        jobs,
        pending: VecDeque::new(),
    };
    let (check_ctx, check_viewer) = (s.ctx.clone(), s.viewer.clone());
    sse(
        &check_ctx,
        &check_viewer,
        stream::unfold(
            s,
            |mut s| async move { s.next_message().await.map(|m| (m, s)) },
        ),
    )
}
