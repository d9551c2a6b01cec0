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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// `MaxStartups`: handshakes in progress at which random early drop
/// starts (`start`), its initial probability (`rate_percent`), and the
/// most handshakes in progress at once (`full`). Written `start:rate:full`
/// (`10:30:100`) or `full` alone (no random drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    /// Random early drop begins with this many handshakes in progress.
    pub start: usize,
    /// Drop probability at `start`, in percent; it rises linearly to 100
    /// at `full`.
    pub rate_percent: u8,
    /// Most handshakes in progress at once.
    pub full: usize,
}

impl Default for Startups {
    /// `10:30:100`, OpenSSH's default.
    fn default() -> Self {
        Startups {
            start: 10,
            rate_percent: 30,
            full: 100,
        }
    }
}

impl fmt::Display for Startups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate_percent, self.full)
    }
}

/// A `start:rate:full` value that does not parse or does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid startups `{value}`: {why} (write start:rate:full, e.g. 10:30:100, or just full)")]
pub struct StartupsError {
    /// What was given.
    pub value: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl FromStr for Startups {
    type Err = StartupsError;

    fn from_str(value: &str) -> Result<Startups, StartupsError> {
        let err = |why| StartupsError {
            value: value.to_string(),
            why,
        };
        let numbers: Vec<&str> = value.trim().split(':').collect();
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| err("not a number"));
        let s = match numbers.as_slice() {
            [full] => {
                let full = num(full)?;
                Startups {
                    start: full,
                    rate_percent: 100,
                    full,
                }
            }
            [start, rate, full] => Startups {
                start: num(start)?,
                rate_percent: u8::try_from(num(rate)?).map_err(|_| err("rate is over 100"))?,
                full: num(full)?,
            },
            _ => return Err(err("expected one or three numbers")),
        };
        s.check().map_err(err)?;
        Ok(s)
    }
}

impl Startups {
    /// Why these numbers cannot work, if they cannot.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.full == 0 {
            Err("full must be at least 1")
        } else if self.start > self.full {
            Err("start is above full")
        } else if self.rate_percent > 100 {
            Err("rate is over 100")
        } else {
            Ok(())
        }
    }

    /// Drop probability in percent with `pending` handshakes in progress.
    fn drop_percent(&self, pending: usize) -> u32 {
        if pending >= self.full {
            100
        } else if pending < self.start {
            0
        } else {
            let rate = u32::from(self.rate_percent);
            let span = (self.full - self.start) as u32;
            rate + (100 - rate) * (pending - self.start) as u32 / span.max(1)
        }
    }
}

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
mod tests {
    use super::*;

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::from([127, 0, 0, last]))
    }

    fn budget(start: usize, rate: u8, full: usize, per_source: usize) -> Arc<Admission> {
        Arc::new(Admission::new(
            Startups {
                start,
                rate_percent: rate,
                full,
            },
            per_source,
            2,
        ))
    }

    #[test]
    fn startups_parse_like_sshd_config() {
        assert_eq!(
            "10:30:100".parse::<Startups>().unwrap(),
            Startups::default()
        );
        let full: Startups = "50".parse().unwrap();
        assert_eq!((full.start, full.full), (50, 50));
        for bad in ["", "a:b:c", "10:30", "200:30:100", "1:101:10", "0"] {
            let e = bad.parse::<Startups>().unwrap_err();
            assert!(e.to_string().contains("e.g. 10:30:100"), "{bad}: {e}");
        }
        assert_eq!(Startups::default().to_string(), "10:30:100");
    }

    #[test]
    fn sources_group_ipv6_by_64_and_unmap_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(Source::of(mapped), v4(2));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        assert_eq!(v4(2).to_string(), "127.0.0.2");
    }

    #[test]
    fn one_address_gets_at_most_its_share() {
        let a = budget(100, 30, 100, 3);
        let held: Vec<_> = (0..3)
            .map(|_| {
                a.admit_rolling(v4(2), CancellationToken::new(), 99)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            a.admit_rolling(v4(2), CancellationToken::new(), 99).err(),
            Some(Refusal::PerSource)
        );
        // Another address is not affected.
        let other = a.admit_rolling(v4(1), CancellationToken::new(), 0).unwrap();
        assert_eq!(a.stats().handshakes, 4);
        drop(held);
        drop(other);
        assert_eq!(a.stats().handshakes, 0);
        assert_eq!(a.stats().refused_per_source, 1);
    }

    #[test]
    fn random_early_drop_spares_addresses_with_no_handshake() {
        let a = budget(2, 50, 10, 10);
        let _h: Vec<_> = (0..2)
            .map(|_| a.admit_rolling(v4(2), CancellationToken::new(), 0).unwrap())
            .collect();
        // At start the probability is the rate: a roll under it drops...
        assert_eq!(
            a.admit_rolling(v4(2), CancellationToken::new(), 49).err(),
            Some(Refusal::RandomDrop)
        );
        // ...one over it does not.
        let _k = a
            .admit_rolling(v4(2), CancellationToken::new(), 50)
            .unwrap();
        // A new address is admitted whatever the roll.
        let _n = a.admit_rolling(v4(3), CancellationToken::new(), 0).unwrap();
        assert_eq!(Startups::default().drop_percent(55), 65);
        assert_eq!(Startups::default().drop_percent(9), 0);
        assert_eq!(Startups::default().drop_percent(100), 100);
    }

    #[test]
    fn a_full_pool_makes_room_for_a_new_address_only() {
        let a = budget(4, 30, 4, 4);
        let k: Vec<CancellationToken> = (0..4).map(|_| CancellationToken::new()).collect();
        let mut held = vec![];
        // Address .2 holds three, .3 holds one.
        for (i, t) in k.iter().enumerate() {
            let src = if i < 3 { v4(2) } else { v4(3) };
            held.push(a.admit_rolling(src, t.clone(), 99).unwrap());
        }
        // .3 already has one: refused, nothing displaced.
        assert_eq!(
            a.admit_rolling(v4(3), CancellationToken::new(), 99).err(),
            Some(Refusal::Full)
        );
        assert!(k.iter().all(|t| !t.is_cancelled()));
        // A fresh address displaces the oldest handshake of .2.
        let fresh = a
            .admit_rolling(v4(1), CancellationToken::new(), 99)
            .unwrap();
        assert_eq!(fresh.displaced, Some(v4(2)));
        assert!(k[0].is_cancelled() && !k[1].is_cancelled() && !k[3].is_cancelled());
        assert_eq!(a.stats().handshakes, 4);
        // Dropping the displaced ticket later does not free a second slot.
        held.remove(0);
        assert_eq!(a.stats().handshakes, 4);
        assert_eq!(a.stats().displaced, 1);
    }

    #[test]
    fn with_one_handshake_per_address_the_oldest_makes_room() {
        let a = budget(3, 30, 3, 3);
        let k: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
        let _held: Vec<_> = k
            .iter()
            .enumerate()
            .map(|(i, t)| a.admit_rolling(v4(10 + i as u8), t.clone(), 99).unwrap())
            .collect();
        let _new = a
            .admit_rolling(v4(1), CancellationToken::new(), 99)
            .unwrap();
        assert!(k[0].is_cancelled() && !k[1].is_cancelled() && !k[2].is_cancelled());
    }

    #[test]
    fn authenticated_connections_have_their_own_budget() {
        let a = budget(1, 30, 1, 1);
        let mut first = a
            .admit_rolling(v4(1), CancellationToken::new(), 99)
            .unwrap();
        assert!(first.ticket.authenticated());
        assert!(first.ticket.authenticated(), "idempotent");
        // Its handshake slot is free again.
        let mut second = a
            .admit_rolling(v4(1), CancellationToken::new(), 99)
            .unwrap();
        assert!(second.ticket.authenticated());
        let mut third = a
            .admit_rolling(v4(1), CancellationToken::new(), 99)
            .unwrap();
        assert!(!third.ticket.authenticated(), "budget of 2 spent");
        let s = a.stats();
        assert_eq!((s.handshakes, s.authenticated, s.over_limit), (0, 2, 1));
        drop(first);
        drop(third);
        let s = a.stats();
        assert_eq!((s.authenticated, s.over_limit), (1, 0));
    }
}
