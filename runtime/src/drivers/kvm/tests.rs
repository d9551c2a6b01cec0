//! Host-side pieces of the kvm driver that need no VM: the port forward's
//! handshake against a stand-in VMM socket, and start-up errors.

use super::*;

/// A stand-in for the VMM's vsock socket: answers `CONNECT` with `reply`, then
/// echoes upper-cased bytes.
fn fake_vmm(reply: &'static str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v");
    let l = UnixListener::bind(&uds).unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while b[0] != b'\n' && c.read_exact(&mut b).is_ok() {
                line.push(b[0]);
            }
            assert_eq!(line, b"CONNECT 8080\n");
            if c.write_all(reply.as_bytes()).is_err() || !reply.starts_with("OK") {
                continue;
            }
            let mut buf = [0u8; 64];
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let up: Vec<u8> = buf[..n].to_ascii_uppercase();
                let _ = c.write_all(&up);
            }
        }
    });
    (dir, uds)
}

fn through_forward(uds: PathBuf, send: &[u8]) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        forward(tcp, &uds, 8080);
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A refused forward may already have closed the connection: writing then
    // fails, and what counts is that nothing comes back.
    let _ = c.write_all(send);
    let _ = c.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got
}

#[test]
fn forward_does_the_handshake_then_relays_both_ways() {
    let (_d, uds) = fake_vmm("OK 1073741824\n");
    assert_eq!(through_forward(uds, b"hello"), b"HELLO");
}

#[test]
fn forward_closes_the_client_when_the_guest_refuses() {
    let (_d, uds) = fake_vmm("");
    assert!(through_forward(uds, b"hello").is_empty());
    let (_d, uds) = fake_vmm("NOPE\n");
    assert!(through_forward(uds, b"hello").is_empty());
}

fn spec(dir: &Path) -> KvmSpec {
    let k = dir.join("kernel");
    std::fs::write(&k, b"k").unwrap();
    KvmSpec {
        name: "t".into(),
        vmm: dir.join("no-such-vmm"),
        kernel: k.clone(),
        initrd: k,
        rootfs: None,
        cpus: 1,
        memory_mib: 128,
        guest_port: None,
        dir: dir.join("vm"),
        egress: None,
        database: None,
        jail: None,
        checked_process: None,
        volumes: vec![],
        console: false,
    }
}

#[test]
fn start_reports_missing_inputs_long_paths_and_a_missing_vmm() {
    let d = tempfile::tempdir().unwrap();
    let log: AppLog = Arc::new(|_: &str, _: &str, _: &str| {});
    let mut s = spec(d.path());
    s.rootfs = Some(d.path().join("nope.ext4"));
    let e = KvmVm::start(&s, log.clone()).err().unwrap();
    assert!(matches!(e, KvmError::Missing { what: "rootfs", .. }), "{e}");

    let mut s = spec(d.path());
    s.dir = d.path().join("x".repeat(120));
    let e = KvmVm::start(&s, log.clone()).err().unwrap();
    assert!(matches!(e, KvmError::PathTooLong { .. }), "{e}");

    let e = KvmVm::start(&spec(d.path()), log).err().unwrap();
    assert!(matches!(e, KvmError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("no-such-vmm"));
}

#[test]
fn init_link_proxies_the_app_port_and_the_ways_out() {
    let l = init_link(Some(8080), true, true);
    assert_eq!(
        l.proxy,
        Some(VsockProxy {
            vsock_port: 8080,
            tcp_port: 8080
        })
    );
    let e = l.egress.unwrap();
    assert_eq!(e.listen.to_string(), "127.0.0.1:3128");
    assert_eq!(e.host_port, 3128);
    let db = l.database.unwrap();
    assert_eq!(
        std::net::SocketAddr::V4(db.listen),
        "127.0.0.1:5432".parse().unwrap()
    );
    assert_eq!(
        db.listen,
        crate::database_addr(&crate::Driver::Kvm { vmm: "/v".into() })
    );
    assert_eq!(db.host_port, 5432);
    assert_eq!(
        init_link(None, false, false),
        VsockLink {
            proxy: None,
            egress: None,
            database: None,
        }
    );
}

/// The host side of the kvm driver's database door, with a stand-in VMM
/// (a process that only waits): the door is where the VMM connects a
/// guest's connection to vsock host port 5432, and its bytes reach the
/// database endpoint; a VM without a database has no such socket.
#[test]
fn the_database_door_is_at_the_vsock_host_port_and_relays() {
    let d = tempfile::tempdir().unwrap();
    let db_sock = d.path().join("db.sock");
    let db = UnixListener::bind(&db_sock).unwrap();
    std::thread::spawn(move || {
        for mut c in db.incoming().flatten() {
            let mut req = [0u8; 8];
            if c.read_exact(&mut req).is_ok() && req == [0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f] {
                let _ = c.write_all(b"N");
            }
        }
    });
    let vmm = d.path().join("fake-vmm");
    std::fs::write(&vmm, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&vmm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log: AppLog = Arc::new(|_: &str, _: &str, _: &str| {});

    let mut s = spec(d.path());
    s.vmm = vmm.clone();
    s.dir = d.path().join("with");
    s.database = Some(EgressEndpoint::Unix(db_sock));
    let vm = KvmVm::start(&s, log.clone()).unwrap_or_else(|e| panic!("{e}"));
    let door = database_door_path(&s.dir.join("sock"));
    assert!(door.ends_with("sock/v_5432"), "{}", door.display());
    let mut c = UnixStream::connect(&door).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]).unwrap();
    let mut answer = [0u8; 1];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    drop(vm);
    assert!(!door.exists(), "the door outlived its VM");

    let mut s = spec(d.path());
    s.vmm = vmm;
    s.dir = d.path().join("without");
    let vm = KvmVm::start(&s, log).unwrap_or_else(|e| panic!("{e}"));
    assert!(!database_door_path(&s.dir.join("sock")).exists());
    drop(vm);
}
