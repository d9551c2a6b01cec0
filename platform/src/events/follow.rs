//! A follower of one app's stream: events from the journal (when it
//! resumes from further back than memory holds), then from memory, then
//! live — each id once, in order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::{journal, Event, EventId};

/// What a follower receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The next event.
    Event(Arc<Event>),
    /// This many events were lost because the follower read too slowly
    /// (`… 312 lines skipped`).
    Skipped(u64),
}

/// Events read from the journal in batches, so a follower resuming from
/// far back does not hold the whole history in memory.
struct FromFiles {
    dir: PathBuf,
    /// The next id to read.
    next: EventId,
    /// Stop before this id (memory has it).
    until: EventId,
    batch: VecDeque<Event>,
}

const FILE_BATCH: usize = 256;

impl FromFiles {
    async fn next(&mut self) -> Option<Event> {
        if self.batch.is_empty() && self.next < self.until {
            let (dir, next, until) = (self.dir.clone(), self.next, self.until);
            let batch = tokio::task::spawn_blocking(move || {
                journal::read_from(&dir, next)
                    .take_while(|e| e.id < until)
                    .take(FILE_BATCH)
                    .collect::<VecDeque<Event>>()
            })
            .await
            .unwrap_or_default();
            match batch.back() {
                Some(last) => self.next = last.id + 1,
                None => self.next = self.until,
            }
            self.batch = batch;
        }
        self.batch.pop_front()
    }
}

/// Follows one app; see [`super::Events::follow`].
pub struct Follower {
    /// The last id handed out.
    last: EventId,
    files: Option<FromFiles>,
    memory: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
}

impl Follower {
    pub(super) fn new(
        after: EventId,
        from_files: Option<(PathBuf, EventId)>,
        memory: VecDeque<Arc<Event>>,
        _last_at_subscribe: EventId,
        live: broadcast::Receiver<Arc<Event>>,
    ) -> Follower {
        Follower {
            last: after,
            files: from_files.map(|(dir, until)| FromFiles {
                dir,
                next: after + 1,
                until,
                batch: VecDeque::new(),
            }),
            memory,
            live,
        }
    }

    /// The last event id this follower has handed out (or started after).
    pub fn last_id(&self) -> EventId {
        self.last
    }

    /// The next item; `None` when the stream is gone (the app's stream was
    /// removed and nothing is left to read).
    pub async fn next(&mut self) -> Option<Item> {
        while let Some(files) = self.files.as_mut() {
            match files.next().await {
                Some(e) if e.id > self.last => {
                    self.last = e.id;
                    return Some(Item::Event(Arc::new(e)));
                }
                Some(_) => continue,
                None => self.files = None,
            }
        }
        while let Some(e) = self.memory.pop_front() {
            if e.id > self.last {
                self.last = e.id;
                return Some(Item::Event(e));
            }
        }
        loop {
            match self.live.recv().await {
                // Already handed out from memory or files.
                Ok(e) if e.id <= self.last => continue,
                Ok(e) => {
                    self.last = e.id;
                    return Some(Item::Event(e));
                }
                Err(RecvError::Lagged(n)) => return Some(Item::Skipped(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The next item if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Item> {
        if self.files.is_some() {
            return None;
        }
        while let Some(e) = self.memory.pop_front() {
            if e.id > self.last {
                self.last = e.id;
                return Some(Item::Event(e));
            }
        }
        loop {
            match self.live.try_recv() {
                Ok(e) if e.id <= self.last => continue,
                Ok(e) => {
                    self.last = e.id;
                    return Some(Item::Event(e));
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(Item::Skipped(n)),
                Err(_) => return None,
            }
        }
    }
}
