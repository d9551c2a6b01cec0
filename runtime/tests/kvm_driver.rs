//! The `kvm` driver end to end, inside the nested test host: level 1 runs this
//! test binary (built statically), whose level-1 half boots a busybox app with
//! BytePort's guest init under `byteport-vmm`, fetches its page through the
//! forwarded loopback port (TCP → vsock `CONNECT` → guest init → app), checks
//! that the app's log lines came over the vsock log link, and stops the VM
//! gracefully through the ACPI power button.

use testvm::nested as nested_host;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::boot::{init_config, wanted_modules, AppSpec, Driver};
use runtime::drivers::kvm::{KvmSpec, KvmVm};
use runtime::initramfs;

const PAGE: &str = "hello from a BytePort microVM over vsock";
const APP_PORT: u16 = 8080;

const L1_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp
for m in irqbypass kvm kvm-amd; do insmod /lib/modules/$m.ko || echo L1-INSMOD-FAIL-$m; done
ip link set lo up
[ -e /dev/kvm ] && echo L1-KVM-READY
/kvm-driver-test --ignored --exact level1_half --nocapture --test-threads 1
echo L1-TEST-EXIT=$?
poweroff -f
"#;

/// Prepares the artifact (rootfs + initramfs with guest init, modules and
/// config) on this host and boots level 1 with it.
#[test]
fn kvm_driver_serves_an_app_in_nested_host() {
    let l1 = nested_host::Level1::new(L1_INIT);
    std::fs::copy(
        testvm::build::static_test_binary("runtime", "kvm_driver")
            .unwrap_or_else(|e| panic!("{e}")),
        l1.root.join("kvm-driver-test"),
    )
    .unwrap();

    // The app's rootfs: busybox and one page.
    let rootdir = l1.scratch("rootfs");
    for d in ["bin", "dev", "proc", "sys", "tmp", "run", "etc", "www"] {
        std::fs::create_dir_all(rootdir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootdir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootdir.join("bin/sh")).unwrap();
    std::fs::write(rootdir.join("www/index.html"), format!("{PAGE}\n")).unwrap();
    nested_host::ext4(&rootdir, &l1.root.join("l2/rootfs.ext4"), 16);

    // The initramfs, with the modules and the init config the supervisor
    // uses for the kvm driver.
    let modules_dir = &l1.kernel.modules_dir;
    let driver = Driver::Kvm {
        vmm: "/byteport-vmm".into(),
    };
    let modules = initramfs::resolve_modules(modules_dir, &wanted_modules(&driver)).unwrap();
    let work = l1.scratch("initrd");
    let base = work.join("base.cpio.gz");
    let in_guest = initramfs::write_base(
        &base,
        &testvm::build::workspace_bin("guest-init", "byteport-init")
            .unwrap_or_else(|e| panic!("{e}")),
        &modules,
    )
    .unwrap();
    let spec = AppSpec {
        app: "hello".into(),
        deploy: 1,
        kernel: "/l2/vmlinuz".into(),
        modules_dir: None,
        rootfs: "/l2/rootfs.ext4".into(),
        cpus: 1,
        memory_mib: 256,
        processes: vec![(
            "web".into(),
            format!("/bin/busybox httpd -f -vv -p {APP_PORT} -h /www"),
        )],
        port: Some(APP_PORT),
        env: BTreeMap::new(),
        uid: 1000,
        gid: 1000,
        workdir: "/".into(),
    };
    let config = init_config(&spec, &driver, in_guest);
    assert!(config.network.is_none() && config.vsock.is_some());
    let cfg = work.join("config.cpio.gz");
    initramfs::write_config(&cfg, &serde_json::to_vec(&config).unwrap()).unwrap();
    let mut initrd = std::fs::read(&base).unwrap();
    initrd.extend(std::fs::read(&cfg).unwrap());
    std::fs::write(l1.root.join("l2/initrd"), initrd).unwrap();

    let c = l1.boot(1024, 2, Duration::from_secs(420), "L1-TEST-EXIT");
    let all = c.text();
    assert!(!c.panicked, "the level-1 kernel panicked:\n{all}");
    assert!(c.has("L1-KVM-READY"), "level 1 has no /dev/kvm:\n{all}");
    assert!(
        c.has("L1-READY"),
        "the guest init never reported READY:\n{all}"
    );
    assert_eq!(
        c.value("L1-PAGE="),
        Some(PAGE),
        "the app's page did not come through the forwarded port:\n{all}"
    );
    assert!(
        c.value("L1-VSOCK-RECORDS=")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "no log record came over vsock:\n{all}"
    );
    assert!(c.has("L1-STOPPED"), "graceful stop failed:\n{all}");
    assert!(c.has("L1-TEST-EXIT=0"), "the level-1 half failed:\n{all}");
}

fn get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET / HTTP/1.0\r\nHost: hello\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Runs inside level 1 (see the L1 init above): the driver, for real.
#[test]
#[ignore = "runs inside the nested test host, started by kvm_driver_serves_an_app_in_nested_host"]
fn level1_half() {
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = logs.clone();
    let spec = KvmSpec {
        name: "hello-1".into(),
        vmm: "/byteport-vmm".into(),
        kernel: "/l2/vmlinuz".into(),
        initrd: "/l2/initrd".into(),
        rootfs: Some("/l2/rootfs.ext4".into()),
        cpus: 1,
        memory_mib: 256,
        guest_port: Some(APP_PORT),
        dir: "/run/vm".into(),
    };
    let mut vm = KvmVm::start(
        &spec,
        Arc::new(move |p: &str, s: &str, t: &str| {
            sink.lock().unwrap().push(format!("{p} {s} {t}"));
        }),
    )
    .unwrap();
    vm.wait_ready(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("L1-READY");

    let addr = vm.host_addr.expect("forwarded port");
    let deadline = Instant::now() + Duration::from_secs(120);
    let page = loop {
        match get(addr) {
            Ok(r) if r.contains("200 OK") => break r,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no page: {other:?}\n{}",
                    vm.console_tail()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    let body = page.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    println!("L1-PAGE={body}");

    // httpd -vv logs each request on stderr: it reaches us as an app record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with("web err"))
    {
        assert!(Instant::now() < deadline, "no app log line; logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("L1-VSOCK-RECORDS={}", vm.vsock_records());

    let t = Instant::now();
    vm.stop(Duration::from_secs(60));
    let status = vm.exit_status().expect("the VMM has exited");
    let events = vm.drain_events();
    assert!(
        events.iter().any(|e| e == "POWEROFF"),
        "the guest did not power off by itself: {events:?}"
    );
    println!(
        "L1-STOPPED in {:.1}s ({status}); events {events:?}",
        t.elapsed().as_secs_f64()
    );
}
