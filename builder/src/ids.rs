//! Host uid/gid ranges for build steps: every app gets its own range of
//! 65536 ids, and its steps run as root *of a user namespace* that maps
//! uid/gid 0..65536 onto that range — real root nowhere, and a different
//! unprivileged owner per app on the host.
//!
//! The ranges come from `/etc/subuid` and `/etc/subgid` when they have a
//! `byteport` entry (the usual way to hand ids to a container engine;
//! both files must give the same start and a count of at least 65536),
//! else from BytePort's default pool, `0x60000000` + 4096 × 65536 ids
//! (1610612736–1879048191: inside systemd's container range, above
//! systemd-nspawn's hashed picks, below 2^31). Which app holds which slot
//! is recorded next to the build caches, in `<home>/cache/build/.ids` (one
//! `slot app` line each, written under a lock), so an app keeps its range
//! across builds and restarts. The range matters only for what outlives a
//! step — the build cache, owned by the range's first id — so the two
//! live and go together: deleting the build caches forgets the ranges too.

use crate::error::{BuildError, IoContext, Result};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Ids in one app's range: uid/gid 0..65536 inside a step.
pub const RANGE_SIZE: u32 = 65536;
/// First id of the default pool.
pub const DEFAULT_POOL_START: u32 = 0x6000_0000;
/// Slots (apps) in the default pool.
pub const DEFAULT_POOL_SLOTS: u32 = 4096;
/// The user whose `/etc/subuid` / `/etc/subgid` entry overrides the pool.
pub const SUBID_USER: &str = "byteport";
/// File (in the build-cache root) recording which app holds which slot.
pub const ALLOCATION_FILE: &str = ".ids";

/// A contiguous range of host ids (the same numbers for uids and gids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First host id (uid and gid 0 inside the step).
    pub first: u32,
    /// Number of ids.
    pub count: u32,
}

impl IdRange {
    /// The last host id of the range.
    pub fn last(&self) -> u32 {
        self.first + (self.count - 1)
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last())
    }
}

/// Where app ranges are carved from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// First id.
    pub start: u32,
    /// Number of [`RANGE_SIZE`] slots.
    pub slots: u32,
}

impl Pool {
    /// The `byteport` entry of `/etc/subuid` + `/etc/subgid`, else the default.
    pub fn from_host() -> Result<Pool> {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Pool::from_subid(&read("/etc/subuid"), &read("/etc/subgid"))
    }

    /// The pool given the two files' contents.
    pub fn from_subid(subuid: &str, subgid: &str) -> Result<Pool> {
        match (subid_entry(subuid), subid_entry(subgid)) {
            (None, None) => Ok(Pool {
                start: DEFAULT_POOL_START,
                slots: DEFAULT_POOL_SLOTS,
            }),
            (Some(u), Some(g)) if u == g && u.1 / RANGE_SIZE >= 1 => Ok(Pool {
                start: u.0,
                slots: u.1 / RANGE_SIZE,
            }),
            (u, g) => Err(BuildError::IdPool {
                reason: format!(
                    "the `{SUBID_USER}` entries differ or are too small (/etc/subuid: {u:?}, /etc/subgid: {g:?}); give both the same start and a count of at least {RANGE_SIZE}, e.g. `{SUBID_USER}:{DEFAULT_POOL_START}:{}`",
                    u64::from(RANGE_SIZE) * u64::from(DEFAULT_POOL_SLOTS)
                ),
            }),
        }
    }

    fn slot(&self, slot: u32) -> IdRange {
        IdRange {
            first: self.start + slot * RANGE_SIZE,
            count: RANGE_SIZE,
        }
    }
}

/// `(start, count)` of the `byteport:START:COUNT` line, if any.
fn subid_entry(text: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        (f.next()? == SUBID_USER).then_some(())?;
        let start: u32 = f.next()?.parse().ok()?;
        let count: u32 = f.next()?.parse().ok()?;
        start.checked_add(count.checked_sub(1)?)?;
        Some((start, count))
    })
}

/// The range of `app` (an identity key such as `hello` or `_local/hello`)
/// recorded in directory `dir` (the build-cache root), allocating the
/// lowest free slot of `pool` the first time.
pub fn range_for(dir: &Path, app: &str, pool: Pool) -> Result<IdRange> {
    std::fs::create_dir_all(dir).ctx("creating", dir)?;
    let path = dir.join(ALLOCATION_FILE);
    let lock_path = dir.join(format!("{ALLOCATION_FILE}.lock"));
    let lock = std::fs::File::create(&lock_path).ctx("creating lock", &lock_path)?;
    // SAFETY: flock on a descriptor we own; released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx("locking", &lock_path);
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).ctx("reading", &path),
    };
    let mut taken = Vec::new();
    for line in text.lines() {
        let Some((slot, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(slot) = slot.parse::<u32>() else {
            continue;
        };
        if name == app && slot < pool.slots {
            return Ok(pool.slot(slot));
        }
        taken.push(slot);
    }
    let free = (0..pool.slots)
        .find(|s| !taken.contains(s))
        .ok_or_else(|| BuildError::IdPool {
            reason: format!(
                "all {} id ranges are taken (see {}); give `{SUBID_USER}` a larger range in /etc/subuid and /etc/subgid",
                pool.slots,
                path.display()
            ),
        })?;
    let tmp = dir.join(format!("{ALLOCATION_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).ctx("writing", &tmp)?;
    f.write_all(text.as_bytes())
        .and_then(|_| writeln!(f, "{free} {app}"))
        .and_then(|_| f.sync_all())
        .ctx("writing", &tmp)?;
    std::fs::rename(&tmp, &path).ctx("writing", &path)?;
    Ok(pool.slot(free))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_get_distinct_stable_ranges() {
        let home = tempfile::tempdir().unwrap();
        let pool = Pool {
            start: 100_000,
            slots: 3,
        };
        let a = range_for(home.path(), "a", pool).unwrap();
        let b = range_for(home.path(), "b", pool).unwrap();
        assert_eq!(
            a,
            IdRange {
                first: 100_000,
                count: RANGE_SIZE
            }
        );
        assert_eq!(b.first, 100_000 + RANGE_SIZE);
        assert_eq!(range_for(home.path(), "a", pool).unwrap(), a);
        assert_eq!(
            range_for(home.path(), "_local/a", pool).unwrap().first,
            100_000 + 2 * RANGE_SIZE
        );
        let full = range_for(home.path(), "d", pool).unwrap_err();
        assert!(
            full.to_string().contains("all 3 id ranges are taken"),
            "{full}"
        );
        assert_eq!(a.to_string(), "100000-165535");
    }

    #[test]
    fn the_pool_comes_from_subid_files_or_the_default() {
        let default = Pool::from_subid("", "alice:100000:65536\n").unwrap();
        assert_eq!(default.start, DEFAULT_POOL_START);
        let both = "alice:1:2\nbyteport:2000000:655360\n";
        assert_eq!(
            Pool::from_subid(both, both).unwrap(),
            Pool {
                start: 2_000_000,
                slots: 10
            }
        );
        let e = Pool::from_subid(both, "byteport:3000000:655360").unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        assert!(Pool::from_subid("byteport:1:100\n", "byteport:1:100\n").is_err());
        assert_eq!(subid_entry("byteport:4294967295:2"), None);
    }
}
