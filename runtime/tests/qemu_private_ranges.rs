//! A guest cannot reach private-range addresses either. The test makes its
//! own: a network namespace of its own with 10.77.0.1, 172.16.77.1 and
//! 192.168.77.1 on its loopback and a listener on each — traffic never
//! leaves the namespace, and no real private or public address is ever
//! contacted. Inside that namespace a helper (this test binary again)
//! boots an app VM whose worker tries each address, and the egress address
//! of an app without an egress proxy.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ADDRS: [&str; 3] = ["10.77.0.1", "172.16.77.1", "192.168.77.1"];

#[test]
fn private_range_addresses_are_unreachable_from_a_guest() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: making a network namespace needs root");
        return;
    }
    let mut helper = Command::new(std::env::current_exe().unwrap());
    helper.args(["--ignored", "--exact", "helper_in_own_netns", "--nocapture"]);
    // SAFETY: unshare is async-signal-safe; it only affects the child.
    unsafe {
        helper.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = helper.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the helper failed:\n{text}\n{err}");
    for a in ADDRS {
        assert!(text.contains(&format!("RESULT REFUSED-{a}")), "{text}");
    }
    assert!(text.contains("RESULT REFUSED-egress"), "{text}");
    assert!(text.contains("RESULT TRAPS-UNTOUCHED"), "{text}");
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2)");
    assert!(st.success(), "ip {args:?}");
}

#[test]
#[ignore = "runs in a network namespace of its own, started by private_range_addresses_are_unreachable_from_a_guest"]
fn helper_in_own_netns() {
    ip(&["link", "set", "lo", "up"]);
    let hits = Arc::new(AtomicUsize::new(0));
    let mut port = 0;
    for a in ADDRS {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        let l = TcpListener::bind((a, port)).unwrap();
        port = l.local_addr().unwrap().port();
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                h.fetch_add(1, Ordering::SeqCst);
                drop(c);
            }
        });
    }
    // The traps answer, seen from here: the guest's failure is the VM's doing.
    for a in ADDRS {
        std::net::TcpStream::connect((a, port)).expect("a trap answers locally");
    }
    while hits.load(Ordering::SeqCst) < ADDRS.len() {
        std::thread::sleep(Duration::from_millis(10));
    }
    hits.store(0, Ordering::SeqCst);

    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let probe = format!(
        r#"for a in {addrs}; do
  if echo x | nc -w 3 $a {port} >/dev/null 2>&1; then echo OPEN-$a; else echo REFUSED-$a; fi
done
if echo x | nc -w 3 10.0.2.100 3128 >/dev/null 2>&1; then echo OPEN-egress; else echo REFUSED-egress; fi
echo PROBE-DONE
exec sleep 100000"#,
        addrs = ADDRS.join(" ")
    );
    let spec = common::spec(&g, "private", &rootfs, &[("probe", &probe)], None, None);
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let logs = common::Logs::default();
    let app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert!(
        logs.wait_for("probe", "PROBE-DONE", Duration::from_secs(180)),
        "{}\n{}",
        logs.dump(),
        app.vm.console_tail()
    );
    for line in logs.of("probe") {
        println!("RESULT {line}");
    }
    if hits.load(Ordering::SeqCst) == 0 {
        println!("RESULT TRAPS-UNTOUCHED");
    }
}
