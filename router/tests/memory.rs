//! What an open connection costs the router, counted by the allocator:
//! hundreds of idle connections (silent sockets, kept-alive connections
//! between requests) hold a bounded amount of memory each, and give it
//! back when they close. Before issue 11 each held about 18 KB (RSS) for
//! as long as the client liked, a silent socket as much as any; the
//! deadlines now bound *how long*, this bounds *how much*.
//!
//! Counts bytes, never time: the figures are the allocator's live bytes
//! (the test's own client sockets included, which only loosens the bound).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The system allocator, keeping a count of the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed straight to the system allocator with the
// caller's arguments; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract; we pass it on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc`/`realloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract; we pass it on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The most a silent socket may cost, in bytes: its task, its watchdog
/// task and its state — hyper's buffers are made only when a first byte
/// arrives (measured: about 2 KB, the test's own client socket included).
const SILENT_BOUND: isize = 4 * 1024;
/// The most a kept-alive connection between requests may cost, in bytes:
/// hyper's read and write buffers (8 KiB each, kept between requests), the
/// connection's task, watchdog and state (measured: about 24 KB).
const KEPT_BOUND: isize = 32 * 1024;

/// Connections this test opens: 500, unless the open-file limit (two
/// descriptors a connection: the client's and the router's) allows fewer.
fn connections_to_open() -> usize {
    const WANTED: usize = 500;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the struct we pass only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    let room = (limit.rlim_cur as usize).saturating_sub(128) / 2;
    if room < WANTED {
        eprintln!(
            "memory test: RUNNING WITH {room} CONNECTIONS, NOT {WANTED}: the open-file limit is {}",
            limit.rlim_cur
        );
    }
    assert!(
        room >= 100,
        "the open-file limit {} is too low for this test",
        limit.rlim_cur
    );
    room.min(WANTED)
}

#[tokio::test]
async fn idle_connections_cost_bounded_memory_and_give_it_back() {
    let n = connections_to_open();
    let r = start_router(|c| {
        c.header_read_timeout = Duration::from_secs(3600);
        c.idle_timeout = Duration::from_secs(3600);
        c.max_connections_per_client = 2 * n + 10;
    })
    .await;
    let a = App::start("a").await;
    r.table.try_switch("a", &[], a.addr, 1).unwrap();
    // Warm up: the upstream pool's connection, lazily built statics.
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    wait_for_open(&r, 0).await;
    r.records.forget_all();
    let before = live();

    // Silent sockets: connected, nothing sent.
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        silent.push(TcpStream::connect(r.addr()).await.unwrap());
    }
    wait_for_open(&r, n as u64).await;
    settle(&r).await;
    let per_silent = (live() - before) / n as isize;

    // Kept-alive connections between requests: each has had a request
    // proxied and its response read.
    let mut kept = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(r.addr()).await.unwrap();
        s.write_all(format!("GET /{i} HTTP/1.1\r\nHost: a.localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, _) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        kept.push(s);
    }
    wait_for_open(&r, 2 * n as u64).await;
    settle(&r).await;
    let total = live() - before;
    let per_kept = (total - per_silent * n as isize) / n as isize;
    eprintln!(
        "memory test: {n} silent sockets cost {per_silent} B each, {n} idle keep-alive \
         connections {per_kept} B each ({} KiB in all)",
        total / 1024
    );
    assert!(
        per_silent < SILENT_BOUND,
        "a silent socket holds {per_silent} B"
    );
    assert!(
        per_kept < KEPT_BOUND,
        "an idle keep-alive connection holds {per_kept} B"
    );

    // Closed, they give it all back (give or take the allocator's and
    // tokio's own bookkeeping, well under a connection's worth).
    drop(silent);
    drop(kept);
    wait_for_open(&r, 0).await;
    settle(&r).await;
    r.records.forget_all();
    let left = live() - before;
    eprintln!("memory test: {left} B still live after every connection closed");
    assert!(
        left < KEPT_BOUND,
        "{left} B were not given back after {} connections closed",
        2 * n
    );
}

/// Lets every connection's task run until it waits on its socket again:
/// one more request through a fresh connection, which the runtime polls
/// after the tasks spawned before it.
async fn settle(r: &Started) {
    let open = r.router.stats().open_connections;
    let resp = raw(r.addr(), &get("a.localhost", "/settle")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    wait_for_open(r, open).await;
}
