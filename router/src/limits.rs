//! Connection caps: at most `max_connections` open, and at most
//! `max_connections_per_client` from one client address. Counted per
//! connection (accept and close), never per request; the per-address
//! counts are spread over shards so closes on different threads rarely
//! meet on one lock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::canonical;

const SHARDS: usize = 16;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    AtCapacity,
    PerClient,
}

pub(crate) struct Limits {
    max: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    per_ip: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
}

/// One open connection's place under the caps, given back on drop.
pub(crate) struct Slot {
    limits: Arc<Limits>,
    /// The address counted against, unless exempt.
    key: Option<IpAddr>,
}

/// The address a client is counted under: IPv4 as is (IPv4-mapped IPv6
/// too), IPv6 by its /64 — one host usually holds a whole /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

fn shard_of(key: &IpAddr) -> usize {
    let n = match key {
        IpAddr::V4(v4) => u32::from(*v4) as u64,
        IpAddr::V6(v6) => {
            let x = u128::from(*v6);
            (x >> 64) as u64 ^ x as u64
        }
    };
    // Fold so neighbouring addresses land on different shards.
    ((n ^ (n >> 7) ^ (n >> 17)) as usize) % SHARDS
}

impl Limits {
    pub fn new(max: usize, max_per_ip: usize) -> Limits {
        Limits {
            max,
            max_per_ip,
            open: AtomicUsize::new(0),
            per_ip: Default::default(),
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Takes a slot for a connection from `ip`, or says why not. `exempt`
    /// (a trusted proxy) skips the per-address cap.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Result<Slot, Refusal> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::AtCapacity);
        }
        let mut slot = Slot {
            limits: self.clone(),
            key: None,
        };
        if !exempt {
            let key = client_key(ip);
            let mut counts = self.per_ip[shard_of(&key)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(key).or_insert(0);
            if *count >= self.max_per_ip {
                // Dropping `slot` gives the global place back.
                return Err(Refusal::PerClient);
            }
            *count += 1;
            slot.key = Some(key);
        }
        Ok(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut counts = self.limits.per_ip[shard_of(&key)]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_globally_and_per_address() {
        let limits = Arc::new(Limits::new(3, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = limits.acquire(a, false).unwrap();
        let _a2 = limits.acquire(a, false).unwrap();
        assert_eq!(limits.acquire(a, false).err(), Some(Refusal::PerClient));
        assert_eq!(limits.open(), 2, "a refused connection holds no place");
        let _b1 = limits.acquire(b, false).unwrap();
        assert_eq!(limits.acquire(b, false).err(), Some(Refusal::AtCapacity));
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits
            .acquire(a, false)
            .expect("a closed connection frees its place");
        assert_eq!(limits.acquire(b, true).err(), Some(Refusal::AtCapacity));
    }

    #[test]
    fn exempt_peers_skip_the_per_address_cap() {
        let limits = Arc::new(Limits::new(10, 1));
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| limits.acquire(proxy, true).unwrap())
            .collect();
        assert_eq!(limits.open(), 5);
        drop(held);
        assert_eq!(limits.open(), 0);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let limits = Arc::new(Limits::new(10, 2));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _first = limits.acquire(ip("2001:db8:1:2::1"), false).unwrap();
        let _second = limits.acquire(ip("2001:db8:1:2::ffff"), false).unwrap();
        assert_eq!(
            limits.acquire(ip("2001:db8:1:2:aaaa::3"), false).err(),
            Some(Refusal::PerClient)
        );
        assert!(limits.acquire(ip("2001:db8:1:3::1"), false).is_ok());
        // A v4 client on a dual-stack socket is the same client.
        let _v4 = limits.acquire(ip("192.0.2.9"), false).unwrap();
        let _v4b = limits.acquire(ip("::ffff:192.0.2.9"), false).unwrap();
        assert_eq!(
            limits.acquire(ip("192.0.2.9"), false).err(),
            Some(Refusal::PerClient)
        );
    }
}
