//! The builder's resource-limit checks (`tests/support/limits_checks.rs`)
//! as a program: each result on stdout as `PROBE-OK <check>: <detail>` or
//! `PROBE-FAIL <check>: <why>`, exit status 0 only if all passed.
//!
//! `tests/cgroup_v2_guest.rs` builds it statically and runs it in a QEMU
//! guest whose only hierarchy is cgroup v2. Usage: `limits_probe [BUSYBOX]`
//! (default `/bin/busybox`, a static busybox for the steps' rootfs).

#[path = "../tests/support/limits_checks.rs"]
mod checks;

fn main() {
    let busybox = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/bin/busybox".into());
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => {
            println!("PROBE-FAIL setup: temp dir: {e}");
            std::process::exit(1);
        }
    };
    let results = checks::run_all(std::path::Path::new(&busybox), work.path());
    let mut failed = 0;
    for (name, result) in &results {
        match result {
            Ok(detail) => println!("PROBE-OK {name}: {detail}"),
            Err(why) => {
                failed += 1;
                // One line per message line, so the host sees all of it.
                for (i, line) in why.lines().enumerate() {
                    let head = if i == 0 { "PROBE-FAIL" } else { "PROBE-FAIL+" };
                    println!("{head} {name}: {line}");
                }
            }
        }
    }
    println!("PROBE-DONE {} checks, {failed} failed", results.len());
    std::process::exit(i32::from(failed > 0));
}
