//! A guest that floods its log (busybox `yes`, as fast as the VM can) costs
//! the host bounded memory and CPU, its own log says `rate-limited`, and
//! the other processes' lines still get through.

mod common;

use std::time::{Duration, Instant};

/// (resident KiB, CPU seconds) of this process.
fn usage() -> (u64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    (rss, ticks / hz)
}

#[test]
fn a_log_flood_is_cut_announced_and_cheap_for_the_host() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let spec = common::spec(
        &g,
        "flood",
        &rootfs,
        &[
            ("flood", "exec yes"),
            ("late", "sleep 8; echo LATE-MARKER; exec sleep 100000"),
        ],
        None,
        None,
    );
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let logs = common::Logs::default();
    let app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let (rss0, cpu0) = usage();
    let t0 = Instant::now();
    let n0 = logs.of("flood").len();
    assert!(
        logs.wait_for("late", "LATE-MARKER", Duration::from_secs(120)),
        "another process's line was drowned:\n{}",
        app.vm.console_tail()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, cpu1) = usage();
    let secs = t0.elapsed().as_secs_f64();
    let lines = logs.of("flood");
    let passed = lines.iter().filter(|l| *l == "y").count() - n0.min(lines.len());
    let notices: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("rate-limited: "))
        .collect();
    let dropped: u64 = notices
        .iter()
        .filter_map(|l| l.split(' ').nth(1)?.parse::<u64>().ok())
        .sum();
    println!(
        "flood: {passed} lines passed in {secs:.1} s, {dropped} announced as dropped; host: +{} KiB resident, {:.2} s CPU ({:.0}% of one core)",
        rss1.saturating_sub(rss0),
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / secs
    );
    assert!(
        !notices.is_empty(),
        "no rate-limited notice in the app's log"
    );
    assert!(dropped > 0);
    // The guest init's budget per process: 1000 lines/s, bursts of 2000
    // (plus what was already in flight when counting started).
    let bound = 2000.0 + 1000.0 * (secs + 1.0) + 2000.0;
    assert!(
        (passed as f64) <= bound,
        "{passed} lines passed, bound {bound:.0}"
    );
    assert!(
        rss1.saturating_sub(rss0) < 64 * 1024,
        "the host grew by {} KiB during the flood",
        rss1 - rss0
    );
    assert!(
        (cpu1 - cpu0) < 0.5 * secs,
        "the host spent {:.1} s of CPU on {secs:.1} s of flood",
        cpu1 - cpu0
    );
}
