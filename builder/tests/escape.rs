//! Issue 11, build steps: a pushed manifest's `run` step attacks the host.
//! Each test performs one attack from inside a real step (busybox base,
//! real namespaces, the real egress proxy) and shows it refused — and, where
//! the attack has a target, that the target was not touched. Every attack
//! here succeeded with the previous sandbox (steps ran as real root with
//! every capability in the host's network namespace).
//!
//! Network attacks only ever aim at servers these tests start themselves:
//! on the host's 127.0.0.1, or on a 10.x address the test gives the
//! loopback of a network namespace it made.

mod common;

use builder::egress::{Allow, Policy};
use builder::{BaseSpec, BuildPlan, Step};
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A busybox plan for `app` whose only step is `script`.
fn attack_plan(app: &str, script: &str) -> BuildPlan {
    let mut plan = BuildPlan::new(app, BaseSpec::Busybox);
    plan.steps = vec![Step::Run {
        command: script.into(),
    }];
    plan
}

/// What the step printed (without the `[step 1] ` prefix).
fn step_lines(log: &[String]) -> Vec<String> {
    log.iter()
        .filter_map(|l| l.strip_prefix("[step 1] "))
        .map(String::from)
        .collect()
}

/// Run `script` as a build step of a fresh busybox app; the build must
/// succeed (attacks end with `true`), its step output is returned.
fn run_attack(
    app: &str,
    script: &str,
    tweak: impl FnOnce(&mut builder::BuildRequest<'_>),
) -> Vec<String> {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let (_, log) = ok(build_with(
        home.path(),
        repo.source(),
        Some(attack_plan(app, script)),
        tweak,
    ));
    step_lines(&log)
}

fn no_attack_succeeded(lines: &[String]) {
    let won: Vec<&String> = lines.iter().filter(|l| l.contains("ATTACK-")).collect();
    assert!(
        won.is_empty(),
        "attacks succeeded: {won:#?}\nfull output: {lines:#?}"
    );
}

/// A test server that answers `hello from <path>` and counts connections.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

fn server(bind: &str) -> Server {
    let l = TcpListener::bind(bind).unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = first.split(' ').nth(1).unwrap_or("?").to_string();
                let body = format!("hello from {path}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Server { addr, connections }
}

#[test]
fn a_step_is_root_only_of_its_own_user_namespace_with_few_capabilities() {
    let lines = run_attack(
        "whoami",
        "id -u; cat /proc/self/uid_map; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
        |_| {},
    );
    assert_eq!(lines[0], "0", "root inside: {lines:#?}");
    let map: Vec<u64> = lines[1]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(map[0], 0);
    assert!(
        map[1] >= 65536,
        "in-step root is host uid {}: {lines:#?}",
        map[1]
    );
    assert_eq!(map[2], 65536);
    let field = |name: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {lines:#?}"))
            .trim()
            .to_string()
    };
    for set in ["CapEff", "CapBnd"] {
        let caps = u64::from_str_radix(&field(set), 16).unwrap();
        for (bit, name) in [
            (12, "NET_ADMIN"),
            (13, "NET_RAW"),
            (16, "SYS_MODULE"),
            (17, "SYS_RAWIO"),
            (19, "SYS_PTRACE"),
            (21, "SYS_ADMIN"),
            (25, "SYS_TIME"),
            (27, "MKNOD"),
        ] {
            assert_eq!(caps & (1 << bit), 0, "{set} has CAP_{name}: {caps:#x}");
        }
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2", "a seccomp filter is installed");
}

/// The device, filesystem type and device-relative path of `path`'s file.
fn device_of(path: &std::path::Path) -> (u32, u32, String, String) {
    let path = std::fs::canonicalize(path).unwrap();
    let dev = std::fs::metadata(&path).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut best: Option<(String, String, String)> = None;
    for line in info.lines() {
        let (pre, post) = line.split_once(" - ").unwrap();
        let f: Vec<&str> = pre.split(' ').collect();
        if f[2] != format!("{major}:{minor}") || !path.starts_with(f[4]) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(_, point, _)| f[4].len() > point.len())
        {
            let fstype = post.split(' ').next().unwrap().to_string();
            best = Some((f[3].to_string(), f[4].to_string(), fstype));
        }
    }
    let (root, point, fstype) = best.expect("the marker's mount");
    let rel = path.strip_prefix(&point).unwrap();
    let inside = std::path::Path::new(&root).join(rel);
    (major, minor, fstype, inside.display().to_string())
}

#[test]
fn the_host_disk_cannot_be_made_mounted_read_or_written() {
    // A marker on the host's real disk (the test cache lives there).
    let marker = test_cache().join(format!("escape-marker-{}", std::process::id()));
    let secret = format!("host-secret-{}", std::process::id());
    std::fs::write(&marker, &secret).unwrap();
    let (major, minor, fstype, inside) = device_of(&marker);
    let script = format!(
        "mknod /tmp/hostdisk b {major} {minor} 2>&1 && echo ATTACK-mknod-ok; \
         mkdir -p /tmp/m; \
         mount -t {fstype} -o ro /tmp/hostdisk /tmp/m 2>&1 && echo ATTACK-mount-ok && cat /tmp/m{inside}; \
         mount -t {fstype} /tmp/hostdisk /tmp/m 2>&1 && echo pwned > /tmp/m{inside} && echo ATTACK-write-ok; \
         mount -t tmpfs none /tmp/m 2>&1 && echo ATTACK-tmpfs-ok; \
         mount -o bind / /tmp/m 2>&1 && echo ATTACK-bind-ok; \
         ls /dev; true"
    );
    let lines = run_attack("disk", &script, |_| {});
    let content = std::fs::read_to_string(&marker).unwrap();
    std::fs::remove_file(&marker).unwrap();
    no_attack_succeeded(&lines);
    assert_eq!(content, secret, "the host file was written");
    assert!(
        !lines.iter().any(|l| l.contains(&secret)),
        "the host file was read: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("mknod") && l.contains("Operation not permitted")),
        "{lines:#?}"
    );
    let dev: Vec<&str> = lines
        .iter()
        .map(|l| l.as_str())
        .filter(|l| {
            [
                "null", "zero", "full", "random", "urandom", "tty", "shm", "pts", "fd", "stdin",
                "stdout", "stderr",
            ]
            .contains(l)
        })
        .collect();
    assert!(dev.len() >= 6, "/dev holds the usual nodes: {lines:#?}");
}

#[test]
fn kernel_modules_cannot_be_loaded() {
    let lines = run_attack(
        "insmod",
        "printf 'not a module' > /tmp/evil.ko; insmod /tmp/evil.ko 2>&1; echo insmod=$?; \
         modprobe -q dummy 2>&1; echo modprobe=$?; true",
        |_| {},
    );
    assert!(
        lines.iter().any(|l| l.contains("insmod") && l.contains("Operation not permitted")),
        "the kernel never looked at the module (the old sandbox got `invalid module format`): {lines:#?}"
    );
    assert!(lines.contains(&"insmod=1".to_string()), "{lines:#?}");
    assert!(!lines.contains(&"modprobe=0".to_string()), "{lines:#?}");
}

#[test]
fn cgroups_cannot_be_mounted_remounted_or_left() {
    let lines = run_attack(
        "cgroups",
        "mkdir -p /tmp/cg; \
         mount -t cgroup -o memory none /tmp/cg 2>&1 && echo ATTACK-cgroup1-ok && echo $$ > /tmp/cg/cgroup.procs && echo ATTACK-cgroup-escape-ok; \
         mount -t cgroup2 none /tmp/cg 2>&1 && echo ATTACK-cgroup2-ok; \
         mount -o remount,rw /sys 2>&1 && echo ATTACK-sys-rw-ok; \
         touch /sys/x 2>&1 && echo ATTACK-sys-write-ok; \
         echo cgroup=$(cat /proc/self/cgroup | tail -n 1); true",
        |_| {},
    );
    no_attack_succeeded(&lines);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cgroup=") && l.ends_with(":/")),
        "the step's cgroup namespace hides the host's hierarchy: {lines:#?}"
    );
}

#[test]
fn kernel_settings_secrets_and_new_namespaces_are_out_of_reach() {
    let lines = run_attack(
        "kernel",
        "echo 1 > /proc/sys/vm/drop_caches 2>&1 && echo ATTACK-sysctl-ok; \
         echo kcore=$(head -c 16 /proc/kcore | wc -c); \
         echo keys=$(cat /proc/keys | wc -l); \
         unshare -U -r true 2>&1 && echo ATTACK-userns-ok; \
         unshare -m true 2>&1 && echo ATTACK-mountns-ok; \
         nsenter -t 1 -n true 2>&1 && echo ATTACK-setns-ok; \
         hostname evil 2>&1 && echo ATTACK-hostname-ok; \
         echo procs=$(ls -d /proc/[0-9]* | wc -l); true",
        |_| {},
    );
    no_attack_succeeded(&lines);
    assert!(
        lines.contains(&"kcore=0".to_string()),
        "/proc/kcore is masked: {lines:#?}"
    );
    assert!(
        lines.contains(&"keys=0".to_string()),
        "/proc/keys is masked: {lines:#?}"
    );
    let procs: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        procs < 10,
        "only the step's own processes are visible: {procs}"
    );
}

/// `CONNECT` lines the step sends to the proxy for each spelling of
/// `ip:port` (stdin stays open a moment: busybox `nc` hangs up at its end,
/// possibly before the answer came).
fn connect_each(hosts: &[String], port: u16) -> String {
    hosts
        .iter()
        .map(|h| {
            format!(
                "(printf 'CONNECT {h}:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'; sleep 1) | nc 127.0.0.1 3128 | head -n 1; "
            )
        })
        .collect()
}

#[test]
fn the_hosts_loopback_is_out_of_reach() {
    // Stands for BytePort's own SSH server, router, database, control socket.
    let target = server("127.0.0.1:0");
    let port = target.addr.port();
    let spellings: Vec<String> = [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "localhost",
        "0.0.0.0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let script = format!(
        "nc -w 2 127.0.0.1 {port} </dev/null 2>&1 && echo ATTACK-direct-ok; \
         wget -q -O- http://127.0.0.1:{port}/ 2>&1 && echo ATTACK-proxied-ok; \
         {} true",
        connect_each(&spellings, port)
    );
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let (_, log) = ok(build(
        home.path(),
        repo.source(),
        attack_plan("loopback", &script),
    ));
    let lines = step_lines(&log);
    no_attack_succeeded(&lines);
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the host's server was reached: {lines:#?}"
    );
    let forbidden = lines
        .iter()
        .filter(|l| l.starts_with("HTTP/1.1 403"))
        .count();
    assert_eq!(forbidden, spellings.len(), "{lines:#?}");
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("network: refused"))
        .collect();
    assert!(
        refusals.len() > spellings.len(),
        "each refusal is in the build log: {log:#?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("loopback (127.0.0.0/8)")),
        "{refusals:#?}"
    );
}

#[test]
fn a_private_network_address_is_out_of_reach() {
    // A network namespace of the test's own, whose loopback also carries a
    // 10.x address with a server behind it: the builder (and its egress
    // proxy) run inside it, as on a host with a private network.
    let outcome = std::thread::spawn(|| {
        // SAFETY: unshare on this thread only.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare -n"
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.213.7.1/32", "dev", "lo"][..],
        ] {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        let target = server("10.213.7.1:0");
        let port = target.addr.port();
        let spellings: Vec<String> = [
            "10.213.7.1",
            "181733121",
            "0xa.0xd5.0x7.0x1",
            "[::ffff:10.213.7.1]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let script = format!(
            "nc -w 2 10.213.7.1 {port} </dev/null 2>&1 && echo ATTACK-direct-ok; \
             wget -q -O- http://10.213.7.1:{port}/ 2>&1 && echo ATTACK-proxied-ok; \
             {} true",
            connect_each(&spellings, port)
        );
        let home = home();
        let repo = Repo::with_files(&[("a", "a", 0o644)]);
        let (_, log) = ok(build(
            home.path(),
            repo.source(),
            attack_plan("private", &script),
        ));
        (
            step_lines(&log),
            target.connections.load(Ordering::SeqCst),
            spellings.len(),
        )
    })
    .join()
    .unwrap();
    let (lines, connections, spellings) = outcome;
    no_attack_succeeded(&lines);
    assert_eq!(connections, 0, "the private server was reached: {lines:#?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("HTTP/1.1 403"))
            .count(),
        spellings,
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("private network (10.0.0.0/8)")),
        "{lines:#?}"
    );
}

#[test]
fn another_apps_build_cache_is_out_of_reach() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let secret = format!("victim-token-{}", std::process::id());
    // The victim's own build leaves a token in its npm cache.
    let plant = attack_plan("victim", &format!("echo {secret} > /root/.npm/token"));
    ok(build_with(home.path(), repo.source(), Some(plant), |r| {
        r.app = Some("victim".into())
    }));
    let victim_cache = home.path().join("cache/build/victim/busybox/npm");
    assert!(victim_cache.join("token").is_file());

    // A push to `attacker` whose manifest claims to be `victim`.
    let steal = attack_plan(
        "victim",
        "cat /root/.npm/token 2>&1; echo poison > /root/.npm/poison; \
         find / -name token 2>/dev/null | grep -v '^/proc'; true",
    );
    let (out, log) = ok(build_with(home.path(), repo.source(), Some(steal), |r| {
        r.app = Some("attacker".into())
    }));
    let lines = step_lines(&log);
    assert!(
        !log.iter().any(|l| l.contains(&secret)),
        "the victim's cache was read: {log:#?}"
    );
    assert!(
        !victim_cache.join("poison").exists(),
        "the victim's cache was written"
    );
    let attacker_cache = home.path().join("cache/build/attacker/busybox/npm");
    assert!(attacker_cache.join("poison").is_file(), "{lines:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("manifest names the app `victim`") && l.contains("as `attacker`")),
        "{log:#?}"
    );
    assert_eq!(out.descriptor.app, "attacker");
    let uid = |p: &std::path::Path| std::fs::metadata(p).unwrap().uid();
    assert_ne!(
        uid(&victim_cache),
        uid(&attacker_cache),
        "each app's cache has its own owner"
    );
    assert_ne!(uid(&victim_cache), 0);
}

#[test]
fn a_step_reaches_an_allowed_destination_and_nothing_when_the_manifest_turns_network_off() {
    // The test's server stands for "the internet": allowed by an explicit
    // exception, the way an operator would allow a private package mirror.
    let internet = server("127.0.0.1:0");
    let port = internet.addr.port();
    let allow = |r: &mut builder::BuildRequest<'_>| {
        r.egress = Policy::internet_only().allowing(Allow::Addr(internet.addr));
    };
    let script = format!(
        "wget -q -O- http://127.0.0.1:{port}/package.tgz; \
         (printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /tunnelled HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'; sleep 2) | nc 127.0.0.1 3128 | tail -n 1; \
         echo proxy=$https_proxy"
    );
    let lines = run_attack("online", &script, allow);
    assert!(
        lines.contains(&"hello from /package.tgz".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"hello from /tunnelled".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"proxy=http://127.0.0.1:3128".to_string()),
        "{lines:#?}"
    );
    let reached = internet.connections.load(Ordering::SeqCst);
    assert_eq!(reached, 2);

    // The same download with `build { network off }` in the manifest.
    let manifest = format!(
        "app offline\nfrom busybox\nbuild {{\n  network off\n  run wget -q -O- http://127.0.0.1:{port}/package.tgz 2>&1 || echo NO-NETWORK; echo proxy=$https_proxy\n}}\nvm {{\n  network off\n}}\nworker {{\n  run true\n}}\n"
    );
    let repo = Repo::with_files(&[("Byteport", &manifest, 0o644)]);
    let home = home();
    let (out, log) = ok(build_with(home.path(), repo.source(), None, allow));
    let lines = step_lines(&log);
    assert!(lines.contains(&"NO-NETWORK".to_string()), "{log:#?}");
    assert!(
        lines.contains(&"proxy=".to_string()),
        "no proxy variables: {lines:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("Build steps have no network")),
        "{log:#?}"
    );
    assert_eq!(
        internet.connections.load(Ordering::SeqCst),
        reached,
        "reached without network"
    );
    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out.descriptor_path).unwrap()).unwrap();
    assert_eq!(
        desc["vm"]["network"], "off",
        "the runtime learns `vm {{ network off }}`"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_interfaces_behind_the_seccomp_filter_are_refused() {
    // Raw system calls, past what busybox tools can reach (python3 from the
    // examples' cached Debian base).
    let script = r#"python3 - <<'PY'
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(name, nr, *args):
    r = libc.syscall(nr, *args)
    print(f"{name} rc={r} errno={ctypes.get_errno()}")
call("bpf", 321, 0, 0, 0)
call("perf_event_open", 298, 0, 0, -1, -1, 0)
call("keyctl", 250, 0, 0, 0, 0, 0)
call("userfaultfd", 323, 0)
call("io_uring_setup", 425, 1, 0)
call("kexec_load", 246, 0, 0, 0, 0)
call("finit_module", 313, -1, 0, 0)
call("open_by_handle_at", 304, -1, 0, 0)
call("unshare_newuser", 272, 0x10000000)
call("setns", 308, 0, 0)
try:
    socket.socket(40, socket.SOCK_STREAM)
    print("vsock rc=0 errno=0")
except OSError as e:
    print(f"vsock rc=-1 errno={e.errno}")
PY"#;
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new(
        "syscalls",
        BaseSpec::Debian {
            suite: "bookworm".into(),
        },
    );
    plan.packages = vec!["python3".into(), "python3-flask".into()];
    plan.steps = vec![Step::Run {
        command: script.into(),
    }];
    let (_, log) = ok(build(home.path(), repo.source(), plan));
    let lines = step_lines(&log);
    for name in [
        "bpf",
        "perf_event_open",
        "keyctl",
        "userfaultfd",
        "io_uring_setup",
        "kexec_load",
        "finit_module",
        "open_by_handle_at",
        "unshare_newuser",
        "setns",
        "vsock",
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no result for {name}: {lines:#?}"));
        assert_eq!(
            line,
            &format!("{name} rc=-1 errno={}", libc::EPERM),
            "{name} must be refused by the filter: {lines:#?}"
        );
    }
}
