//! The queue on a real SQLite store, with jobs that need no VM (stop,
//! destroy, and boots refused because this test platform cannot boot).
//! The PostgreSQL half (two daemons, one database) is in the workspace's
//! `tests/jobs_postgres.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::Store;
use crate::{JobUpdate, Platform, PlatformSettings};

async fn platform_on(home: &std::path::Path, db: &str, lease: Duration) -> Arc<Platform> {
    let store = Store::open(db, home).await.unwrap();
    let mut settings = PlatformSettings::new(home, Err("this test platform boots no VMs".into()));
    settings.jobs.lease = lease;
    settings.jobs.poll = Duration::from_millis(50);
    let p = Arc::new(Platform::new(
        settings,
        store,
        router::RouteTable::new("localhost"),
    ));
    p.start().await.unwrap();
    p
}

async fn platform(home: &std::path::Path) -> Arc<Platform> {
    let db = format!("sqlite://{}/state.db?mode=rwc", home.display());
    let p = platform_on(home, &db, Duration::from_secs(30)).await;
    let _ = p.store.add_user("alice", None).await;
    for app in ["a", "b"] {
        let _ = p.store.create_app(app, "alice").await;
    }
    p
}

async fn wait_final(p: &Platform, id: i64) -> Job {
    for _ in 0..400 {
        let job = Job::from_row(p.store.job(id).await.unwrap().unwrap());
        if job.state.is_final() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let job = p.store.job(id).await.unwrap().unwrap();
    panic!("job {id} did not end: {job:?}");
}

#[tokio::test]
async fn jobs_of_one_app_run_one_at_a_time_in_order() {
    let home = tempfile::tempdir().unwrap();
    let p = platform(home.path()).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let spec = if i % 2 == 0 {
            JobSpec::Stop
        } else {
            JobSpec::Start
        };
        ids.push(p.enqueue("a", spec, Some("alice"), false).await.unwrap().id);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(wait_final(&p, *id).await);
    }
    for pair in jobs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            b.started_at.unwrap() >= a.finished_at.unwrap(),
            "job {} started before job {} ended",
            b.id,
            a.id
        );
    }
    // Stops succeed without a VM; starts fail with the reason.
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert_eq!(jobs[1].state, JobState::Failed);
    assert!(
        jobs[1]
            .failure
            .as_ref()
            .unwrap()
            .to_string()
            .contains("no live deploy")
            || jobs[1]
                .failure
                .as_ref()
                .unwrap()
                .to_string()
                .contains("cannot boot here"),
        "{:?}",
        jobs[1].failure
    );
    assert!(jobs.iter().all(|j| j.attempts == 1));
}

#[tokio::test]
async fn a_requester_sees_progress_and_the_verdict() {
    let home = tempfile::tempdir().unwrap();
    let p = platform(home.path()).await;
    let follower = p
        .submit("a", JobSpec::Stop, Some("alice"), false)
        .await
        .unwrap();
    let lines = std::sync::Mutex::new(Vec::new());
    let job = follower
        .wait(&p, |l| lines.lock().unwrap().push(l.to_string()))
        .await
        .unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("a was not running; it stays stopped")),
        "{lines:?}"
    );
    let follower = p
        .submit("a", JobSpec::Restart, Some("alice"), false)
        .await
        .unwrap();
    let err = follower.wait(&p, |_| {}).await.unwrap_err();
    assert!(
        matches!(err, JobError::Boot { .. } | JobError::Rejected { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_queued_job_is_cancelled_before_it_runs() {
    let home = tempfile::tempdir().unwrap();
    let p = platform(home.path()).await;
    let later = crate::store::now_ms() + 3_600_000;
    let job = p
        .enqueue_at("b", JobSpec::Stop, Some("alice"), false, later)
        .await
        .unwrap();
    let report = p.cancel("b", None, "alice").await.unwrap();
    assert!(
        matches!(report, dispatch::CancelReport::Dequeued(ref j) if j.id == job.id),
        "{report:?}"
    );
    let done = wait_final(&p, job.id).await;
    assert_eq!(done.state, JobState::Cancelled);
    assert!(done.started_at.is_none(), "it never ran");
    assert!(!p.store.app("b").await.unwrap().unwrap().stopped);
    // Cancelling again says it is over; a job of another app is not found.
    let again = p.cancel("b", Some(job.id), "alice").await.unwrap();
    assert!(matches!(again, dispatch::CancelReport::AlreadyFinished(_)));
    assert!(p.cancel("a", Some(job.id), "alice").await.is_err());
    assert!(
        p.cancel("a", None, "alice").await.is_err(),
        "nothing to cancel"
    );
}

#[tokio::test]
async fn jobs_running_when_the_node_died_are_interrupted_at_its_next_start() {
    let home = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/state.db?mode=rwc", home.path().display());
    let node = {
        let p = platform(home.path()).await;
        p.queue.node.clone()
    };
    // What a node that dies mid-job leaves: a running row it holds.
    let store = Store::open(&db, home.path()).await.unwrap();
    let row = store
        .enqueue_job(&crate::store::NewJob {
            app: "a",
            kind: "restart",
            args_json: r#"{"kind":"restart"}"#,
            requested_by: Some("alice"),
            node: Some(&node),
            run_after: crate::store::now_ms() + 60_000,
            deadline_ms: 60_000,
        })
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, run_after = 0 WHERE id = $3")
        .bind(&node)
        .bind(crate::store::now_ms() + 3_600_000)
        .bind(row.id)
        .execute(store.pool())
        .await
        .unwrap();
    let p = platform_on(home.path(), &db, Duration::from_secs(30)).await;
    assert_eq!(p.queue.node, node, "same data directory, same node");
    let job = Job::from_row(p.store.job(row.id).await.unwrap().unwrap());
    assert_eq!(job.state, JobState::Failed);
    assert!(
        matches!(job.failure, Some(JobError::Interrupted { .. })),
        "{:?}",
        job.failure
    );
}

#[tokio::test]
async fn a_job_whose_node_stopped_renewing_is_interrupted_by_another() {
    let home = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/state.db?mode=rwc", home.path().display());
    let p = platform_on(home.path(), &db, Duration::from_millis(300)).await;
    p.store.add_user("alice", None).await.unwrap();
    p.store.create_app("a", "alice").await.unwrap();
    let row = p
        .store
        .enqueue_job(&crate::store::NewJob {
            app: "a",
            kind: "stop",
            args_json: r#"{"kind":"stop"}"#,
            requested_by: None,
            node: Some("a-node-that-died"),
            run_after: 0,
            deadline_ms: 60_000,
        })
        .await
        .unwrap();
    let claimed = p
        .store
        .claim_jobs("a-node-that-died", 1, crate::store::now_ms() + 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let job = wait_final(&p, row.id).await;
    assert_eq!(job.state, JobState::Failed);
    assert!(
        matches!(job.failure, Some(JobError::Interrupted { .. })),
        "{:?}",
        job.failure
    );
    // And the app's next job runs.
    let next = p.enqueue("a", JobSpec::Stop, None, false).await.unwrap();
    assert_eq!(wait_final(&p, next.id).await.state, JobState::Succeeded);
}

#[tokio::test]
async fn two_nodes_on_one_database_never_run_a_job_twice() {
    let shared = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/state.db?mode=rwc", shared.path().display());
    let (h1, h2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n1 = platform_on(h1.path(), &db, Duration::from_secs(30)).await;
    let n2 = platform_on(h2.path(), &db, Duration::from_secs(30)).await;
    assert_ne!(n1.queue.node, n2.queue.node);
    n1.store.add_user("alice", None).await.unwrap();
    let apps: Vec<String> = (0..6).map(|i| format!("app{i}")).collect();
    for a in &apps {
        n1.store.create_app(a, "alice").await.unwrap();
    }
    let mut ids = Vec::new();
    for round in 0..5 {
        for (i, a) in apps.iter().enumerate() {
            let node = if (round + i) % 2 == 0 { &n1 } else { &n2 };
            ids.push(
                node.enqueue(a, JobSpec::Stop, None, false)
                    .await
                    .unwrap()
                    .id,
            );
        }
    }
    let mut ran_on = std::collections::BTreeMap::<String, usize>::new();
    for id in ids {
        let job = wait_final(&n1, id).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.attempts, 1, "job {id} was taken {} times", job.attempts);
        *ran_on.entry(job.ran_on.unwrap()).or_default() += 1;
    }
    assert_eq!(ran_on.values().sum::<usize>(), 30);
}

#[tokio::test]
async fn updates_end_with_done() {
    let home = tempfile::tempdir().unwrap();
    let p = platform(home.path()).await;
    let mut f = p.submit("a", JobSpec::Stop, None, false).await.unwrap();
    let mut last = None;
    while let Some(u) = f.next(&p).await {
        last = Some(u);
    }
    assert!(
        matches!(&last, Some(JobUpdate::Done(r)) if r.is_ok()),
        "{last:?}"
    );
}
