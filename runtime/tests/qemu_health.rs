//! Health checks that cannot pass for an app that does not serve, against
//! real app VMs (QEMU TCG): an app whose web process never listens fails
//! with "never listened on port 8080"; one whose command does not exist
//! (`python3` on a busybox image) fails as a crash loop, naming the exit
//! status and the app's own error. Before, both were "healthy": QEMU's port
//! forward accepts connections whether or not the guest listens.

mod common;

use std::time::Duration;

use runtime::health::{wait_healthy, HealthCheck, HealthError, HealthProbe};

fn tcp_check(deadline: Duration) -> HealthCheck {
    HealthCheck {
        probe: HealthProbe::Tcp,
        port: 8080,
        interval: Duration::from_millis(250),
        probe_timeout: Duration::from_secs(2),
        deadline,
    }
}

#[test]
fn an_app_that_never_listens_fails_with_the_reason() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let spec = common::spec(
        &g,
        "quiet",
        &rootfs,
        &[(
            "web",
            "echo starting but never listening; exec sleep 100000",
        )],
        Some(8080),
        None,
    );
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let logs = common::Logs::default();
    let mut app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    // The forward accepts: what the old check took for health.
    let addr = app.vm.host_addr().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    let e = wait_healthy(app.vm.as_mut(), &tcp_check(Duration::from_secs(20))).unwrap_err();
    assert!(
        matches!(e, HealthError::NeverListened { port: 8080, .. }),
        "{e}"
    );
    let text = e.to_string();
    println!("health check of a never-listening app: {text}");
    assert!(text.contains("never listened on port 8080"), "{text}");
    assert!(
        text.contains("starting but never listening"),
        "its output is in the reason: {text}"
    );
}

#[test]
fn a_crash_looping_app_fails_with_its_exit_and_error() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let spec = common::spec(
        &g,
        "crashy",
        &rootfs,
        &[("web", "python3 app.py")],
        Some(8080),
        None,
    );
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let logs = common::Logs::default();
    let mut app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let e = wait_healthy(app.vm.as_mut(), &tcp_check(Duration::from_secs(90))).unwrap_err();
    let text = e.to_string();
    println!("health check of a crash-looping app: {text}");
    assert!(matches!(e, HealthError::CrashLoop { .. }), "{text}");
    assert!(text.contains("status=127"), "{text}");
    assert!(text.contains("python3: not found"), "{text}");
}
