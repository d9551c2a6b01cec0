//! Several instances of one app behind the real router, with real TCP
//! upstreams: how requests split, what happens when an instance is busy,
//! dies, or is taken out, and the 503 while an app is being deployed.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use router::Outcome;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// `n` sequential GETs of `/`; the instance names that answered, in order.
async fn names_of(router: SocketAddr, n: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let resp = raw(router, &get("a.localhost", &format!("/{i}"))).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "request {i}: {resp}");
        let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
        names.push(body.split(' ').next().unwrap().to_string());
    }
    names
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

#[tokio::test]
async fn sequential_traffic_splits_evenly_across_two_instances() {
    let r = start_router(|_| {}).await;
    let (a1, a2) = (App::start("a1").await, App::start("a2").await);
    r.table
        .try_switch_instances("a", &[], &[a1.addr, a2.addr], 1)
        .unwrap();
    let names = names_of(r.addr(), 100).await;
    let (n1, n2) = (count(&names, "a1"), count(&names, "a2"));
    assert_eq!(n1 + n2, 100, "{names:?}");
    assert!(n1 >= 40 && n2 >= 40, "a fair share each: {n1} / {n2}");
    assert_eq!((a1.seen.requests(), a2.seen.requests()), (n1, n2));
    // Each record names the instance that answered.
    wait_until("100 records", || r.records.all().len() == 100).await;
    let on = |addr| {
        r.records
            .all()
            .iter()
            .filter(|l| l.upstream == Some(addr))
            .count()
    };
    assert_eq!((on(a1.addr), on(a2.addr)), (n1, n2));
}

#[tokio::test]
async fn a_busy_instance_is_passed_over_for_an_idle_one() {
    let r = start_router(|_| {}).await;
    let (busy, idle) = (App::start("busy").await, App::start("idle").await);
    r.table.try_switch("a", &[], busy.addr, 1).unwrap();
    // Three requests the busy instance never answers, held open.
    let mut held = vec![];
    for _ in 0..3 {
        let mut s = TcpStream::connect(r.addr()).await.unwrap();
        s.write_all(get("a.localhost", "/hang").as_bytes())
            .await
            .unwrap();
        held.push(s);
    }
    let busy_upstream = r.table.instances("a")[0].clone();
    wait_until("3 requests in flight on busy", || {
        busy_upstream.inflight() == 3
    })
    .await;
    // Scale to two: round-robin would send half of these to the busy one.
    r.table.add_instance("a", idle.addr, 1).unwrap();
    let names = names_of(r.addr(), 20).await;
    assert_eq!(count(&names, "idle"), 20, "{names:?}");
    assert_eq!(busy.seen.requests(), 3, "only the held ones");
    drop(held);
}

/// Clients sending sequential GETs until `stop`; (answers, failures as
/// "status: first line of the body").
fn clients(
    router: SocketAddr,
    n: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..n)
        .map(|c| {
            let (stop, answered) = (stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut failures = vec![];
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let resp = raw(router, &get("a.localhost", &format!("/c{c}/{i}"))).await;
                    if !resp.starts_with("HTTP/1.1 200") {
                        failures.push(resp.lines().next().unwrap_or("(nothing)").to_string());
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
                failures
            })
        })
        .collect()
}

async fn until_answered(answered: &AtomicUsize, n: usize) {
    wait_until(&format!("{n} answers"), || {
        answered.load(Ordering::SeqCst) >= n
    })
    .await;
}

async fn failures_of(clients: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    let mut all = vec![];
    for c in clients {
        all.extend(c.await.unwrap());
    }
    all
}

#[tokio::test]
async fn killing_one_of_two_instances_loses_no_get() {
    let r = start_router(|_| {}).await;
    let (a1, a2) = (App::start("a1").await, App::start("a2").await);
    r.table
        .try_switch_instances("a", &[], &[a1.addr, a2.addr], 1)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let running = clients(r.addr(), 4, stop.clone(), answered.clone());
    until_answered(&answered, 100).await;
    assert!(a2.seen.requests() > 0, "a2 was serving");
    a2.kill();
    let at_kill = answered.load(Ordering::SeqCst);
    until_answered(&answered, at_kill + 200).await;
    stop.store(true, Ordering::SeqCst);
    let failures = failures_of(running).await;
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(
        !r.table.instances("a")[1].is_healthy(),
        "the dead instance is passed over"
    );
    assert!(
        r.records
            .all()
            .iter()
            .all(|l| l.status == 200 && l.outcome == Outcome::Completed),
        "every record a 200"
    );

    // A request with a body is retried too when the dead instance refuses
    // the connection (nothing of it was sent).
    let a2_upstream = r.table.instances("a")[1].clone();
    let mut retried = 0;
    for _ in 0..4 {
        // Forget the failure, so a2 is tried again (in turns with a1).
        assert!(r.table.set_healthy("a", a2.addr, true));
        let post = "POST /p HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 5\r\n\
                    Connection: close\r\n\r\nhello";
        let resp = raw(r.addr(), post).await;
        assert!(
            resp.starts_with("HTTP/1.1 200")
                && resp.contains("a1 path=/p")
                && resp.contains("body=5"),
            "{resp}"
        );
        retried += usize::from(!a2_upstream.is_healthy());
    }
    assert!(retried >= 1, "no POST was tried on the dead instance first");

    // Both dead: the router's 502 page.
    a1.kill();
    let resp = raw(r.addr(), &get("a.localhost", "/")).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert_router_page(&resp);
    let logged = r.records.wait_for(|l| l.status == 502).await;
    assert_eq!(logged.outcome, Outcome::UpstreamError);
}

#[tokio::test]
async fn a_removed_instance_finishes_its_requests_and_gets_no_new_ones() {
    let r = start_router(|_| {}).await;
    let (a1, a2) = (App::start("a1").await, App::start("a2").await);
    r.table
        .try_switch_instances("a", &[], &[a1.addr, a2.addr], 1)
        .unwrap();
    // Two slow requests at once: one on each instance (the second goes to
    // the one with nothing in flight).
    let addr = r.addr();
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { raw(addr, &get("a.localhost", "/slower")).await }))
        .collect();
    wait_until("one slow request on each", || {
        a1.seen.requests() == 1 && a2.seen.requests() == 1
    })
    .await;
    let removed = r
        .table
        .remove_instance("a", a2.addr)
        .expect("a2 is an instance");
    assert_eq!(removed.inflight(), 1, "its slow request is still running");
    let names = names_of(addr, 10).await;
    assert_eq!(count(&names, "a1"), 10, "{names:?}");
    assert_eq!(a2.seen.requests(), 1, "nothing new reached a2");
    assert_eq!(removed.drain(HANG_GUARD).await, 0);
    let mut answers = vec![];
    for s in slow {
        answers.push(s.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a.starts_with("HTTP/1.1 200")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.contains("a2 path=/slower")),
        "{answers:?}"
    );
    // Removing it again, or an address never added, changes nothing.
    assert!(r.table.remove_instance("a", a2.addr).is_none());
    assert!(r
        .table
        .remove_instance("a", "127.0.0.1:1".parse().unwrap())
        .is_none());
    assert_eq!(r.table.instances("a").len(), 1);
}

#[tokio::test]
async fn a_rolling_redeploy_fails_no_request() {
    let r = start_router(|_| {}).await;
    let old = [App::start("old1").await, App::start("old2").await];
    let new = [App::start("new1").await, App::start("new2").await];
    r.table
        .try_switch_instances("a", &[], &[old[0].addr, old[1].addr], 1)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let running = clients(r.addr(), 4, stop.clone(), answered.clone());
    until_answered(&answered, 50).await;
    // What the platform does, one instance at a time: boot a new one, add
    // it, take an old one out, drain it, stop its VM.
    for (old, new) in old.iter().zip(&new) {
        r.table.add_instance("a", new.addr, 2).unwrap();
        let retired = r.table.remove_instance("a", old.addr).unwrap();
        assert_eq!(retired.drain(HANG_GUARD).await, 0);
        old.kill();
        let n = answered.load(Ordering::SeqCst);
        until_answered(&answered, n + 50).await;
    }
    stop.store(true, Ordering::SeqCst);
    let failures = failures_of(running).await;
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert_eq!(r.table.deploy_of("a"), Some(2));
    let names = names_of(r.addr(), 20).await;
    assert_eq!(
        count(&names, "new1") + count(&names, "new2"),
        20,
        "{names:?}"
    );
    assert!(new[0].seen.requests() > 0 && new[1].seen.requests() > 0);
}

#[tokio::test]
async fn a_deploying_app_gets_503_with_retry_after_then_200() {
    let r = start_router(|_| {}).await;
    let (old, new) = (App::start("old").await, App::start("new").await);
    r.table
        .try_switch("a", &["a.example".into()], old.addr, 1)
        .unwrap();
    let addr = r.addr();
    let slow = tokio::spawn(async move { raw(addr, &get("a.localhost", "/slow")).await });
    wait_until("the slow request reached old", || old.seen.requests() == 1).await;

    let retired = r
        .table
        .mark_deploying("a", &[], Duration::from_millis(2500));
    assert_eq!(retired.len(), 1);
    for host in ["a.localhost", "a.example"] {
        let resp = raw(addr, &get(host, "/x")).await;
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        assert_eq!(header(&resp, "retry-after"), Some("3"), "{resp}");
        assert_eq!(header(&resp, "cache-control"), Some("no-store"), "{resp}");
        assert_router_page(&resp);
        assert!(resp.contains("is being deployed"), "{resp}");
        assert!(!resp.contains("not running"), "not the down page: {resp}");
    }
    let logged = r.records.wait_for(|l| l.status == 503).await;
    assert_eq!(logged.app.as_deref(), Some("a"));
    assert_eq!(logged.router_page, Some("app-deploying"));
    assert_eq!(logged.outcome, Outcome::Completed);
    assert!(
        logged.line.ends_with("(router: app-deploying)"),
        "{logged:?}"
    );
    assert_eq!(old.seen.requests(), 1, "nothing reached the app meanwhile");
    // The request in flight before finishes; the old VM can then stop.
    assert_eq!(retired[0].drain(HANG_GUARD).await, 0);
    let resp = slow.await.unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("old path=/slow"),
        "{resp}"
    );

    r.table
        .try_switch("a", &["a.example".into()], new.addr, 2)
        .unwrap();
    for host in ["a.localhost", "a.example"] {
        let resp = raw(addr, &get(host, "/y")).await;
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.contains("new path=/y"),
            "{resp}"
        );
    }
}

#[tokio::test]
async fn an_instance_that_accepts_and_hangs_up_is_passed_over() {
    // What QEMU's port forward does while the app in the guest is dead:
    // every connect succeeds, and the connection is closed unanswered.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = dead.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let r = start_router(|_| {}).await;
    let alive = App::start("alive").await;
    r.table
        .try_switch_instances("a", &[], &[dead_addr, alive.addr], 1)
        .unwrap();
    let names = names_of(r.addr(), 30).await;
    assert_eq!(count(&names, "alive"), 30, "{names:?}");
    let dead_upstream = r.table.instances("a")[0].clone();
    assert!(!dead_upstream.is_healthy(), "marked after hanging up");
    let n = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&n),
        "passed over once it hung up, not tried by every request: {n}"
    );
}
