//! Live pages over Server-Sent Events, one stream per page, all read from
//! the apps' event streams ([`platform::Events::follow`]): the app page
//! gets its runtime log and build log lines (batched: whatever is ready
//! goes in one message) and fresh deploy/job tables and status when a job
//! or VM changes; the apps list gets fresh rows. The SSE id is the event
//! id, so a reconnecting browser (`Last-Event-ID`) resumes with no gap and
//! no duplicate.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use platform::events::{Event, EventId, EventKind, Follower, Item, OutputStream};
use tokio::time::Instant;

use crate::ansi;
use crate::auth::Viewer;
use crate::Ctx;

/// Most events folded into one SSE message.
const BATCH: usize = 512;
/// A burst of job events refreshes the tables once, this long after the first.
const SETTLE: Duration = Duration::from_millis(250);
/// The apps list refreshes every row this often (uptimes move).
const ROWS_EVERY: Duration = Duration::from_secs(30);

/// The id to resume after: `Last-Event-ID` (a reconnect), else `?after=`.
pub(crate) fn resume_point(headers: &HeaderMap, after: Option<EventId>) -> Option<EventId> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(after)
}

/// Where a line came from, for the log's filters.
fn source(e: &Event) -> (&str, &str) {
    match &e.kind {
        EventKind::App {
            process, stream, ..
        } => (
            process.as_str(),
            if *stream == OutputStream::Err {
                "err"
            } else {
                "out"
            },
        ),
        EventKind::Request { .. } => ("router", "out"),
        _ => ("byteport", "out"),
    }
}

/// A runtime log line as HTML: time, source, text (escaped, colours as
/// classes), with its process and stream for the filters.
pub(crate) fn log_line(e: &Event) -> String {
    let (process, stream) = source(e);
    let text = match &e.kind {
        EventKind::App { text, .. } => ansi::to_html(text),
        EventKind::Request { line } => ansi::to_html(line),
        other => ansi::to_html(&other.describe()),
    };
    let ts = platform::time::fmt_time(e.at);
    let time = ts.get(11..).unwrap_or(&ts);
    let p = ansi::escape(process);
    format!(
        "<div class=\"ln s-{stream}\" data-p=\"{p}\" data-s=\"{stream}\"><span class=\"ts\">{time}</span> <span class=\"src\">{p}</span> <span class=\"msg\">{text}</span></div>"
    )
}

/// A job's log line (progress, build output, phases, start and end).
pub(crate) fn build_line(e: &Event) -> String {
    let text = match &e.kind {
        EventKind::JobProgress { text } => ansi::to_html(text),
        EventKind::BuildOutput { text } => format!("       {}", ansi::to_html(text)),
        other => format!("-----> {}", ansi::to_html(&other.describe())),
    };
    let job = e.job.unwrap_or(0);
    format!("<div class=\"ln\" data-job=\"{job}\">{text}</div>")
}

pub(crate) fn skipped_line(n: u64) -> String {
    format!("<div class=\"ln skipped\">… {n} lines skipped (this page read too slowly)</div>")
}

/// The event's `type` as serialized (`app`, `request`, `job_progress`, …),
/// without serializing it.
pub(crate) fn event_type(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::JobQueued { .. } => "job_queued",
        EventKind::JobStarted { .. } => "job_started",
        EventKind::JobProgress { .. } => "job_progress",
        EventKind::JobPhase { .. } => "job_phase",
        EventKind::JobFinished { .. } => "job_finished",
        EventKind::BuildOutput { .. } => "build_output",
        EventKind::Vm { .. } => "vm",
        EventKind::App { .. } => "app",
        EventKind::Request { .. } => "request",
        EventKind::Note { .. } => "note",
    }
}

/// Does this event change the deploy/job tables or the app's state?
fn changes_history(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::JobQueued { .. }
            | EventKind::JobStarted { .. }
            | EventKind::JobFinished { .. }
            | EventKind::JobPhase { .. }
            | EventKind::Vm { .. }
    )
}

/// Live stream of the app page.
struct AppPage {
    ctx: Ctx,
    viewer: Viewer,
    app: String,
    follower: Follower,
    pending: VecDeque<SseEvent>,
    refresh_at: Option<Instant>,
}

impl AppPage {
    async fn next_message(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let refresh_at = self.refresh_at;
            let item = tokio::select! {
                biased;
                _ = self.ctx.stopping() => return None,
                _ = sleep_until(refresh_at), if refresh_at.is_some() => {
                    self.refresh_at = None;
                    self.refresh().await;
                    continue;
                }
                item = self.follower.next() => item?,
            };
            self.take(item);
        }
    }

    /// Folds `first` and whatever else is ready into at most two messages.
    fn take(&mut self, first: Item) {
        let (mut log, mut build) = (String::new(), String::new());
        let mut last = None;
        let mut item = Some(first);
        let mut n = 0;
        while let Some(i) = item.take() {
            match i {
                Item::Event(e) => {
                    last = Some(e.id);
                    if e.kind.is_runtime_log() {
                        log.push_str(&log_line(&e));
                    }
                    if e.job.is_some() {
                        build.push_str(&build_line(&e));
                    }
                    if changes_history(&e.kind) && self.refresh_at.is_none() {
                        self.refresh_at = Some(Instant::now() + SETTLE);
                    }
                }
                Item::Skipped(k) => {
                    log.push_str(&skipped_line(k));
                    self.refresh_at.get_or_insert(Instant::now() + SETTLE);
                }
            }
            n += 1;
            if n < BATCH {
                item = self.follower.try_next();
            }
        }
        let id = last.map(|i| i.to_string());
        for (name, data) in [("build", build), ("log", log)] {
            if !data.is_empty() {
                let mut m = SseEvent::default().event(name).data(data);
                if let Some(id) = &id {
                    m = m.id(id.clone());
                }
                self.pending.push_back(m);
            }
        }
    }

    async fn refresh(&mut self) {
        let Ok(app) = self.ctx.platform().store.require_app(&self.app).await else {
            return;
        };
        if let Ok(html) = crate::pages::history_fragment(&self.ctx, &self.viewer, &app).await {
            self.pending
                .push_back(SseEvent::default().event("history").data(html));
        }
        if let Ok(html) = crate::pages::status_fragment(&self.ctx, &self.viewer, &app).await {
            self.pending
                .push_back(SseEvent::default().event("status").data(html));
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) type SseStream =
    Sse<axum::response::sse::KeepAliveStream<BoxStream<'static, Result<SseEvent, Infallible>>>>;

/// How often an open stream checks that its viewer is still signed in
/// (a session ended elsewhere, a revoked token).
pub(crate) const RECHECK: Duration = Duration::from_secs(10);

/// `s` as an SSE response for `viewer`; it ends within [`RECHECK`] once
/// the viewer's session or token is gone, and the browser's reconnect is
/// then refused like any other request.
pub(crate) fn sse(
    ctx: &Ctx,
    viewer: &Viewer,
    s: impl Stream<Item = SseEvent> + Send + 'static,
) -> SseStream {
    let (ctx, viewer) = (ctx.clone(), viewer.clone());
    let revoked = Box::pin(async move {
        loop {
            tokio::time::sleep(RECHECK).await;
            if !crate::auth::still_signed_in(&ctx, &viewer).await {
                return;
            }
        }
    });
    Sse::new(s.take_until(revoked).map(Ok).boxed()).keep_alive(KeepAlive::default())
}

/// The app page's stream, resuming after `after`.
pub(crate) fn app_page(ctx: Ctx, viewer: Viewer, app: String, after: Option<EventId>) -> SseStream {
    let follower = ctx.platform().events.follow(&app, after);
    let page = AppPage {
        ctx,
        viewer,
        app,
        follower,
        pending: VecDeque::new(),
        refresh_at: None,
    };
    let (check_ctx, check_viewer) = (page.ctx.clone(), page.viewer.clone());
    sse(
        &check_ctx,
        &check_viewer,
        stream::unfold(page, |mut p| async move {
            p.next_message().await.map(|m| (m, p))
        }),
    )
}

/// The apps list's stream: a fresh row for each app whose jobs or VM
/// changed (and every row now and then, for uptimes).
pub(crate) fn apps_page(ctx: Ctx, viewer: Viewer, apps: Vec<String>) -> SseStream {
    let followers = apps.iter().map(|app| {
        let f = ctx.platform().events.follow(app, None);
        let name: Arc<str> = Arc::from(app.as_str());
        stream::unfold(f, move |mut f| {
            let name = name.clone();
            async move { f.next().await.map(|i| ((name, i), f)) }
        })
        .boxed()
    });
    let merged = stream::select_all(followers);
    struct Rows {
        ctx: Ctx,
        viewer: Viewer,
        apps: Vec<String>,
        merged: stream::SelectAll<BoxStream<'static, (Arc<str>, Item)>>,
        dirty: BTreeSet<String>,
        refresh_at: Option<Instant>,
        all_at: Instant,
        pending: VecDeque<SseEvent>,
    }
    let (check_ctx, check_viewer) = (ctx.clone(), viewer.clone());
    let rows = Rows {
        ctx,
        viewer,
        apps,
        merged,
        dirty: BTreeSet::new(),
        refresh_at: None,
        all_at: Instant::now() + ROWS_EVERY,
        pending: VecDeque::new(),
    };
    sse(
        &check_ctx,
        &check_viewer,
        stream::unfold(rows, |mut r| async move {
            loop {
                if let Some(m) = r.pending.pop_front() {
                    return Some((m, r));
                }
                let refresh_at = r.refresh_at;
                tokio::select! {
                    biased;
                    _ = r.ctx.stopping() => return None,
                    _ = tokio::time::sleep_until(r.all_at) => {
                        r.dirty.extend(r.apps.iter().cloned());
                        r.all_at = Instant::now() + ROWS_EVERY;
                        r.refresh_at = Some(Instant::now());
                    }
                    _ = sleep_until(refresh_at), if refresh_at.is_some() => {
                        r.refresh_at = None;
                        let running = crate::views::running(&r.ctx);
                        let dirty = std::mem::take(&mut r.dirty);
                        let mut cache = HashMap::new();
                        for app in dirty {
                            let Ok(Some(a)) = r.ctx.platform().store.app(&app).await else { continue };
                            if let Ok(s) = crate::views::summary(&r.ctx, &a, &running).await {
                                cache.insert(app.clone(), s);
                            }
                        }
                        for (app, s) in cache {
                            if let Ok(html) = crate::pages::app_row_fragment(&s, &r.viewer) {
                                r.pending.push_back(SseEvent::default().event(format!("app-{app}")).data(html));
                            }
                        }
                    }
                    item = r.merged.next(), if !r.merged.is_empty() => {
                        let (app, item) = item?;
                        let relevant = match &item {
                            Item::Event(e) => changes_history(&e.kind),
                            Item::Skipped(_) => true,
                        };
                        if relevant {
                            r.dirty.insert(app.to_string());
                            r.refresh_at.get_or_insert(Instant::now() + SETTLE);
                        }
                    }
                }
            }
        }),
    )
}

/// The API's event stream: each event as JSON, its type as the SSE event
/// name (`app`, `request`, `job_progress`, …), `skipped` when the reader
/// fell behind.
pub(crate) fn api_events(
    ctx: Ctx,
    viewer: &Viewer,
    app: String,
    after: Option<EventId>,
) -> SseStream {
    let follower = ctx.platform().events.follow(&app, after);
    sse(
        &ctx.clone(),
        viewer,
        stream::unfold((ctx, follower), |(ctx, mut f)| async move {
            let item = tokio::select! {
                biased;
                _ = ctx.stopping() => return None,
                item = f.next() => item?,
            };
            let m = match item {
                Item::Event(e) => SseEvent::default()
                    .event(event_type(&e.kind))
                    .id(e.id.to_string())
                    .data(serde_json::to_string(&*e).unwrap_or_default()),
                Item::Skipped(n) => SseEvent::default()
                    .event("skipped")
                    .data(format!("{{\"skipped\":{n}}}")),
            };
            Some((m, (ctx, f)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            id: 7,
            at: 1_795_000_000_000,
            deploy: Some(1),
            job: None,
            kind,
        }
    }

    #[test]
    fn log_lines_are_escaped_and_tagged() {
        let h = log_line(&ev(EventKind::App {
            process: "web<x>".into(),
            stream: OutputStream::Err,
            text: "\u{1b}[31m<b>boom</b>".into(),
        }));
        assert!(h.contains("data-p=\"web&lt;x&gt;\""), "{h}");
        assert!(h.contains("data-s=\"err\""), "{h}");
        assert!(
            h.contains("<span class=\"a-f1\">&lt;b&gt;boom&lt;/b&gt;</span>"),
            "{h}"
        );
        assert!(!h.contains("<b>"));
        let r = log_line(&ev(EventKind::Request {
            line: "GET / 200".into(),
        }));
        assert!(r.contains("data-p=\"router\""), "{r}");
    }

    #[test]
    fn event_types_match_their_serialized_tag() {
        let kinds = [
            EventKind::JobQueued {
                job_kind: "x".into(),
                requested_by: None,
            },
            EventKind::JobStarted {
                job_kind: "x".into(),
            },
            EventKind::JobProgress { text: "x".into() },
            EventKind::JobPhase {
                phase: "x".into(),
                ms: 1,
            },
            EventKind::JobFinished {
                verdict: platform::events::JobVerdict::Failed,
                reason: None,
            },
            EventKind::BuildOutput { text: "x".into() },
            EventKind::Vm {
                change: platform::events::VmChange::Booted,
                vm: "v".into(),
                detail: None,
            },
            EventKind::App {
                process: "web".into(),
                stream: OutputStream::Out,
                text: "x".into(),
            },
            EventKind::Request { line: "x".into() },
            EventKind::Note { text: "x".into() },
        ];
        for k in kinds {
            let v = serde_json::to_value(&k).unwrap();
            assert_eq!(v["type"], event_type(&k), "{k:?}");
        }
    }

    #[test]
    fn last_event_id_wins_over_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, Some(5)), Some(5));
        h.insert("last-event-id", "9".parse().unwrap());
        assert_eq!(resume_point(&h, Some(5)), Some(9));
        h.insert("last-event-id", "junk".parse().unwrap());
        assert_eq!(resume_point(&h, None), None);
    }
}
