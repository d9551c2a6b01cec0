//! Issue 14's own scenario below the platform: `examples/flask-tutorial`
//! (Flask's flaskr) built by the builder from its `Byteport`, booted in a
//! real QEMU VM with its volume: a user registers, logs in and writes a
//! post — the first form submission that used to fail with `attempt to
//! write a readonly database` — and a new VM of the same artifact with the
//! same volume still shows the post. Everything the runtime is given comes
//! from the artifact's descriptor, as the platform will give it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use runtime::health::{wait_healthy, HealthCheck, HealthProbe};
use runtime::volume::Volume;

/// One HTTP/1.0 exchange: (status, headers, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: flask-tutorial.localhost\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn session_cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in:\n{head}"))
        .to_string()
}

fn boot_and_wait(
    spec: &runtime::AppSpec,
    opts: &runtime::BootOptions,
    logs: &common::Logs,
) -> runtime::RunningApp {
    let mut app = runtime::boot(spec, opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let check = HealthCheck {
        probe: HealthProbe::Http {
            method: "GET".into(),
            path: "/auth/login".into(),
        },
        port: 8080,
        interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(300),
    };
    wait_healthy(app.vm.as_mut(), &check)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", logs.dump(), app.vm.console_tail()));
    app
}

#[test]
fn flaskr_keeps_its_posts_on_its_volume_across_vms() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flask-tutorial");
    let log = builder::MemorySink::default();
    let mut req = builder::BuildRequest::new(
        work.path().join("home"),
        builder::Source::Dir(example),
        &log,
    );
    req.base_cache = Some(testvm::cache_dir().join("bases"));
    req.ca_trust = builder::CaTrust::Host;
    let out =
        builder::build(&req).unwrap_or_else(|e| panic!("build: {e}\n{}", log.lines().join("\n")));
    let d = &out.descriptor;
    assert_eq!(d.volumes.len(), 1, "the example keeps its data on a volume");
    assert!(
        d.release.is_some(),
        "and makes its schema in a release command"
    );

    let mut spec = common::spec(&g, &d.app, &out.rootfs_path, &[], d.port, None);
    spec.processes = d
        .processes
        .iter()
        .map(|p| (p.name.clone(), p.run.clone()))
        .collect();
    spec.env = d.env.clone();
    spec.workdir = d.workdir.clone();
    spec.uid = d.user.uid;
    spec.gid = d.user.gid;
    spec.memory_mib = d.vm.memory_bytes >> 20;
    spec.volumes = d
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.clone(),
            image: work.path().join(format!("volumes/{}.ext4", v.name)),
            mount: v.path.clone(),
            size_bytes: v.size_bytes,
        })
        .collect();
    let opts = common::qemu_opts(&g, &work.path().join("run"));

    // The release phase, as the platform runs it: a one-off VM of the same
    // image and volume makes the schema before the web process starts.
    let release = d.release.as_ref().unwrap();
    let mut one_off = spec.clone();
    one_off.one_off = true;
    one_off.processes = vec![("release".into(), release.run.clone())];
    let logs = common::Logs::default();
    let mut vm =
        runtime::boot(&one_off, &opts, logs.sink()).unwrap_or_else(|e| panic!("release boot: {e}"));
    let status = runtime::one_off::wait_exit(vm.vm.as_mut(), Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("release: {e}\n{}", logs.dump()));
    assert_eq!(status, 0, "init-db failed:\n{}", logs.dump());
    drop(vm);

    let logs = common::Logs::default();
    let first = boot_and_wait(&spec, &opts, &logs);
    let addr = first.vm.host_addr().unwrap();
    let form = "username=alice&password=correct-horse";
    let (status, head, body) = http(addr, "POST", "/auth/register", None, form);
    assert_eq!(
        status,
        302,
        "registering (flaskr's first write) failed:\n{head}\n{body}\n{}",
        logs.dump()
    );
    let (status, head, _) = http(addr, "POST", "/auth/login", None, form);
    assert_eq!(status, 302, "{head}");
    let cookie = session_cookie(&head);
    let post = "title=Kept+across+VMs&body=written+before+the+VM+went+away";
    let (status, head, body) = http(addr, "POST", "/create", Some(&cookie), post);
    assert_eq!(status, 302, "{head}\n{body}");
    let (_, _, index) = http(addr, "GET", "/", None, "");
    assert!(index.contains("Kept across VMs"), "{index}");
    // Killed right after the last commit, not stopped: what flaskr
    // committed must survive a crash too. (SQLite's default rollback
    // journal commits by unlinking the journal; volumes are mounted
    // `dirsync` so that the unlink is on disk when it returns — without
    // it this post was rolled back at the next open.)
    drop(first);
    let logs = common::Logs::default();
    let second = boot_and_wait(&spec, &opts, &logs);
    let addr = second.vm.host_addr().unwrap();
    let (status, _, index) = http(addr, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert!(
        index.contains("Kept across VMs") && index.contains("by alice"),
        "the post is gone:\n{index}\n{}",
        logs.dump()
    );
    // And alice can still log in: her account was on the volume too.
    let (status, head, _) = http(addr, "POST", "/auth/login", None, form);
    assert_eq!(status, 302, "{head}");
}
