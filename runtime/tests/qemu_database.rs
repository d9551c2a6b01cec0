//! The database door in a real app VM (QEMU TCG, the Debian cloud kernel,
//! BytePort's guest init, a busybox image) in front of a real managed
//! PostgreSQL (the `database` crate's cluster, Debian's server):
//!
//! - a guest with a door reaches the server at `10.0.2.101:5432` (an
//!   SSLRequest gets PostgreSQL's one-byte answer), its own database asks
//!   for a SCRAM password, and PostgreSQL's rules still hold through the
//!   door: the app's role cannot open another app's database, nor log in
//!   as the superuser (the door connects as the daemon, which peer
//!   authentication does not let in);
//! - a guest without a door reaches neither that address nor the host's
//!   loopback (a listener this test starts, which must see no connection).

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtime::{database_addr, EgressEndpoint};

/// `bytes` as a busybox `printf` format: every byte an octal escape.
fn printf_octal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

/// PostgreSQL's SSLRequest.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];

/// A protocol 3.0 StartupMessage for `user` on `database`.
fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for s in ["user", user, "database", database] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

/// A shell line sending `bytes` to `addr` and echoing what comes back
/// (letters, digits and `_` kept, anything else a dot) after `label`.
fn ask(label: &str, addr: &str, bytes: &[u8]) -> String {
    let (host, port) = addr.split_once(':').unwrap();
    format!(
        "echo \"{label} [$( (printf '{}'; sleep 2) | nc -w 4 {host} {port} | tr -c 'A-Za-z0-9_' '.')]\"",
        printf_octal(bytes)
    )
}

#[test]
fn a_guest_reaches_its_database_through_the_door_and_nothing_without_one() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cluster = database::Cluster::open(&work.path().join("pg"))
        .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
    let a = cluster.provision("shop-a", None).unwrap();
    let b = cluster.provision("shop-b", None).unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let addr = database_addr(&opts.driver).to_string();
    assert_eq!(addr, "10.0.2.101:5432");

    // With a door.
    let probe = [
        ask("SSL", &addr, &SSL_REQUEST),
        ask("OWN", &addr, &startup(&a.role, &a.database)),
        ask("OTHER", &addr, &startup(&a.role, &b.database)),
        ask("SUPER", &addr, &startup("byteport", "postgres")),
        "echo \"URL [$(echo \"$DATABASE_URL\" | cut -d@ -f2)]\"".into(),
        "echo PROBE-DONE".into(),
        "exec sleep 100000".into(),
    ]
    .join("\n");
    let mut spec = common::spec(&g, "dbdoor", &rootfs, &[("probe", &probe)], None, None);
    spec.database = Some(EgressEndpoint::Unix(cluster.socket()));
    let (host, port) = addr.split_once(':').unwrap();
    spec.env
        .insert("DATABASE_URL".into(), a.url(host, port.parse().unwrap()));
    let logs = common::Logs::default();
    let app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert!(
        logs.wait_for("probe", "PROBE-DONE", Duration::from_secs(180)),
        "the probe did not finish:\n{}\n{}",
        logs.dump(),
        app.vm.console_tail()
    );
    let seen = logs.of("probe").join("\n");
    eprintln!("{seen}");
    let line = |label: &str| {
        logs.of("probe")
            .into_iter()
            .find(|l| l.starts_with(&format!("{label} [")))
            .unwrap_or_else(|| panic!("no {label} line:\n{seen}"))
    };
    // PostgreSQL (ssl off) answers 'N'.
    assert_eq!(line("SSL"), "SSL [N]", "{seen}");
    // Its own database: AuthenticationSASL offering SCRAM.
    assert!(
        line("OWN").contains("SCRAM_SHA_256") || line("OWN").contains("SCRAM.SHA.256"),
        "{seen}"
    );
    // Another app's database: refused by pg_hba.conf (sameuser).
    assert!(line("OTHER").contains("pg_hba"), "{seen}");
    assert!(!line("OTHER").contains("SCRAM"), "{seen}");
    // The superuser: peer authentication of the daemon's uid fails.
    assert!(
        line("SUPER").contains("Peer.authentication.failed.for.user..byteport"),
        "{seen}"
    );
    assert_eq!(
        line("URL"),
        "URL [10.0.2.101:5432/app_shop_a?sslmode=disable]",
        "{seen}"
    );
    drop(app);

    // Without a door: the database address and the host's loopback are
    // unreachable.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for c in trap.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    let probe = format!(
        r#"{ssl}
if echo x | nc -w 3 10.0.2.2 {trap_port} >/dev/null 2>&1; then echo GATEWAY-OPEN; else echo GATEWAY-REFUSED; fi
if echo x | nc -w 3 10.0.2.2 5432 >/dev/null 2>&1; then echo GW5432-OPEN; else echo GW5432-REFUSED; fi
echo PROBE-DONE
exec sleep 100000"#,
        ssl = ask("SSL", &addr, &SSL_REQUEST)
    );
    let spec = common::spec(&g, "nodoor", &rootfs, &[("probe", &probe)], None, None);
    let logs = common::Logs::default();
    let app = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert!(
        logs.wait_for("probe", "PROBE-DONE", Duration::from_secs(180)),
        "the probe did not finish:\n{}\n{}",
        logs.dump(),
        app.vm.console_tail()
    );
    let seen = logs.of("probe").join("\n");
    eprintln!("{seen}");
    assert!(
        seen.contains("SSL []"),
        "a guest without a door reached the database:\n{seen}"
    );
    assert!(seen.contains("GATEWAY-REFUSED"), "{seen}");
    assert!(seen.contains("GW5432-REFUSED"), "{seen}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the host's loopback was reached"
    );
    drop(app);
    cluster.stop();
}
