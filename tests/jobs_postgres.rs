//! The job queue across nodes: two `byteport up` daemons (separate data
//! directories, so separate node ids) on one real PostgreSQL server. Jobs
//! queued through either daemon are claimed with `FOR UPDATE SKIP LOCKED`
//! and the one-running-job-per-app index; every job must run exactly once
//! and the jobs of one app one after another.

mod support;

use std::process::Output;

use platform::store::Store;
use support::daemon::Daemon;
use support::postgres::PgServer;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn two_daemons_on_one_postgres_never_run_a_job_twice() {
    let pg = PgServer::start();
    let env = [("BYTEPORT_DATABASE_URL", pg.url.as_str())];
    let a = Daemon::start_with_env(&env);
    let b = Daemon::start_with_env(&env);
    let keys = tempfile::tempdir().unwrap();
    let key = support::daemon::keygen(keys.path(), "alice");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args([
            "keys",
            "add",
            "alice",
            key.with_extension("pub").to_str().unwrap(),
        ])
        .env("BYTEPORT_HOME", &a.home)
        .env("BYTEPORT_DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let apps: Vec<String> = (0..4).map(|i| format!("shared{i}")).collect();
    for app in &apps {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_byteport"))
            .args(["apps", "create", app, "--owner", "alice"])
            .env("BYTEPORT_HOME", &a.home)
            .env("BYTEPORT_DATABASE_URL", &pg.url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    // Stop and start every app through both daemons at once, several
    // rounds: start fails (nothing was ever deployed) and stop succeeds,
    // both without VMs, so only the queue is under test.
    let mut handles = Vec::new();
    for _round in 0..3 {
        for app in &apps {
            for (d, verb) in [(&a, "stop"), (&b, "start")] {
                let home = d.home.clone();
                let (app, verb) = (app.clone(), verb.to_string());
                handles.push(std::thread::spawn(move || {
                    std::process::Command::new(env!("CARGO_BIN_EXE_byteport"))
                        .args([verb.as_str(), app.as_str()])
                        .env("BYTEPORT_HOME", &home)
                        .output()
                        .unwrap()
                }));
            }
        }
    }
    let outputs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        succeeded,
        12,
        "every stop succeeds, every start fails: {:?}",
        outputs.iter().map(text).collect::<Vec<_>>()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt
        .block_on(Store::open(&pg.url, a.home.as_path()))
        .expect("the test reads the shared store");
    let mut nodes = std::collections::BTreeSet::new();
    let mut total = 0;
    for app in &apps {
        let mut jobs = rt.block_on(store.list_jobs(app, 1000)).unwrap();
        jobs.reverse();
        assert_eq!(jobs.len(), 6, "{app}: {jobs:?}");
        for j in &jobs {
            assert!(
                matches!(j.state.as_str(), "succeeded" | "failed"),
                "{app}: job {} ended as {}",
                j.id,
                j.state
            );
            assert_eq!(
                j.attempts, 1,
                "job {} of {app} ran {} times",
                j.id, j.attempts
            );
            nodes.insert(j.lease_owner.clone().unwrap());
        }
        // One at a time per app: each job started after the previous ended.
        for pair in jobs.windows(2) {
            assert!(
                pair[1].started_at.unwrap() >= pair[0].finished_at.unwrap(),
                "{app}: job {} overlapped job {}",
                pair[1].id,
                pair[0].id
            );
        }
        total += jobs.len();
    }
    assert_eq!(total, 24);
    eprintln!("jobs ran on {} node(s): {nodes:?}", nodes.len());
    drop(a);
    drop(b);
}
