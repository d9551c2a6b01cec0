//! The addresses assigned to this host's interfaces (in the calling
//! thread's network namespace): a public address of the host reaches the
//! host's own services as surely as loopback does, so the policy denies
//! them too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every address of every interface, from `getifaddrs(3)`.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid
        // until freeifaddrs; ifa_addr is null or points to a sockaddr whose
        // family tells its real type.
        unsafe {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
    }
    // SAFETY: the head returned by getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// [`local_addresses`], re-read at most once per `ttl` (interfaces change
/// rarely; a connection should not pay a netlink dump).
#[derive(Debug)]
pub(crate) struct LocalAddresses {
    ttl: Duration,
    cached: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl LocalAddresses {
    pub(crate) fn new(ttl: Duration) -> Self {
        LocalAddresses {
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The current snapshot. When the interfaces cannot be read, the last
    /// snapshot is kept (an empty one only if there never was one: the
    /// special ranges still cover loopback and private networks).
    pub(crate) fn get(&self) -> Vec<IpAddr> {
        let Ok(mut cached) = self.cached.lock() else {
            return local_addresses().unwrap_or_default();
        };
        if let Some((at, addrs)) = cached.as_ref() {
            if at.elapsed() < self.ttl {
                return addrs.clone();
            }
        }
        match local_addresses() {
            Ok(addrs) => {
                *cached = Some((Instant::now(), addrs.clone()));
                addrs
            }
            Err(e) => {
                tracing::warn!(target: "egress", "cannot read this host's addresses: {e}");
                cached.as_ref().map(|(_, a)| a.clone()).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_among_this_hosts_addresses() {
        let addrs = local_addresses().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        let cache = LocalAddresses::new(Duration::from_secs(60));
        assert_eq!(cache.get(), addrs);
        assert_eq!(cache.get(), addrs);
    }
}
