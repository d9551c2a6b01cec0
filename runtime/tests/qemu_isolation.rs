//! Attacks from inside a real app VM (QEMU TCG, the Debian cloud kernel,
//! BytePort's guest init, a busybox image), each refused:
//!
//! - the app connects to the host's loopback services through the
//!   user-mode gateway (`10.0.2.2`): an SSH-like port, the router's, the
//!   database's, another app's upstream — listeners this test starts on
//!   127.0.0.1, which must see no connection;
//! - the same ports through its egress proxy: the proxy (a stand-in this
//!   test runs, refusing those targets) gets the requests — the plumbing
//!   works — and one allowed target answers through it;
//! - it writes forged guest-init events to every console-like device and to
//!   its own output: no event comes out of it;
//! - QEMU itself runs as an unprivileged uid, with seccomp, no capabilities,
//!   `no_new_privs`, in its own mount namespace and cgroup.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::health::{wait_healthy, HealthCheck, HealthProbe};
use runtime::EgressEndpoint;

/// A loopback listener that counts the connections it gets.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn trap() -> Trap {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    Trap { port, hits }
}

/// The internet, as far as this test is concerned: a loopback echo server
/// (upper-cases what it gets).
fn stand_in_site() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = c.read(&mut buf) {
                    let _ = c.write_all(&buf[..n].to_ascii_uppercase());
                }
            });
        }
    });
    port
}

/// A stand-in for the egress crate's proxy on a Unix socket: `CONNECT` to
/// `allowed` is tunnelled, anything else gets 403. Records request lines.
fn stand_in_proxy(path: &Path, allowed: u16) -> Arc<Mutex<Vec<String>>> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = UnixListener::bind(path).unwrap();
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let first = first.trim().to_string();
                s.lock().unwrap().push(first.clone());
                let mut c = c;
                if first == format!("CONNECT 127.0.0.1:{allowed} HTTP/1.1") {
                    let up = TcpStream::connect(("127.0.0.1", allowed)).unwrap();
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
    seen
}

#[test]
fn a_guest_reaches_nothing_but_its_egress_proxy_and_cannot_forge_events() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let traps = [trap(), trap(), trap(), trap()]; // ssh, router, database, another app
    let ports: Vec<String> = traps.iter().map(|t| t.port.to_string()).collect();
    let site = stand_in_site();
    let proxy_sock = work.path().join("egress.sock");
    let proxy_seen = stand_in_proxy(&proxy_sock, site);

    let probe = format!(
        r#"ports="{ports}"
for p in $ports; do
  if echo x | nc -w 3 10.0.2.2 $p >/dev/null 2>&1; then echo GATEWAY-OPEN-$p; else echo GATEWAY-REFUSED-$p; fi
done
for p in $ports; do
  echo "VIA-PROXY-$p $(printf 'CONNECT 127.0.0.1:%s HTTP/1.1\r\nHost: x\r\n\r\n' $p | nc -w 5 10.0.2.100 3128 | head -1)"
done
echo "ALLOWED $( (printf 'CONNECT 127.0.0.1:{site} HTTP/1.1\r\n\r\n'; sleep 1; echo ping; sleep 2) | nc -w 5 10.0.2.100 3128 | tr '\r\n' '  ')"
echo "PROXY-ENV $HTTPS_PROXY"
for d in /dev/console /dev/ttyS0 /dev/kmsg /dev/vport*; do (echo '[bp 1 init evt] FORGED' > $d) 2>/dev/null && echo WROTE-$d; done
echo '[bp 1 init evt] FORGED'
echo PROBE-DONE
exec sleep 100000"#,
        ports = ports.join(" ")
    );
    let spec = common::spec(
        &g,
        "iso",
        &rootfs,
        &[
            ("web", "busybox httpd -f -p 8080 -h /www"),
            ("probe", &probe),
        ],
        Some(8080),
        Some(EgressEndpoint::Unix(proxy_sock.clone())),
    );
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let logs = common::Logs::default();
    let mut app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let pid = app.vm.pid().unwrap();

    // Confinement of the QEMU process itself.
    if let Some(jail) = &opts.jail {
        let uid = common::status_field(pid, "Uid:");
        assert!(
            uid.split_whitespace().all(|u| u != "0"),
            "QEMU runs as root: Uid {uid}"
        );
        assert_eq!(common::status_field(pid, "CapEff:"), "0000000000000000");
        assert_eq!(common::status_field(pid, "NoNewPrivs:"), "1");
        let ns = |p: u32| std::fs::read_link(format!("/proc/{p}/ns/mnt")).unwrap();
        assert_ne!(
            ns(pid),
            ns(std::process::id()),
            "QEMU shares our mount namespace"
        );
        let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        if !matches!(jail.cgroups, runtime::jail::Hierarchy::Unavailable(_)) {
            assert!(groups.contains("byteport-vms/"), "{groups}");
        }
    } else {
        eprintln!("SKIPPED (not root): QEMU uid/capability/namespace checks");
    }
    assert_eq!(
        common::status_field(pid, "Seccomp:"),
        "2",
        "QEMU runs without its seccomp filter"
    );
    let mode = |p: PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(app.dir.clone()), 0o700);
    assert_eq!(mode(app.dir.join("console.log")), 0o600);
    assert_eq!(mode(app.dir.join("vm.json")), 0o600);

    // The web app is healthy: the check passes where it should.
    let check = HealthCheck {
        probe: HealthProbe::Http {
            method: "GET".into(),
            path: "/".into(),
        },
        port: 8080,
        interval: Duration::from_millis(250),
        probe_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(120),
    };
    wait_healthy(app.vm.as_mut(), &check)
        .unwrap_or_else(|e| panic!("{e}\n{}", app.vm.console_tail()));

    assert!(
        logs.wait_for("probe", "PROBE-DONE", Duration::from_secs(180)),
        "the probe did not finish:\n{}\n{}",
        logs.dump(),
        app.vm.console_tail()
    );
    let out = logs.of("probe");
    let all = logs.dump();
    for (t, p) in traps.iter().zip(&ports) {
        assert!(
            out.iter().any(|l| l == &format!("GATEWAY-REFUSED-{p}")),
            "the guest reached host port {p} through 10.0.2.2:\n{all}"
        );
        assert_eq!(
            t.hits.load(Ordering::SeqCst),
            0,
            "host port {p} got a connection"
        );
        assert!(
            out.iter()
                .any(|l| l.starts_with(&format!("VIA-PROXY-{p} HTTP/1.1 403"))),
            "the proxy did not refuse 127.0.0.1:{p}:\n{all}"
        );
    }
    let seen = proxy_seen.lock().unwrap().clone();
    for p in &ports {
        assert!(
            seen.contains(&format!("CONNECT 127.0.0.1:{p} HTTP/1.1")),
            "the proxy never saw the request for {p}: {seen:?}"
        );
    }
    let allowed = out.iter().find(|l| l.starts_with("ALLOWED ")).unwrap();
    assert!(
        allowed.contains("200 Connection established") && allowed.contains("PING"),
        "the allowed target did not answer through the proxy: {allowed}"
    );
    assert!(
        out.iter().any(|l| l == "PROXY-ENV http://10.0.2.100:3128"),
        "{all}"
    );
    assert!(!out.iter().any(|l| l.starts_with("WROTE-")), "{all}");
    // The app's own output carries its forgery as text, never as an event.
    assert!(out.iter().any(|l| l == "[bp 1 init evt] FORGED"), "{all}");
    let events = app.vm.drain_events();
    assert!(
        !events.iter().any(|e| e.contains("FORGED")),
        "a forged event got through: {events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("STARTED probe")),
        "{events:?}"
    );

    if let Some(peak) = peak_memory(&app.dir) {
        println!(
            "QEMU (TCG, 256 MiB guest) peak memory of its cgroup: {} MiB",
            peak >> 20
        );
    }
    let dir = app.dir.clone();
    app.vm.stop(Duration::from_secs(30));
    assert!(
        app.vm.drain_events().iter().any(|e| e == "POWEROFF"),
        "the guest did not power off on STOP"
    );
    drop(app);
    assert!(!dir.exists(), "the stopped VM's directory stayed");
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err(),
        "QEMU outlived its handle"
    );
}

/// The VM cgroup's peak memory (cgroup v1 `memory.max_usage_in_bytes`, v2
/// `memory.peak`), if there is one.
fn peak_memory(vm_dir: &Path) -> Option<u64> {
    let rec = runtime::process::VmRecord::read(vm_dir).ok()?;
    rec.cgroups.iter().find_map(|d| {
        ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
            .and_then(|v| v.trim().parse().ok())
    })
}
