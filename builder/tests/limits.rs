//! Resource limits of build steps on this host's own cgroup hierarchy
//! (cgroup v1 on the CI machines: memory, pids and cpu controllers, and an
//! empty v2 `unified` mount): memory past the limit fails the step naming
//! the limit, a fork bomb is held at `pids.max`, a timeout kills the group,
//! and nothing is left behind. The same checks run on cgroup v2 inside a
//! QEMU guest in `cgroup_v2_guest.rs`.

#[path = "support/limits_checks.rs"]
mod checks;
mod common;

use builder::{BaseSpec, BuildError, BuildPlan, Step};
use common::*;

/// One test, so nothing else in this process creates step groups while the
/// checks look for leftovers.
#[test]
fn limits_apply_on_this_hosts_cgroup_hierarchy() {
    an_out_of_memory_step_fails_the_build_naming_the_limit_and_leaves_nothing();
    let busybox = builder::setup::ensure_busybox(&test_cache().join("home"), false)
        .expect("fetching busybox-static (needs apt)");
    let work = tempfile::tempdir().unwrap();
    let results = checks::run_all(&busybox, work.path());
    for (name, r) in &results {
        println!("{name}: {r:?}");
    }
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    assert_eq!(results.len(), 6, "every check ran: {results:#?}");
}

fn an_out_of_memory_step_fails_the_build_naming_the_limit_and_leaves_nothing() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("oom", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Run {
            command: "echo fine".into(),
        },
        Step::Run {
            command: "set -e; dd if=/dev/zero of=/dev/null bs=300M count=1".into(),
        },
    ];
    let (out, log) = build_with(home.path(), repo.source(), Some(plan), |req| {
        req.step_limits = Some(builder::Limits {
            memory_bytes: 96 << 20,
            pids: 64,
            cpus: 1,
        });
    });
    match out {
        Err(e @ BuildError::StepOutOfMemory { number: 2, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("build step 2"), "{msg}");
            assert!(msg.contains("out of memory"), "{msg}");
            assert!(msg.contains("limit of 96 MiB"), "{msg}");
            assert!(msg.contains("raise `memory`"), "{msg}");
        }
        other => panic!(
            "expected StepOutOfMemory, got {other:?}\n{}",
            log.join("\n")
        ),
    }
    assert!(
        log.iter()
            .any(|l| l.contains("Build steps limited by cgroup") && l.contains("memory 96 MiB")),
        "{log:#?}"
    );
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
    assert_eq!(mounts_matching(".tmp-build-"), Vec::<String>::new());
}
