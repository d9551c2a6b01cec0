//! The cgroup **v2** path of build-step limits, for real: this host has
//! cgroup v1 only, so the builder's limit checks
//! (`tests/support/limits_checks.rs`, the same ones `limits.rs` runs here
//! on v1) run as a static program (`examples/limits_probe.rs`) inside a
//! QEMU TCG guest — the Debian cloud kernel from `builder::setup`, cgroup2
//! mounted at /sys/fs/cgroup with every controller, no v1 — and report
//! over the serial console. Costs one static build of the probe (about
//! 40 s the first time, incremental after) and a guest boot (a few seconds).

mod common;

use builder::setup::{ensure_assets, SetupOptions};
use std::time::Duration;

/// Every check of `limits_checks::run_all`.
const CHECKS: &[&str] = &[
    "hierarchy",
    "limits read back",
    "oom names the limit",
    "fork bomb stopped",
    "timeout kills the group",
    "nothing left behind",
];

#[test]
fn build_step_limits_work_on_cgroup_v2_in_a_guest() {
    let assets = ensure_assets(&SetupOptions {
        home: common::test_cache().join("setup-home"),
        kernel: None,
        kernel_modules: None,
        progress: false,
    })
    .expect("setup: the Debian cloud kernel and busybox-static (needs apt on a cold cache)");
    let probe = testvm::static_build("builder", testvm::Artifact::Example("limits_probe"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = testvm::Vm::new(&assets.kernel.image)
        .busybox(&assets.busybox)
        .file(&probe, "/probe")
        .cgroup2(true)
        .cpus(2)
        .memory_mib(512)
        .timeout(Duration::from_secs(300))
        .command("/probe /bin/busybox")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let log = out.log();
    println!("guest ran {:.1}s:\n{log}", out.elapsed.as_secs_f64());
    assert!(
        out.has("TESTVM-START"),
        "the guest never reached the payload:\n{log}"
    );
    for check in CHECKS {
        assert!(
            out.has(&format!("PROBE-OK {check}:")),
            "check `{check}` did not pass on cgroup v2:\n{log}"
        );
    }
    assert!(
        out.has(
            "PROBE-OK hierarchy: V2 { root: \"/sys/fs/cgroup\", controllers: [Memory, Pids, Cpu] }"
        ),
        "the guest's hierarchy is not the unified one:\n{log}"
    );
    assert!(out.has("limits read back: cgroup v2"), "{log}");
    assert_eq!(out.exit, Some(0), "probe failed or timed out:\n{log}");
}
