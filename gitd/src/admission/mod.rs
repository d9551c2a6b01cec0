//! Who gets a connection slot, decided at `accept()` before a single byte
//! is sent: the budget that keeps authenticated users served while one
//! address (or many) floods the port.
//!
//! Two pools, as OpenSSH's `MaxStartups` and `PerSourceMaxStartups` do it,
//! with one change for a shared PaaS:
//!
//! - **Handshakes** (connected, not yet authenticated) are capped per
//!   source address ([`Source`]: an IPv4 address, or an IPv6 /64) and
//!   globally ([`Startups`]). Past `start` handshakes in progress, a new
//!   connection from an address that already has one is dropped with a
//!   probability rising from `rate` % to 100 % at `full` (random early
//!   drop). A connection from an address with *no* handshake in progress
//!   is never dropped at random; when the pool is full it displaces the
//!   oldest handshake of the address holding the most. So a client is
//!   only ever crowded out by an attacker who keeps at least as many
//!   handshakes open from *each* of `full` distinct addresses, and even
//!   then it is displaced only after `full - 1` newer connections from
//!   fresh addresses arrived during its handshake.
//! - **Authenticated** connections have their own budget
//!   (`max_connections`), which no unauthenticated connection can touch.
//!
//! Every handshake is also closed hard at its deadline (see
//! [`crate::limits::watchdog`]), so whatever a flood holds it holds for
//! seconds, not minutes.

mod startups;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

pub use startups::{Startups, StartupsError};

/// Where a connection comes from, as far as limits care: an IPv4 address,
/// or the /64 network of an IPv6 address (one host usually owns a whole
/// /64). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl Source {
    /// The source of a peer address.
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(prefix)
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            Source::V6(p) => {
                let mut full = [0u8; 16];
                full[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(full))
            }
        }
    }
}

/// Why a connection was closed at `accept()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address already has `max_startups_per_source` handshakes in
    /// progress.
    PerSource,
    /// The handshake pool is full and its address already has one there.
    Full,
    /// Random early drop (between `start` and `full`).
    RandomDrop,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::PerSource => "too many handshakes in progress from this address",
            Refusal::Full => "the handshake pool is full",
            Refusal::RandomDrop => "random early drop (many handshakes in progress)",
        })
    }
}

/// Counters since the server started, and the pools now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Handshakes in progress now.
    pub handshakes: usize,
    /// Authenticated connections within `max_connections` now.
    pub authenticated: usize,
    /// Authenticated connections told the server is full, now.
    pub over_limit: usize,
    /// Closed at accept: per-address handshake cap.
    pub refused_per_source: u64,
    /// Closed at accept: handshake pool full.
    pub refused_full: u64,
    /// Closed at accept: random early drop.
    pub random_drops: u64,
    /// Handshakes closed to make room for an address with none.
    pub displaced: u64,
    /// Closed at the handshake deadline (no key exchange in time).
    pub handshake_deadline: u64,
    /// Closed at the login deadline (no authentication in time).
    pub login_deadline: u64,
    /// WARN lines written about refused or closed connections.
    pub warn_lines: u64,
    /// Such WARN lines left out by the rate limit.
    pub warn_suppressed: u64,
}

/// A handshake in the pool: its id (older = smaller) and how to close it.
type Pending = (u64, CancellationToken);

#[derive(Default)]
struct Table {
    next_id: u64,
    sources: HashMap<Source, VecDeque<Pending>>,
    handshakes: usize,
    authenticated: usize,
    over_limit: usize,
}

impl Table {
    /// The oldest handshake of the address holding the most.
    fn victim(&self) -> Option<Source> {
        self.sources
            .iter()
            .filter_map(|(s, q)| {
                q.front()
                    .map(|(id, _)| (q.len(), std::cmp::Reverse(*id), *s))
            })
            .max()
            .map(|(_, _, s)| s)
    }
}

/// The connection budget (see the module docs).
pub struct Admission {
    startups: Startups,
    per_source: usize,
    max_authenticated: usize,
    table: Mutex<Table>,
    refused_per_source: AtomicU64,
    refused_full: AtomicU64,
    random_drops: AtomicU64,
    displaced: AtomicU64,
    pub(crate) handshake_deadline: AtomicU64,
    pub(crate) login_deadline: AtomicU64,
}

/// An admitted connection: what it was admitted as, and a handshake that
/// had to make room for it (already closed).
pub struct Admitted {
    /// Its slot, freed on drop.
    pub ticket: Ticket,
    /// The handshake displaced for it, if any.
    pub displaced: Option<Source>,
}

impl Admission {
    /// A budget of `startups` handshakes, at most `per_source` from one
    /// address, and `max_authenticated` authenticated connections.
    pub fn new(startups: Startups, per_source: usize, max_authenticated: usize) -> Admission {
        Admission {
            startups,
            per_source: per_source.max(1),
            max_authenticated,
            table: Mutex::new(Table::default()),
            refused_per_source: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            random_drops: AtomicU64::new(0),
            displaced: AtomicU64::new(0),
            handshake_deadline: AtomicU64::new(0),
            login_deadline: AtomicU64::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `source` (closed through `kill` if it
    /// is displaced later), or says why not.
    pub fn admit(
        self: &Arc<Self>,
        source: Source,
        kill: CancellationToken,
    ) -> Result<Admitted, Refusal> {
        self.admit_rolling(source, kill, rand::random_range(0..100u32))
    }

    /// [`Admission::admit`] with the random early drop's dice roll
    /// (0..100) given.
    fn admit_rolling(
        self: &Arc<Self>,
        source: Source,
        kill: CancellationToken,
        roll: u32,
    ) -> Result<Admitted, Refusal> {
        let mut t = self.table();
        let mine = t.sources.get(&source).map_or(0, VecDeque::len);
        let mut displaced = None;
        if mine >= self.per_source {
            self.refused_per_source.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerSource);
        }
        if t.handshakes >= self.startups.full {
            // Only an address with no handshake in progress makes room.
            let victim = if mine == 0 { t.victim() } else { None };
            let Some(victim) = victim else {
                self.refused_full.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Full);
            };
            let q = t.sources.get_mut(&victim).expect("victim has handshakes");
            let (_, token) = q.pop_front().expect("victim has handshakes");
            if q.is_empty() {
                t.sources.remove(&victim);
            }
            t.handshakes -= 1;
            token.cancel();
            self.displaced.fetch_add(1, Ordering::Relaxed);
            displaced = Some(victim);
        } else if mine > 0 && roll < self.startups.drop_percent(t.handshakes) {
            self.random_drops.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::RandomDrop);
        }
        let id = t.next_id;
        t.next_id += 1;
        t.sources.entry(source).or_default().push_back((id, kill));
        t.handshakes += 1;
        drop(t);
        Ok(Admitted {
            ticket: Ticket {
                admission: self.clone(),
                id,
                source,
                stage: Stage::Handshake,
            },
            displaced,
        })
    }

    /// The pools now and the counters so far (the WARN counters are the
    /// caller's).
    pub fn stats(&self) -> ConnectionStats {
        let t = self.table();
        ConnectionStats {
            handshakes: t.handshakes,
            authenticated: t.authenticated,
            over_limit: t.over_limit,
            refused_per_source: self.refused_per_source.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            random_drops: self.random_drops.load(Ordering::Relaxed),
            displaced: self.displaced.load(Ordering::Relaxed),
            handshake_deadline: self.handshake_deadline.load(Ordering::Relaxed),
            login_deadline: self.login_deadline.load(Ordering::Relaxed),
            warn_lines: 0,
            warn_suppressed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    Authenticated,
    OverLimit,
}

/// A connection's place in the budget; dropping it frees the place.
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    source: Source,
    stage: Stage,
}

impl Ticket {
    /// Moves the connection from the handshake pool to the authenticated
    /// budget. `false`: that budget is spent, so the connection may only
    /// learn that the server is full. Calling it again changes nothing.
    pub fn authenticated(&mut self) -> bool {
        if self.stage != Stage::Handshake {
            return self.stage == Stage::Authenticated;
        }
        let mut t = self.admission.table();
        remove_pending(&mut t, self.source, self.id);
        if t.authenticated < self.admission.max_authenticated {
            t.authenticated += 1;
            self.stage = Stage::Authenticated;
            true
        } else {
            t.over_limit += 1;
            self.stage = Stage::OverLimit;
            false
        }
    }

    /// Authenticated connections told the server is full, now (a bound on
    /// them keeps one user from piling them up).
    pub fn over_limit_now(&self) -> usize {
        self.admission.table().over_limit
    }

    /// Where the connection comes from.
    pub fn source(&self) -> Source {
        self.source
    }
}

fn remove_pending(t: &mut Table, source: Source, id: u64) {
    if let Some(q) = t.sources.get_mut(&source) {
        if let Some(i) = q.iter().position(|(x, _)| *x == id) {
            q.remove(i);
            t.handshakes -= 1;
        }
        if q.is_empty() {
            t.sources.remove(&source);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.admission.table();
        match self.stage {
            // Displaced handshakes are gone from the table already.
            Stage::Handshake => remove_pending(&mut t, self.source, self.id),
            Stage::Authenticated => t.authenticated -= 1,
            Stage::OverLimit => t.over_limit -= 1,
        }
    }
}

#[cfg(test)]
mod tests;
