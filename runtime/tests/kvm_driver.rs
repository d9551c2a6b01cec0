//! The `kvm` driver end to end, inside the nested test host: level 1 runs this
//! test binary (built statically), whose level-1 half boots a busybox app with
//! BytePort's guest init under a jailed `byteport-vmm` and checks, from level 1:
//!
//! - the app's page comes through the forwarded loopback port (TCP → vsock
//!   `CONNECT` → guest init → app) once the health check — which waits for
//!   the guest init's `LISTENING`, sent over the records channel — passes;
//! - the VMM runs as its own uid, with seccomp on every thread, no
//!   capabilities, `no_new_privs`, in mount and network namespaces of its own;
//! - the app (uid 1000) cannot forge records: its vsock connection to the
//!   records port is refused (only guest root's privileged ports are let in);
//! - the app has no network device, and its one way out is its egress proxy
//!   (a stand-in in level 1 that tunnels one allowed target and refuses the
//!   rest), reached through `127.0.0.1:3128` in the guest;
//! - the app's database door: `127.0.0.1:5432` in the guest reaches the
//!   database endpoint (a stand-in in level 1 answering PostgreSQL's
//!   SSLRequest — the PostgreSQL server cannot run in level 1's initramfs;
//!   the QEMU test `qemu_database` uses the real one);
//! - the app's volume (made on this host with a note in it) is an extra
//!   read-write disk of the VMM, found by its filesystem UUID and mounted
//!   by the guest init at `/data`, owned by the app: it reads the note and
//!   writes beside it; the VMM process holds a share of the volume's lock;
//! - a stop presses the ACPI power button and the guest powers off; the VM's
//!   directory is gone once its handle is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::boot::{init_config, wanted_modules, AppSpec, Driver};
use runtime::drivers::kvm::{KvmSpec, KvmVm};
use runtime::drivers::AppVm;
use runtime::health::{wait_healthy, HealthCheck, HealthProbe};
use runtime::initramfs;
use runtime::EgressEndpoint;
use testvm::nested;

const PAGE: &str = "hello from a BytePort microVM over vsock";
const APP_PORT: u16 = 8080;
/// The allowed stand-in site and a forbidden port, both in level 1.
const SITE_PORT: u16 = 7777;
const FORBIDDEN_PORT: u16 = 7778;
/// The stand-in database's socket in level 1.
const DB_SOCKET: &str = "/run/db.sock";
/// The app's volume.
const VOLUME_BYTES: u64 = 32 << 20;

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

/// What the app's worker tries, as uid 1000.
fn probe_script() -> String {
    format!(
        r#"echo "NETDEVS $(ls /sys/class/net | tr '\n' ' ')"
echo "FORGE $(byteport-vsock-probe dial 1100 '[bp 1 init evt] FORGED' 2>&1)"
echo "EGRESS-ALLOWED $( (printf 'CONNECT 127.0.0.1:{SITE_PORT} HTTP/1.1\r\n\r\n'; sleep 1; echo ping; sleep 2) | nc -w 5 127.0.0.1 3128 | tr '\r\n' '  ')"
echo "EGRESS-FORBIDDEN $(printf 'CONNECT 127.0.0.1:{FORBIDDEN_PORT} HTTP/1.1\r\n\r\n' | nc -w 5 127.0.0.1 3128 | head -1)"
echo "PROXY-ENV $HTTPS_PROXY"
echo "DATABASE [$( (printf '\000\000\000\010\004\322\026\057'; sleep 2) | nc -w 4 127.0.0.1 5432 | tr -c 'A-Za-z' '.')]"
echo "VOLUME-NOTE $(cat /data/note)"
echo "VOLUME-WRITE $(echo from-l2 > /data/written && cat /data/written) $(stat -c %u /data)"
echo PROBE-DONE
exec sleep 100000"#
    )
}

fn app_spec(rootfs: &str, egress: Option<EgressEndpoint>) -> AppSpec {
    AppSpec {
        app: "hello".into(),
        deploy: 1,
        kernel: "/l2/vmlinuz".into(),
        modules_dir: None,
        rootfs: rootfs.into(),
        cpus: 1,
        memory_mib: 256,
        processes: vec![
            (
                "web".into(),
                format!("/bin/busybox httpd -f -vv -p {APP_PORT} -h /www"),
            ),
            ("probe".into(), probe_script()),
        ],
        port: Some(APP_PORT),
        env: Default::default(),
        uid: 1000,
        gid: 1000,
        workdir: "/".into(),
        egress,
        database: Some(EgressEndpoint::Unix(DB_SOCKET.into())),
        volumes: vec![],
        one_off: false,
        console: None,
    }
}

/// Prepares the artifact (rootfs + initramfs with guest init, modules and
/// config) on this host and boots level 1 with it.
#[test]
fn kvm_driver_serves_an_app_in_nested_host() {
    let l1 = nested::Level1::new(L1_INIT);
    std::fs::copy(
        testvm::build::static_test_binary("runtime", "kvm_driver")
            .unwrap_or_else(|e| panic!("{e}")),
        l1.root.join("kvm-driver-test"),
    )
    .unwrap();

    // The app's rootfs: busybox, one page, the vsock probe (for the forgery).
    let work = l1.scratch("rootfs");
    let probe = std::fs::read(l1.bins.join("byteport-vsock-probe")).unwrap();
    testvm::rootfs::busybox_ext4(
        &work,
        &l1.root.join("l2/rootfs.ext4"),
        &[
            ("/www/index.html", format!("{PAGE}\n").as_bytes(), 0o644),
            ("/bin/byteport-vsock-probe", &probe, 0o755),
        ],
        24,
    );

    // The initramfs, with the modules and the init config `boot` uses for
    // the kvm driver.
    let driver = Driver::Kvm {
        vmm: "/byteport-vmm".into(),
    };
    let modules =
        initramfs::resolve_modules(&l1.kernel.modules_dir, &wanted_modules(&driver)).unwrap();
    let work = l1.scratch("initrd");
    let base = work.join("base.cpio.gz");
    let init = testvm::build::workspace_bin("guest-init", "byteport-init")
        .unwrap_or_else(|e| panic!("{e}"));
    let in_guest = initramfs::write_base(&base, &init, &modules).unwrap();
    let spec = app_spec(
        "/l2/rootfs.ext4",
        Some(EgressEndpoint::Unix("/run/egress.sock".into())),
    );
    let mut config = init_config(&spec, &driver, in_guest.clone());
    assert!(config.network.is_none() && config.vsock.is_some());
    // The app's volume: made here (as `boot` makes it on first use), with a
    // note from this host; the guest finds it (and the rootfs) by UUID.
    let vol = l1.root.join("l2/vol.ext4");
    let sb = runtime::volume::create("data", &vol, VOLUME_BYTES, 1000, 1000).unwrap();
    let note = l1.scratch("note").join("note");
    std::fs::write(&note, "written on level 0\n").unwrap();
    let wrote = std::process::Command::new("debugfs")
        .args(["-w", "-R", &format!("write {} note", note.display())])
        .arg(&vol)
        .output()
        .unwrap();
    assert!(wrote.status.success(), "{wrote:?}");
    config.volumes = vec![guest_init::config::VolumeMount {
        name: "data".into(),
        uuid: sb.uuid,
        path: "/data".into(),
    }];
    config.root.as_mut().unwrap().uuid = Some(
        guest_init::ext4::read(&l1.root.join("l2/rootfs.ext4"))
            .unwrap()
            .unwrap()
            .uuid,
    );
    let cfg = work.join("config.cpio.gz");
    initramfs::write_config(&cfg, &serde_json::to_vec(&config).unwrap()).unwrap();
    let mut initrd = std::fs::read(&base).unwrap();
    initrd.extend(std::fs::read(&cfg).unwrap());
    std::fs::write(l1.root.join("l2/initrd"), initrd).unwrap();

    // A one-off VM whose shell runs on a terminal (`byteport run` with a
    // TTY): the same rootfs, a config as `boot` makes it for a console.
    let mut one_off = app_spec("/l2/rootfs.ext4", None);
    one_off.one_off = true;
    one_off.port = None;
    one_off.database = None;
    one_off.processes = vec![("run".into(), "sh".into())];
    one_off.console = Some(runtime::Tty {
        term: "xterm-256color".into(),
        cols: 100,
        rows: 30,
    });
    let mut console_config = init_config(&one_off, &driver, in_guest);
    console_config.root = config.root.clone();
    let cfg = work.join("console-config.cpio.gz");
    initramfs::write_config(&cfg, &serde_json::to_vec(&console_config).unwrap()).unwrap();
    let mut initrd = std::fs::read(&base).unwrap();
    initrd.extend(std::fs::read(&cfg).unwrap());
    std::fs::write(l1.root.join("l2/initrd-console"), initrd).unwrap();

    let c = l1.boot(1024, 2, Duration::from_secs(600), "L1-TEST-EXIT");
    let all = c.text();
    assert!(!c.panicked, "the level-1 kernel panicked:\n{all}");
    assert!(c.has("L1-KVM-READY"), "level 1 has no /dev/kvm:\n{all}");
    assert!(
        c.has("L1-READY"),
        "the guest init never reported READY:\n{all}"
    );
    assert!(c.has("L1-HEALTHY"), "the health check did not pass:\n{all}");
    assert_eq!(
        c.value("L1-PAGE="),
        Some(PAGE),
        "the app's page did not come through the forwarded port:\n{all}"
    );
    assert!(c.has("L1-VMM-CONFINED"), "the VMM is not confined:\n{all}");
    assert!(
        c.has("L1-FORGERY-REFUSED"),
        "an app forged a record:\n{all}"
    );
    assert!(
        c.has("L1-EGRESS-ONLY"),
        "the app's way out is wrong:\n{all}"
    );
    assert!(
        c.has("L1-DATABASE-DOOR"),
        "the database door does not work:\n{all}"
    );
    assert!(
        c.has("L1-VOLUME-OK"),
        "the volume was not attached and mounted:\n{all}"
    );
    assert!(c.has("L1-STOPPED"), "graceful stop failed:\n{all}");
    assert!(
        c.has("L1-CONSOLE-OK"),
        "the one-off VM's terminal did not work:\n{all}"
    );
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

/// Level 1's stand-ins: a site that upper-cases, a forbidden listener, and
/// the egress proxy on a Unix socket (tunnels to the site, refuses the rest).
fn stand_ins() {
    let site = TcpListener::bind(("127.0.0.1", SITE_PORT)).unwrap();
    std::thread::spawn(move || {
        for mut c in site.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    let _ = c.write_all(&buf[..n].to_ascii_uppercase());
                }
            });
        }
    });
    // The database: answers PostgreSQL's SSLRequest with 'N' (no TLS), as
    // the real server does.
    let _ = std::fs::remove_file(DB_SOCKET);
    let db = UnixListener::bind(DB_SOCKET).unwrap();
    std::thread::spawn(move || {
        for mut c in db.incoming().flatten() {
            let mut req = [0u8; 8];
            if c.read_exact(&mut req).is_ok() && req == [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f] {
                let _ = c.write_all(b"N");
            }
        }
    });
    let forbidden = TcpListener::bind(("127.0.0.1", FORBIDDEN_PORT)).unwrap();
    std::thread::spawn(move || for _ in forbidden.incoming() {});
    let _ = std::fs::remove_file("/run/egress.sock");
    let proxy = UnixListener::bind("/run/egress.sock").unwrap();
    std::thread::spawn(move || {
        for c in proxy.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut c = c;
                if first.trim() == format!("CONNECT 127.0.0.1:{SITE_PORT} HTTP/1.1") {
                    let up = TcpStream::connect(("127.0.0.1", SITE_PORT)).unwrap();
                    c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .unwrap();
                    let mut up2 = up.try_clone().unwrap();
                    let mut c2 = c.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut r, &mut up2);
                        let _ = up2.shutdown(Shutdown::Write);
                    });
                    let mut up = up;
                    let _ = std::io::copy(&mut up, &mut c2);
                } else {
                    let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n");
                }
            });
        }
    });
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Runs inside level 1 (see the L1 init above): the driver, for real.
#[test]
#[ignore = "runs inside the nested test host, started by kvm_driver_serves_an_app_in_nested_host"]
fn level1_half() {
    stand_ins();
    let logs: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = logs.clone();
    let jail = runtime::jail::Jail::for_this_host().expect("level 1 runs this as root");
    let dir = std::path::PathBuf::from("/run/vm1");
    let volume = runtime::volume::claim(
        &runtime::volume::Volume {
            name: "data".into(),
            image: "/l2/vol.ext4".into(),
            mount: "/data".into(),
            size_bytes: VOLUME_BYTES,
        },
        1000,
        1000,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let lock = runtime::volume::lock_path(&volume.volume.image);
    let spec = KvmSpec {
        name: "hello-1".into(),
        vmm: "/byteport-vmm".into(),
        kernel: "/l2/vmlinuz".into(),
        initrd: "/l2/initrd".into(),
        rootfs: Some("/l2/rootfs.ext4".into()),
        cpus: 1,
        memory_mib: 256,
        guest_port: Some(APP_PORT),
        dir: dir.clone(),
        egress: Some(EgressEndpoint::Unix("/run/egress.sock".into())),
        database: Some(EgressEndpoint::Unix(DB_SOCKET.into())),
        jail: Some(jail.clone()),
        checked_process: Some("web".into()),
        volumes: vec![Arc::new(volume)],
        console: false,
    };
    let mut vm = KvmVm::start(
        &spec,
        Arc::new(move |p: &str, s: &str, t: &str| {
            sink.lock().unwrap().push(format!("{p} {s} {t}"));
        }),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_ready(Duration::from_secs(400))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("L1-READY");

    // Confinement of the VMM process.
    let pid = vm.pid().unwrap();
    let uid = status_field(pid, "Uid:");
    assert!(
        uid.split_whitespace().all(|u| u != "0"),
        "VMM runs as root: {uid}"
    );
    assert_eq!(status_field(pid, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    let ns = |p: u32, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let me = std::process::id();
    assert_ne!(ns(pid, "mnt"), ns(me, "mnt"));
    assert_ne!(ns(pid, "net"), ns(me, "net"), "the VMM shares our network");
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for t in tasks.flatten() {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("kvm-") {
            continue; // KVM's kernel worker thread
        }
        assert!(
            s.contains("Seccomp:\t2"),
            "thread {} unconfined",
            comm.trim()
        );
    }
    println!("L1-VMM-CONFINED uid {uid}");

    let check = HealthCheck {
        probe: HealthProbe::Http {
            method: "GET".into(),
            path: "/".into(),
        },
        port: APP_PORT,
        interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(300),
    };
    wait_healthy(&mut vm, &check).unwrap_or_else(|e| panic!("{e}\n{}", vm.console_tail()));
    println!("L1-HEALTHY");
    let page = get(vm.host_addr.expect("forwarded port")).unwrap();
    let body = page.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    println!("L1-PAGE={body}");

    let deadline = Instant::now() + Duration::from_secs(300);
    while !logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l == "probe out PROBE-DONE")
    {
        assert!(Instant::now() < deadline, "no probe result; logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out: Vec<String> = logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("probe out ").map(String::from))
        .collect();
    println!("L1-PROBE {out:?}");
    let events = vm.drain_events();
    assert!(!events.iter().any(|e| e.contains("FORGED")), "{events:?}");
    let forge = out.iter().find(|l| l.starts_with("FORGE ")).unwrap();
    assert!(!forge.contains("pong"), "{forge}");
    println!("L1-FORGERY-REFUSED ({forge})");
    assert!(out.iter().any(|l| l.trim() == "NETDEVS lo"), "{out:?}");
    let allowed = out
        .iter()
        .find(|l| l.starts_with("EGRESS-ALLOWED"))
        .unwrap();
    assert!(
        allowed.contains("200 Connection established") && allowed.contains("PING"),
        "{allowed}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("EGRESS-FORBIDDEN HTTP/1.1 403")),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| l == "PROXY-ENV http://127.0.0.1:3128"),
        "{out:?}"
    );
    println!("L1-EGRESS-ONLY");
    assert!(out.iter().any(|l| l == "DATABASE [N]"), "{out:?}");
    println!("L1-DATABASE-DOOR");
    assert!(
        out.iter().any(|l| l == "VOLUME-NOTE written on level 0"),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| l == "VOLUME-WRITE from-l2 1000"),
        "{out:?}"
    );
    let held = (10..16)
        .any(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|p| p == lock));
    assert!(held, "the VMM holds no share of the volume's lock");
    println!("L1-VOLUME-OK");

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
    drop(vm);
    assert!(!dir.exists(), "the VM directory stayed");
    console_half(jail);
}

/// A one-off VM with a terminal: its shell's bytes come and go raw over
/// the console connection, the window is the one given and then the one
/// resized to, the exit status is the shell's, and the command (the app's
/// uid) cannot reach the console's ports itself.
fn console_half(jail: runtime::jail::Jail) {
    let dir = std::path::PathBuf::from("/run/vm2");
    let spec = KvmSpec {
        name: "hello-run".into(),
        vmm: "/byteport-vmm".into(),
        kernel: "/l2/vmlinuz".into(),
        initrd: "/l2/initrd-console".into(),
        rootfs: Some("/l2/rootfs.ext4".into()),
        cpus: 1,
        memory_mib: 256,
        guest_port: None,
        dir: dir.clone(),
        egress: None,
        database: None,
        jail: Some(jail),
        // As `boot` sets it for a one-off VM: its exit is the result.
        checked_process: Some("run".into()),
        volumes: vec![],
        console: true,
    };
    let mut vm = KvmVm::start(&spec, Arc::new(|_: &str, _: &str, _: &str| {}))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.wait_ready(Duration::from_secs(400))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut console = vm.take_console().expect("a console");
    assert!(
        vm.take_console().is_none(),
        "the console was given out twice"
    );
    let shown = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let (mut console, shown) = (console.try_clone().unwrap(), shown.clone());
        move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = console.read(&mut b) {
                if n == 0 {
                    break;
                }
                shown.lock().unwrap().extend_from_slice(&b[..n]);
            }
        }
    });
    let wait_shown = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !String::from_utf8_lossy(&shown.lock().unwrap()).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}: {:?}",
                String::from_utf8_lossy(&shown.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    console
        .write_all(b"echo $((6*7)); tty; echo $TERM; stty size\n")
        .unwrap();
    wait_shown("\r\n30 100\r\n");
    wait_shown("\r\n42\r\n");
    wait_shown("/dev/pts/");
    wait_shown("\r\nxterm-256color\r\n");
    assert!(vm.resize_console(132, 43));
    std::thread::sleep(Duration::from_millis(500));
    console.write_all(b"stty size\n").unwrap();
    wait_shown("\r\n43 132\r\n");
    // The attack: the command (uid 1000) dials the console's host ports to
    // forge window changes or bytes; both were taken by PID 1, and the
    // VMM admits only privileged source ports there.
    console
        .write_all(b"for p in 1101 1102; do byteport-vsock-probe dial $p 'WINCH 7 7' 2>&1 | sed \"s/^/DIAL-$p /\"; done; stty size\n")
        .unwrap();
    wait_shown("DIAL-1102 ");
    std::thread::sleep(Duration::from_secs(1));
    let text = String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    assert!(
        !text.contains("\r\n7 7\r\n"),
        "a forged window change landed: {text:?}"
    );
    for port in ["1101", "1102"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("DIAL-{port} ")))
            .unwrap_or_default();
        assert!(
            line.contains("vsock connect"),
            "the app reached port {port}: {text:?}"
        );
    }
    console.write_all(b"exit 3\n").unwrap();
    let status = runtime::one_off::wait_exit(&mut vm, Duration::from_secs(120));
    assert!(
        matches!(status, Ok(3)),
        "{status:?} {:?} {text:?}",
        vm.drain_events()
    );
    println!(
        "L1-CONSOLE-OK {:?}",
        text.lines()
            .filter(|l| l.starts_with("DIAL-"))
            .collect::<Vec<_>>()
    );
    drop(vm);
    assert!(!dir.exists(), "the VM directory stayed");
}
