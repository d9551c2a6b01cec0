//! The event stream: one typed [`Event`] for everything an operator
//! watches — jobs (queued, started, progress, phases, finished), build
//! output, VM lifecycle, the app's own output and the router's request
//! lines — per app, with ids that only grow.
//!
//! Every reader follows the same stream: `git push`'s `remote:` lines,
//! `logs -f` over SSH and on the CLI, and the dashboard's Server-Sent
//! Events. A reader that knows the last id it saw resumes after it
//! ([`Events::follow`]): stored history first, then live events, with no
//! gap and no duplicate at the seam.
//!
//! Bounded everywhere: each app keeps its last [`RECENT_EVENTS`] events in
//! memory and a [`tokio::sync::broadcast`] channel of [`LIVE_CAPACITY`]
//! for live followers; a follower that falls behind is told how many events
//! it lost ([`Item::Skipped`]) and never grows the daemon's memory. Events
//! are written behind to per-app journal files ([`journal`]), rotated by
//! size and pruned by a retention budget.
//!
//! Ids are per app: `max(previous + 1, microseconds since the epoch)`, so
//! they keep growing across restarts of `byteport up` even when the last
//! half second of events never reached the disk before a `kill -9`.
//!
//! There is no global lock on the hot path: the router's request lines and
//! an app's output take a read lock on the app table and that app's own
//! lock only.

mod follow;
pub mod journal;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use follow::{Follower, Item};
use journal::{Journal, JournalSettings};

/// Events kept in memory per app (for `logs` and for followers that resume
/// from a recent id without reading files).
pub const RECENT_EVENTS: usize = 1000;

/// Events a live follower may fall behind before it loses some.
pub const LIVE_CAPACITY: usize = 1024;

/// Longest an event waits in memory before it is written to its journal.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// An event's id: unique and increasing per app.
pub type EventId = u64;

/// One thing that happened to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-app id, increasing.
    pub id: EventId,
    /// When, Unix milliseconds.
    pub at: i64,
    /// The deploy it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<i64>,
    /// The job it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<i64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which of a process's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// What happened to a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmChange {
    /// The guest booted (its init reported ready).
    Booted,
    /// It passed its health check.
    Healthy,
    /// The router now sends the app's traffic to it.
    Switched,
    /// It ended without being asked to.
    Crashed,
    /// It was booted again after a crash.
    Restarted,
    /// It was powered off.
    Stopped,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobVerdict {
    /// It did what it was asked.
    Succeeded,
    /// It failed; the reason says why.
    Failed,
    /// Someone cancelled it.
    Cancelled,
}

/// What an [`Event`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A job was written to the queue.
    JobQueued {
        /// `deploy`, `restart`, …
        job_kind: String,
        /// Who asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<String>,
    },
    /// A worker took the job.
    JobStarted {
        /// `deploy`, `restart`, …
        job_kind: String,
    },
    /// A progress line for whoever asked (`-----> Building rootfs ...`).
    JobProgress {
        /// The line.
        text: String,
    },
    /// A phase of the job ended.
    JobPhase {
        /// `manifest`, `build`, `boot`, `health`, `switch`.
        phase: String,
        /// How long it took.
        ms: i64,
    },
    /// The job ended.
    JobFinished {
        /// How.
        verdict: JobVerdict,
        /// Why it failed or was cancelled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A line of build output.
    BuildOutput {
        /// The line.
        text: String,
    },
    /// A VM changed state.
    Vm {
        /// What happened.
        change: VmChange,
        /// The VM's name.
        vm: String,
        /// More detail (exit status, last console line, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A line an app's process printed.
    App {
        /// The process (`web`, a worker's name, or `init`).
        process: String,
        /// stdout or stderr.
        stream: OutputStream,
        /// The line.
        text: String,
    },
    /// The router served a request.
    Request {
        /// The request line as the router logs it.
        line: String,
    },
    /// BytePort's own remark about the app (restarted by its owner, …).
    Note {
        /// The remark.
        text: String,
    },
}

impl EventKind {
    /// Is this part of the app's runtime log (what `logs` shows): its
    /// output, requests, VM changes, job starts and ends and notes — not
    /// the build's output or a job's progress lines.
    pub fn is_runtime_log(&self) -> bool {
        !matches!(
            self,
            EventKind::BuildOutput { .. }
                | EventKind::JobProgress { .. }
                | EventKind::JobPhase { .. }
        )
    }
}

impl Event {
    /// The event as one line of text, the way `logs` prints it:
    /// `2026-12-02 10:00:00 web  hello`, `… router  GET / 200 …`,
    /// `… byteport  deploy #4 live`.
    pub fn to_line(&self) -> String {
        let ts = crate::time::fmt_time(self.at);
        match &self.kind {
            EventKind::App {
                process,
                stream,
                text,
            } => {
                let tag = if *stream == OutputStream::Err {
                    "!"
                } else {
                    " "
                };
                format!("{ts} {process}{tag} {text}")
            }
            EventKind::Request { line } => format!("{ts} router  {line}"),
            other => format!("{ts} byteport  {}", other.describe()),
        }
    }

    /// The text a `git push` shows for this event (`remote: …`), if any.
    pub fn progress_text(&self) -> Option<String> {
        match &self.kind {
            EventKind::JobProgress { text } => Some(text.clone()),
            EventKind::BuildOutput { text } => Some(format!("       {text}")),
            _ => None,
        }
    }
}

impl EventKind {
    /// A sentence for people.
    pub fn describe(&self) -> String {
        match self {
            EventKind::JobQueued {
                job_kind,
                requested_by,
            } => match requested_by {
                Some(by) => format!("{job_kind} queued by {by}"),
                None => format!("{job_kind} queued"),
            },
            EventKind::JobStarted { job_kind } => format!("{job_kind} started"),
            EventKind::JobProgress { text } => text.trim_start().to_string(),
            EventKind::JobPhase { phase, ms } => format!("{phase} took {ms} ms"),
            EventKind::JobFinished { verdict, reason } => match (verdict, reason) {
                (JobVerdict::Succeeded, _) => "job succeeded".into(),
                (JobVerdict::Failed, Some(r)) => format!("job failed: {r}"),
                (JobVerdict::Failed, None) => "job failed".into(),
                (JobVerdict::Cancelled, Some(r)) => format!("job cancelled: {r}"),
                (JobVerdict::Cancelled, None) => "job cancelled".into(),
            },
            EventKind::BuildOutput { text } => format!("build: {text}"),
            EventKind::Vm { change, vm, detail } => {
                let what = match change {
                    VmChange::Booted => "booted",
                    VmChange::Healthy => "is healthy",
                    VmChange::Switched => "now serves the app",
                    VmChange::Crashed => "ended unexpectedly",
                    VmChange::Restarted => "restarted after a crash",
                    VmChange::Stopped => "stopped",
                };
                match detail {
                    Some(d) => format!("VM {vm} {what} ({d})"),
                    None => format!("VM {vm} {what}"),
                }
            }
            EventKind::App { text, .. } => text.clone(),
            EventKind::Request { line } => line.clone(),
            EventKind::Note { text } => text.clone(),
        }
    }
}

/// Journal and memory limits.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Where the journals live (`$BYTEPORT_HOME/logs`).
    pub dir: PathBuf,
    /// Rotation and retention of the journal files.
    pub journal: JournalSettings,
}

/// One app's stream.
struct AppStream {
    inner: Mutex<StreamInner>,
    live: broadcast::Sender<Arc<Event>>,
}

struct StreamInner {
    last_id: EventId,
    recent: VecDeque<Arc<Event>>,
    journal: Journal,
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl StreamInner {
    fn next_id(&mut self) -> EventId {
        self.last_id = (self.last_id + 1).max(now_micros());
        self.last_id
    }
}

/// The event streams of every app; cheap to clone.
#[derive(Clone)]
pub struct Events {
    settings: Arc<EventSettings>,
    streams: Arc<RwLock<HashMap<String, Arc<AppStream>>>>,
}

impl Events {
    /// Streams journaled under `settings.dir`.
    pub fn new(settings: EventSettings) -> Events {
        Events {
            settings: Arc::new(settings),
            streams: Arc::default(),
        }
    }

    fn stream(&self, app: &str) -> Arc<AppStream> {
        if let Some(s) = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
        {
            return s.clone();
        }
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        streams
            .entry(app.to_string())
            .or_insert_with(|| {
                let journal = Journal::open(self.settings.dir.join(app), &self.settings.journal);
                let last_id = journal.last_id();
                Arc::new(AppStream {
                    inner: Mutex::new(StreamInner {
                        last_id,
                        recent: VecDeque::with_capacity(RECENT_EVENTS),
                        journal,
                    }),
                    live: broadcast::channel(LIVE_CAPACITY).0,
                })
            })
            .clone()
    }

    /// Records an event for `app` and hands it to its followers; returns
    /// its id.
    pub fn emit(
        &self,
        app: &str,
        deploy: Option<i64>,
        job: Option<i64>,
        kind: EventKind,
    ) -> EventId {
        let stream = self.stream(app);
        let mut inner = stream.inner.lock().unwrap_or_else(|p| p.into_inner());
        let event = Arc::new(Event {
            id: inner.next_id(),
            at: crate::store::now_ms(),
            deploy,
            job,
            kind,
        });
        inner.journal.append(&event);
        if inner.recent.len() >= RECENT_EVENTS {
            inner.recent.pop_front();
        }
        inner.recent.push_back(event.clone());
        // No receivers is not an error: nobody follows this app right now.
        let _ = stream.live.send(event.clone());
        event.id
    }

    /// The last id written for `app` (0: none yet).
    pub fn last_id(&self, app: &str) -> EventId {
        self.stream(app)
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_id
    }

    /// Follows `app` from just after `after` (`None`: only new events):
    /// stored events first, then live ones, each exactly once.
    pub fn follow(&self, app: &str, after: Option<EventId>) -> Follower {
        let stream = self.stream(app);
        let mut inner = stream.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = stream.live.subscribe();
        let last = inner.last_id;
        let after = after.unwrap_or(last).min(last);
        let recent: VecDeque<Arc<Event>> = inner
            .recent
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        let first_in_memory = inner.recent.front().map_or(last + 1, |e| e.id);
        // Older than memory holds: the files, written up to `last` now.
        let from_files = if after + 1 < first_in_memory {
            inner.journal.flush();
            Some((inner.journal.dir().to_path_buf(), first_in_memory))
        } else {
            None
        };
        drop(inner);
        Follower::new(after, from_files, recent, last, live)
    }

    /// The last `n` events of `app` that `keep` accepts, oldest first, and a
    /// follower for what comes after them (`logs -n N -f`).
    pub fn tail(
        &self,
        app: &str,
        n: usize,
        keep: impl Fn(&Event) -> bool,
    ) -> (Vec<Arc<Event>>, Follower) {
        let stream = self.stream(app);
        let mut inner = stream.inner.lock().unwrap_or_else(|p| p.into_inner());
        let live = stream.live.subscribe();
        let last = inner.last_id;
        let mut picked: Vec<Arc<Event>> = inner
            .recent
            .iter()
            .rev()
            .filter(|e| keep(e))
            .take(n)
            .cloned()
            .collect();
        let first_in_memory = inner.recent.front().map_or(last + 1, |e| e.id);
        let need_files = picked.len() < n && inner.journal.has_events_before(first_in_memory);
        if need_files {
            inner.journal.flush();
        }
        let dir = inner.journal.dir().to_path_buf();
        drop(inner);
        if need_files {
            let older = journal::tail(&dir, first_in_memory, n - picked.len(), &keep);
            picked.extend(older.into_iter().rev().map(Arc::new));
        }
        picked.reverse();
        let follower = Follower::new(last, None, VecDeque::new(), last, live);
        (picked, follower)
    }

    /// Events of `app` with ids in `from..=to` that `keep` accepts, from
    /// memory and the journal (a finished job's log).
    pub fn range(
        &self,
        app: &str,
        from: EventId,
        to: EventId,
        keep: impl Fn(&Event) -> bool,
    ) -> Vec<Arc<Event>> {
        let stream = self.stream(app);
        let mut inner = stream.inner.lock().unwrap_or_else(|p| p.into_inner());
        let first_in_memory = inner.recent.front().map_or(EventId::MAX, |e| e.id);
        let mut out: Vec<Arc<Event>> = Vec::new();
        if from < first_in_memory {
            inner.journal.flush();
            let dir = inner.journal.dir().to_path_buf();
            let in_memory: Vec<Arc<Event>> = inner
                .recent
                .iter()
                .filter(|e| e.id >= from && e.id <= to && keep(e))
                .cloned()
                .collect();
            drop(inner);
            for e in journal::read_from(&dir, from) {
                if e.id >= first_in_memory || e.id > to {
                    break;
                }
                if keep(&e) {
                    out.push(Arc::new(e));
                }
            }
            out.extend(in_memory);
        } else {
            out.extend(
                inner
                    .recent
                    .iter()
                    .filter(|e| e.id >= from && e.id <= to && keep(e))
                    .cloned(),
            );
        }
        out
    }

    /// Writes every buffered event to its journal (every [`FLUSH_EVERY`]
    /// from `byteport up`, and at shutdown).
    pub fn flush(&self) {
        let streams: Vec<Arc<AppStream>> = self
            .streams
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for s in streams {
            s.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .journal
                .flush();
        }
    }

    /// Forgets `app` and deletes its journal (the app was destroyed).
    pub fn remove(&self, app: &str) -> std::io::Result<()> {
        let removed = self
            .streams
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
        if let Some(s) = removed {
            s.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .journal
                .close();
        }
        match std::fs::remove_dir_all(self.settings.dir.join(app)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A sink for the runtime: the (process, stream, text) lines of one
    /// deploy's VM.
    pub fn app_sink(&self, app: &str, deploy: i64) -> runtime::drivers::AppLog {
        let events = self.clone();
        let app = app.to_string();
        Arc::new(move |process: &str, stream: &str, text: &str| {
            events.emit(
                &app,
                Some(deploy),
                None,
                EventKind::App {
                    process: process.to_string(),
                    stream: if stream == "err" {
                        OutputStream::Err
                    } else {
                        OutputStream::Out
                    },
                    text: text.to_string(),
                },
            );
        })
    }

    /// Spawns the task that writes buffered events every [`FLUSH_EVERY`].
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        let events = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                let e = events.clone();
                // File writes block; keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || e.flush()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests;
