//! VMs of a killed daemon are not orphaned:
//!
//! - a process that started a VM (through `runtime::boot`, from a thread
//!   that has since ended, as a daemon's blocking pool does) is killed with
//!   SIGKILL: its VM process dies with it (`PR_SET_PDEATHSIG`), and the
//!   next start's [`runtime::reap_leftovers`] removes the VM directory;
//! - a VM process that outlived its daemon anyway (started without the
//!   death signal and reparented, as an older version would have left it)
//!   is killed by `reap_leftovers`; a process that merely got a recorded
//!   pid is left alone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::process::{start_ticks, VmRecord};

fn wait_gone(pid: u32, ticks: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if start_ticks(pid).map_or(true, |t| t != ticks) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_vm_dies_with_the_daemon_that_started_it() {
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("run");
    let mut daemon = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_daemon_with_a_vm",
            "--nocapture",
        ])
        .env("BP_TEST_WORK", work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let mut vm_pid = None;
    let deadline = Instant::now() + Duration::from_secs(400);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(p) = line.strip_prefix("VM-PID=") {
            vm_pid = p.trim().parse::<u32>().ok();
        }
        if line.contains("ALIVE-AFTER-THREAD-EXIT") {
            break;
        }
        assert!(!line.contains("DIED-WITH-THREAD"), "{line}");
    }
    let vm_pid = vm_pid.expect("the helper daemon never started its VM");
    let ticks = start_ticks(vm_pid).expect("the VM runs");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGKILL) };
    daemon.wait().unwrap();
    assert!(
        wait_gone(vm_pid, ticks, Duration::from_secs(10)),
        "VM process {vm_pid} outlived its SIGKILLed daemon"
    );
    // The next start cleans up after it.
    let report = runtime::reap_leftovers(&run_dir);
    assert!(report.killed.is_empty(), "{report}");
    assert!(report.removed >= 1, "{report}");
    assert_eq!(std::fs::read_dir(run_dir.join("vms")).unwrap().count(), 0);
}

#[test]
#[ignore = "the daemon a_vm_dies_with_the_daemon_that_started_it kills"]
fn helper_daemon_with_a_vm() {
    let work = std::path::PathBuf::from(std::env::var_os("BP_TEST_WORK").unwrap());
    let g = common::guest();
    let rootfs = common::image(&work);
    let spec = common::spec(
        &g,
        "doomed",
        &rootfs,
        &[("web", "exec sleep 100000")],
        None,
        None,
    );
    let opts = common::qemu_opts(&g, &work.join("run"));
    let logs = common::Logs::default();
    // Booted from a thread that ends right after, like a blocking-pool thread.
    let app = std::thread::spawn(move || runtime::boot(&spec, &opts, logs.sink()))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("boot: {e}"));
    let pid = app.vm.pid().unwrap();
    println!("VM-PID={pid}");
    std::thread::sleep(Duration::from_secs(2));
    if start_ticks(pid).is_ok() {
        println!("ALIVE-AFTER-THREAD-EXIT");
    } else {
        println!("DIED-WITH-THREAD");
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_surviving_leftover_is_reaped_and_a_bystander_spared() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("run");
    let vms = run_dir.join("vms");
    // A QEMU whose daemon is gone and which has no death signal: started by
    // a shell that exits at once, so it is reparented.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "qemu-system-x86_64 -M microvm -accel tcg -m 64 -nodefaults -no-user-config \
             -display none -serial null -S -kernel {} </dev/null >/dev/null 2>&1 & echo $!",
            g.kernel.image.display()
        ))
        .output()
        .unwrap();
    let leftover: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let ppid = std::fs::read_to_string(format!("/proc/{leftover}/stat"))
        .unwrap()
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert_ne!(ppid, std::process::id().to_string(), "not reparented");
    let dir = vms.join("app-4.1");
    std::fs::create_dir_all(&dir).unwrap();
    let rec = VmRecord::of(leftover, vec![]).unwrap();
    rec.write(&dir).unwrap();

    // A bystander that holds a pid a record names, but not its start time.
    let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
    let dir2 = vms.join("app-3.1");
    std::fs::create_dir_all(&dir2).unwrap();
    let mut stale = VmRecord::of(bystander.id(), vec![]).unwrap();
    stale.start_ticks = stale.start_ticks.saturating_sub(1000);
    stale.write(&dir2).unwrap();

    let report = runtime::reap_leftovers(&run_dir);
    assert_eq!(report.killed.len(), 1, "{report:?}");
    assert_eq!(report.killed[0].pid, leftover);
    assert!(wait_gone(leftover, rec.start_ticks, Duration::from_secs(5)));
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was killed"
    );
    assert_eq!(report.gone, [dir2]);
    assert_eq!(report.removed, 2);
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}
