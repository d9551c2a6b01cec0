//! An app VM's network, attacked from inside a real guest (QEMU TCG) of a
//! pushed app, through `byteport up` and its real egress proxy:
//!
//! - straight out of the guest (no proxy): the host's SSH, router and
//!   database ports, another app's upstream port and a private-range
//!   address all refuse — and the listeners the test owns see no
//!   connection;
//! - through the app's egress proxy: the same targets, the host's loopback
//!   in other spellings and `localhost` are refused with 403, the
//!   listeners again untouched, and the refusals are in the app's log;
//! - what is allowed works: another app by its public name through the
//!   router, and a destination the operator allowed (`egress_allow`);
//! - `vm { network off }`: the app gets no proxy and reaches nothing.
//!
//! Everything runs in a network namespace the test makes, whose loopback
//! also carries a private address (10.213.9.1) with a listener behind it:
//! no traffic ever leaves it, and no real private or public address is
//! contacted.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::daemon::{git, Daemon};

const PRIVATE_ADDR: &str = "10.213.9.1";

/// Connects straight out of the guest: `?HOST PORT`.
const NC_CGI: &str = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\nset -- $(echo \"$QUERY_STRING\" | tr '+' ' ')\nif nc -w 3 \"$1\" \"$2\" </dev/null >/dev/null 2>&1; then echo \"OPEN $1:$2\"; else echo \"CLOSED $1:$2\"; fi\n";
/// Asks the app's proxy (`$http_proxy`) for `?GET+http://HOST:PORT/` or
/// `?CONNECT+HOST:PORT`, speaking HTTP itself (busybox's wget crashes on
/// any refused connection, so it cannot show a proxy's answer).
const FETCH_CGI: &str = r#"#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
echo "PROXY=$http_proxy"
set -- $(echo "$QUERY_STRING" | tr '+' ' ')
p=${http_proxy#http://}; p=${p%/}
[ -n "$p" ] || p=10.0.2.100:3128
host=${2#http://}; host=${host%%/*}
f=/tmp/fetch.$$; mkfifo "$f"
# busybox nc quits at the end of its input: keep it open until the proxy
# has answered and closed (a tunnel that opens ends at nc's timeout).
( printf '%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$2" "$host"; sleep 20 ) >"$f" 2>/dev/null &
nc -w 10 "${p%:*}" "${p##*:}" <"$f" 2>&1
kill $! 2>/dev/null; rm -f "$f"
"#;

fn manifest(app: &str, network: &str) -> String {
    format!(
        "app {app}\nfrom busybox\n\nbuild {{\n  copy public /srv\n}}\n\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n}}\n\nvm {{\n  network {network}\n}}\n"
    )
}

/// A listener that counts the connections it gets.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn trap(addr: &str, answer: Option<&'static str>) -> Trap {
    let l = TcpListener::bind((addr, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            if let Some(body) = answer {
                use std::io::{Read, Write};
                let mut c = c;
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    Trap { port, hits }
}

fn push(d: &Daemon, work: &Path, ssh: &str, app: &str, network: &str, page: &str) {
    let cgi = work.join("public/cgi-bin");
    std::fs::create_dir_all(&cgi).unwrap();
    std::fs::write(work.join("Byteport"), manifest(app, network)).unwrap();
    std::fs::write(work.join("public/index.html"), page).unwrap();
    for (name, body) in [("nc", NC_CGI), ("fetch", FETCH_CGI)] {
        let p = cgi.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    git(work, &["add", "-A"], None);
    git(work, &["commit", "-qm", page], None);
    let out = git(
        work,
        &["push", "-q", &d.remote(app), "HEAD:main"],
        Some(ssh),
    );
    assert!(
        out.status.success(),
        "push of {app}: {}\n{}",
        testvm::git::text(&out),
        d.log()
    );
}

fn in_own_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare on this thread only; every process the test
        // starts from it (the daemon, git, ssh, QEMU) inherits it.
        assert_eq!(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            0,
            "unshare -n needs root: {}",
            std::io::Error::last_os_error()
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", &format!("{PRIVATE_ADDR}/32"), "dev", "lo"][..],
        ] {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?}");
        }
        body()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn an_app_vm_reaches_the_internet_and_the_router_only() {
    in_own_netns(|| {
        let database = trap("127.0.0.1", None);
        let private = trap(PRIVATE_ADDR, None);
        let allowed = trap("127.0.0.1", Some("hello from the allowed mirror"));
        let allow = format!("127.0.0.1:{}", allowed.port);
        let d = Daemon::start_with_env(&[("BYTEPORT_EGRESS_ALLOW", &allow)]);
        let tmp = tempfile::tempdir().unwrap();
        let key = d.add_key(tmp.path(), "mallory");
        let ssh = d.ssh_command(&key);
        let (other_work, work) = (tmp.path().join("other"), tmp.path().join("prober"));
        for w in [&other_work, &work] {
            std::fs::create_dir_all(w).unwrap();
            git(w, &["init", "-q", "-b", "main"], None);
        }
        push(&d, &other_work, &ssh, "other", "on", "the other app's page");
        push(&d, &work, &ssh, "prober", "on", "prober");

        let ps = testvm::git::text(&d.cli(&["ps", "other"]));
        let upstream: u16 = ps
            .split("upstream 127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no upstream in: {ps}"));
        let host_ports = [
            ("ssh", d.ssh_port),
            ("router", d.router_port),
            ("dashboard", d.http_port),
            ("database", database.port),
            ("other app's upstream", upstream),
        ];
        // The CGI's own output (the router's response head and chunk
        // sizes left out): what the guest saw.
        let get = |path: &str| {
            let r = d
                .get_path("prober", path)
                .unwrap_or_else(|e| panic!("{path}: {e}\n{}", d.log()));
            match r
                .find("PROXY=")
                .or_else(|| r.find("CLOSED"))
                .or_else(|| r.find("OPEN"))
            {
                Some(i) => r[i..].to_string(),
                None => panic!("{path}: not the probe's answer: {r}"),
            }
        };

        // Straight out of the guest: the user-mode gateway is the host's
        // loopback, and a private address is a private address.
        for (what, port) in host_ports {
            let r = get(&format!("/cgi-bin/nc?10.0.2.2+{port}"));
            assert!(r.contains("CLOSED"), "{what} reached directly: {r}");
        }
        let r = get(&format!("/cgi-bin/nc?{PRIVATE_ADDR}+{}", private.port));
        assert!(r.contains("CLOSED"), "private address reached: {r}");

        // Through the egress proxy, as a forwarded request and as a tunnel.
        let r = get(&format!(
            "/cgi-bin/fetch?GET+http://127.0.0.1:{}/",
            d.ssh_port
        ));
        assert!(r.contains("PROXY=http://"), "the app has no proxy: {r}");
        for (what, port) in host_ports.iter().filter(|(w, _)| *w != "router") {
            for host in ["127.0.0.1", "2130706433", "0x7f.1", "localhost", "10.0.2.2"] {
                for q in [
                    format!("GET+http://{host}:{port}/"),
                    format!("CONNECT+{host}:{port}"),
                ] {
                    let r = get(&format!("/cgi-bin/fetch?{q}"));
                    assert!(
                        r.contains("HTTP/1.1 403"),
                        "{what} as {q} through the proxy: {r}"
                    );
                }
            }
        }
        for q in [
            format!("GET+http://{PRIVATE_ADDR}:{}/", private.port),
            format!("CONNECT+{PRIVATE_ADDR}:{}", private.port),
        ] {
            let r = get(&format!("/cgi-bin/fetch?{q}"));
            assert!(r.contains("HTTP/1.1 403"), "private address as {q}: {r}");
        }
        // Other apps only by their public name, through the router.
        let r = get(&format!(
            "/cgi-bin/fetch?GET+http://other.localhost:{}/",
            d.router_port
        ));
        assert!(
            r.contains("HTTP/1.1 200") && r.contains("the other app's page"),
            "another app by its public name: {r}"
        );
        let r = get(&format!(
            "/cgi-bin/fetch?GET+http://127.0.0.1:{}/",
            allowed.port
        ));
        assert!(
            r.contains("HTTP/1.1 200") && r.contains("hello from the allowed mirror"),
            "the operator's exception: {r}"
        );
        assert_eq!(
            database.hits.load(Ordering::SeqCst),
            0,
            "the database port saw a connection"
        );
        assert_eq!(
            private.hits.load(Ordering::SeqCst),
            0,
            "the private address saw a connection"
        );
        assert!(allowed.hits.load(Ordering::SeqCst) >= 1);

        // The owner learns why.
        let logs = testvm::git::text(&d.cli(&["logs", "prober", "-n", "500"]));
        assert!(
            logs.contains("egress: refused") && logs.contains(&d.ssh_port.to_string()),
            "{logs}"
        );

        // network off: no proxy, nothing reachable, not even the router.
        push(&d, &work, &ssh, "prober", "off", "prober offline");
        let r = get(&format!(
            "/cgi-bin/fetch?GET+http://other.localhost:{}/",
            d.router_port
        ));
        assert!(r.contains("PROXY=\n") || r.contains("PROXY=\r\n"), "{r}");
        assert!(
            !r.contains("HTTP/1.1") && !r.contains("the other app's page"),
            "{r}"
        );
        for (what, port) in [("proxy", 3128), ("router", d.router_port)] {
            let host = if what == "proxy" {
                "10.0.2.100"
            } else {
                "10.0.2.2"
            };
            let r = get(&format!("/cgi-bin/nc?{host}+{port}"));
            assert!(r.contains("CLOSED"), "{what} with network off: {r}");
        }
    });
}
