//! The alternative issue 11 allowed "only if it is measured not to cost
//! more than 2×": running each build step in a throwaway microVM (as Fly's
//! builders do). On these machines a VM means QEMU with TCG (no hardware
//! virtualization), so this measures the same CPU-bound step — SHA-256 of
//! 256 MiB, about what byte-compiling or bundling does — as a `run` step of
//! the unprivileged sandbox on the host and as the payload of a TCG microVM
//! (Debian cloud kernel, busybox initramfs, `testvm`), boot included.
//!
//! Run: `cargo bench -p builder --bench microvm_alternative` (as root;
//! QEMU, the cached guest kernel and busybox from `builder::setup`).

#[path = "../tests/common/mod.rs"]
mod common;

use builder::setup::{ensure_assets, SetupOptions};
use builder::{BaseSpec, BuildPlan, BuildRequest, MemorySink, Step};
use std::time::{Duration, Instant};

const WORK: &str = "dd if=/dev/zero bs=1M count=256 2>/dev/null | sha256sum";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // In the sandbox: a build with the one step; its phase time.
    let home = common::home();
    let repo = common::Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("cpu", BaseSpec::Busybox);
    plan.steps = vec![Step::Run {
        command: WORK.into(),
    }];
    let log = MemorySink::default();
    let mut req = BuildRequest::new(home.path(), repo.source(), &log);
    req.base_cache = Some(common::test_cache().join("bases"));
    let out = builder::build_plan(&req, plan).unwrap_or_else(|e| panic!("{e}"));
    let host = out
        .phases
        .iter()
        .find(|(n, _)| *n == "steps")
        .map_or(Duration::ZERO, |(_, d)| *d);

    // In a TCG microVM: boot + the same work.
    let assets = ensure_assets(&SetupOptions {
        home: common::test_cache().join("setup-home"),
        kernel: None,
        kernel_modules: None,
        progress: false,
    })
    .expect("setup: kernel and busybox");
    let start = Instant::now();
    let vm = testvm::Vm::new(&assets.kernel.image)
        .busybox(&assets.busybox)
        .cpus(1)
        .memory_mib(512)
        .timeout(Duration::from_secs(900))
        .command(&format!(
            "s=$(cut -d' ' -f1 /proc/uptime); {WORK}; e=$(cut -d' ' -f1 /proc/uptime); \
             echo WORK-S=$(awk \"BEGIN {{ print $e - $s }}\")"
        ))
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let wall = start.elapsed();
    let work: f64 = vm
        .lines
        .iter()
        .find_map(|l| l.split("WORK-S=").nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no WORK-S line:\n{}", vm.log()));
    println!(
        "{:<44} {:>9}",
        "one CPU-bound step (sha256 of 256 MiB)", "seconds"
    );
    println!(
        "{:<44} {:>9.2}",
        "unprivileged sandbox on the host",
        host.as_secs_f64()
    );
    println!(
        "{:<44} {:>9.2}",
        "TCG microVM, boot to exit",
        wall.as_secs_f64()
    );
    println!("{:<44} {:>9.2}", "TCG microVM, the work alone", work);
    println!(
        "microVM / sandbox: {:.1}x (work alone {:.1}x); the issue's budget is 2x",
        wall.as_secs_f64() / host.as_secs_f64(),
        work / host.as_secs_f64()
    );
}
