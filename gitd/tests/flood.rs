//! Floods of unauthenticated connections, as raw TCP sockets from other
//! loopback addresses (127.0.0.x all route to `lo` on Linux), while the
//! real `git` and OpenSSH clients from 127.0.0.1 push and list refs. The
//! attack that locked everyone out for ten minutes (connections that send
//! `SSH-2.0-OpenSSH_9.6` and never start the key exchange) no longer
//! touches authenticated users, and its sockets are cut at the handshake
//! deadline. Timings are hang guards only; the assertions are on what
//! happened.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gitd::Startups;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous upper bound for anything to happen (a hang guard).
const GUARD: Duration = Duration::from_secs(60);

/// What happened to one attacking socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Closed at accept, before the server said anything.
    Refused,
    /// Got the server's version line, later closed by the server.
    AdmittedThenClosed,
    /// Still open when the hang guard ran out.
    Hung,
}

/// Opens a connection from `source`, sends only a version line, and reads
/// until the server closes it.
async fn version_line_only(source: [u8; 4], server: SocketAddr) -> Option<Fate> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::from((source, 0))).ok()?;
    let mut s = match socket.connect(server).await {
        Ok(s) => s,
        // Reset before the connect completed on this side: the server
        // accepted it and reset it at once.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(Fate::Refused),
        Err(e) => panic!("connect from {source:?}: {e}"),
    };
    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(GUARD, read_all).await.is_err() {
        return Some(Fate::Hung);
    }
    Some(if got.starts_with(b"SSH-2.0-") {
        Fate::AdmittedThenClosed
    } else {
        Fate::Refused
    })
}

/// Keeps up to `concurrent` attacking sockets per source open until
/// `stop`, at most `attempts` in all; returns every socket's fate.
fn flood(
    server: SocketAddr,
    sources: Vec<[u8; 4]>,
    concurrent: usize,
    attempts: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Fate>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(concurrent * sources.len()));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..attempts {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let permit = limit.clone().acquire_owned().await.unwrap();
                let source = sources[i % sources.len()];
                tasks.spawn(async move {
                    let fate = version_line_only(source, server).await;
                    drop(permit);
                    fate
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut fates = vec![];
            while let Some(f) = tasks.join_next().await {
                fates.extend(f.unwrap());
            }
            fates
        })
    })
}

fn push_and_list(s: &Server, round: &str) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    git_ok(w, &["init", "-q"], "");
    commit(w, "a", round, round);
    // `-b 127.0.0.1`: the client's own address, not an attacker's.
    let ssh = format!("{} -b 127.0.0.1", s.ssh());
    git_ok(w, &["push", "-q", &s.url(round), "main"], &ssh);
    let head = git_ok(w, &["rev-parse", "HEAD"], "");
    let listed = git_ok(w, &["ls-remote", &s.url(round), "refs/heads/main"], &ssh);
    assert!(listed.starts_with(&head), "{listed}");
}

#[test]
fn a_version_line_flood_from_one_address_does_not_lock_out_pushes() {
    let s = Server::start(|c| {
        // Defaults (10:30:100, 10 per address) but a short handshake
        // deadline and a log limit that cannot run out during the test.
        c.handshake_timeout = Duration::from_secs(1);
        c.refusal_log_interval = Duration::from_secs(3600);
    });
    let addr: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // 96 at a time from 127.0.0.2, renewed as they are closed.
    let attacker = flood(addr, vec![[127, 0, 0, 2]], 96, 3000, stop.clone());
    // The flood holds its share of the handshake pool first.
    s.wait_stats(GUARD, |st| st.handshakes >= 10 && st.refused_per_source > 0);
    for round in ["one", "two", "three"] {
        push_and_list(&s, round);
        // The flood is still on.
        assert!(!attacker.is_finished());
    }
    stop.store(true, Ordering::SeqCst);
    let fates = attacker.join().unwrap();
    let admitted = fates
        .iter()
        .filter(|f| **f == Fate::AdmittedThenClosed)
        .count();
    let refused = fates.iter().filter(|f| **f == Fate::Refused).count();
    assert_eq!(
        fates.iter().filter(|f| **f == Fate::Hung).count(),
        0,
        "every flood socket is closed"
    );
    assert!(
        admitted > 0 && refused > 0,
        "{admitted} admitted, {refused} refused"
    );
    let st = s.stats();
    // Every admitted attacker was cut at the handshake deadline; none was
    // ever more than the per-address cap at once.
    assert_eq!(st.handshake_deadline as usize, admitted, "{st:?}");
    assert_eq!(
        (st.refused_per_source + st.random_drops) as usize,
        refused,
        "{st:?}"
    );
    assert_eq!(st.displaced, 0, "the pool never filled: {st:?}");
    // One WARN line for the whole flood; the rest counted, not written.
    assert_eq!(st.warn_lines, 1, "{st:?}");
    assert_eq!(
        st.warn_lines + st.warn_suppressed,
        st.refused_per_source + st.random_drops + st.handshake_deadline,
        "{st:?}"
    );
    s.wait_stats(GUARD, |st| st.handshakes == 0 && st.authenticated == 0);
}

#[test]
fn a_flood_from_many_addresses_cannot_crowd_out_a_client() {
    let s = Server::start(|c| {
        // A small pool the attackers fill completely; no random drop, and
        // no deadline during the test, so what holds is the admission rule
        // alone: an address with no handshake in progress makes room.
        c.max_startups = Startups {
            start: 16,
            rate_percent: 100,
            full: 16,
        };
        c.max_startups_per_source = 4;
        c.handshake_timeout = Duration::from_secs(300);
        c.login_timeout = Duration::from_secs(300);
        c.refusal_log_interval = Duration::from_secs(3600);
    });
    let addr: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sources: Vec<[u8; 4]> = (2..10).map(|i| [127, 0, 0, i]).collect();
    let attacker = flood(addr, sources, 4, 4000, stop.clone());
    s.wait_stats(GUARD, |st| st.handshakes == 16 && st.refused_full > 0);
    for round in ["one", "two"] {
        push_and_list(&s, round);
        assert!(!attacker.is_finished());
    }
    let st = s.stats();
    assert!(
        st.displaced >= 4,
        "the client's connections made room: {st:?}"
    );
    assert_eq!(st.handshake_deadline, 0, "{st:?}");
    stop.store(true, Ordering::SeqCst);
    // Dropping the server closes what the flood still holds.
    let s_stats = s.stats();
    drop(s);
    let fates = attacker.join().unwrap();
    assert_eq!(fates.iter().filter(|f| **f == Fate::Hung).count(), 0);
    assert_eq!(s_stats.warn_lines, 1, "{s_stats:?}");
}
