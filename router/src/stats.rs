//! Counters the router keeps about its connections, cheap enough to bump
//! on every accept and close (relaxed atomics, no lock), for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of [`crate::Router::stats`]. Totals count since the router
/// started. Per-request figures (statuses, outcomes, durations) come from
/// the [`crate::RequestRecord`]s instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Client connections open now (upgraded ones included).
    pub open_connections: u64,
    /// Client connections accepted and served.
    pub accepted_connections: u64,
    /// Connections refused because `max_connections` were open.
    pub refused_at_capacity: u64,
    /// Connections refused because their address had
    /// `max_connections_per_client` open.
    pub refused_per_client: u64,
    /// Connections closed because a request head did not arrive whole
    /// within `header_read_timeout` (silent sockets, slowloris).
    pub closed_slow_head: u64,
    /// Connections closed after `idle_timeout` with nothing moving.
    pub closed_idle: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub refused_at_capacity: AtomicU64,
    pub refused_per_client: AtomicU64,
    pub closed_slow_head: AtomicU64,
    pub closed_idle: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, open: usize) -> RouterStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RouterStats {
            open_connections: open as u64,
            accepted_connections: get(&self.accepted),
            refused_at_capacity: get(&self.refused_at_capacity),
            refused_per_client: get(&self.refused_per_client),
            closed_slow_head: get(&self.closed_slow_head),
            closed_idle: get(&self.closed_idle),
        }
    }
}
