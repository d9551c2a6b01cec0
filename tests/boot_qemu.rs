//! A real app microVM under QEMU (TCG on these machines): the builder makes
//! a busybox artifact, the runtime boots it with the Debian cloud kernel and
//! BytePort's guest init, and the app answers HTTP through the forwarded
//! port; its output arrives as log records; a stop powers the guest off.
//! (The runtime's own tests cover the drivers in depth; this one checks
//! that a builder artifact is what the runtime boots.)

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use builder::{build_plan, BaseSpec, BuildPlan, BuildRequest, MemorySink, Source, Step};
use runtime::health::{wait_healthy, HealthCheck, HealthProbe};
use runtime::{boot, AppSpec, BootOptions};

#[test]
fn busybox_app_boots_serves_logs_and_stops() {
    let assets = support::assets::guest_assets();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("index.html"),
        "<h1>hello from a BytePort microVM</h1>\n",
    )
    .unwrap();

    let mut plan = BuildPlan::new("bootcheck", BaseSpec::Busybox);
    plan.steps = vec![Step::Copy {
        from: ".".into(),
        to: "/app".into(),
    }];
    let sink = MemorySink::default();
    let home = work.path().join("home");
    let mut req = BuildRequest::new(&home, Source::Dir(src.clone()), &sink);
    req.base_cache = Some(support::assets::cache_dir().join("bases"));
    let built = build_plan(&req, plan).expect("build the busybox artifact");

    let records: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink_records = records.clone();
    let spec = AppSpec {
        volumes: vec![],
        database: None,
        one_off: false,
        console: None,
        app: "bootcheck".into(),
        deploy: 1,
        kernel: assets.kernel.image.clone(),
        modules_dir: assets.kernel.modules_dir.clone(),
        rootfs: built.rootfs_path.clone(),
        cpus: 1,
        memory_mib: 256,
        processes: vec![
            ("web".into(), "busybox httpd -f -p 8080 -h /app".into()),
            (
                "ticker".into(),
                "echo hello-from-$GREETING; while true; do sleep 60; done".into(),
            ),
        ],
        port: Some(8080),
        env: BTreeMap::from([("GREETING".into(), "worker".into())]),
        uid: 1000,
        gid: 1000,
        workdir: "/app".into(),
        egress: None,
    };
    let opts = BootOptions {
        run_dir: work.path().join("run"),
        init_binary: support::assets::init_binary(),
        driver: runtime::Driver::Qemu {
            qemu: support::assets::qemu(),
            accel: "tcg".into(),
        },
        ready_timeout: Duration::from_secs(180),
        jail: runtime::jail::Jail::for_this_host().ok(),
    };
    let mut app = boot(
        &spec,
        &opts,
        Arc::new(move |process: &str, _stream: &str, text: &str| {
            sink_records
                .lock()
                .unwrap()
                .push((process.to_string(), text.to_string()))
        }),
    )
    .unwrap_or_else(|e| panic!("boot failed: {e}"));

    let addr = app.vm.host_addr().expect("web port forwarded");
    let check = HealthCheck {
        probe: HealthProbe::Http {
            method: "GET".into(),
            path: "/".into(),
        },
        port: 8080,
        interval: Duration::from_millis(250),
        probe_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
    };
    wait_healthy(app.vm.as_mut(), &check)
        .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", app.vm.console_tail()));
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: bootcheck.localhost\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    s.read_to_string(&mut page).unwrap();
    assert!(page.contains("hello from a BytePort microVM"), "{page}");

    // The worker's output came through as a log record with its name and env.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !records
        .lock()
        .unwrap()
        .iter()
        .any(|(p, t)| p == "ticker" && t == "hello-from-worker")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no ticker record: {:?}",
            records.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let events = app.vm.drain_events();
    assert!(
        events.iter().any(|e| e.starts_with("STARTED web")),
        "{events:?}"
    );
    app.vm.stop(Duration::from_secs(60));
    assert!(app.vm.exit_status().is_some(), "the guest powered off");
}
