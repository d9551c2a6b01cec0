//! The `byteport-vmm` binary on the bare /dev/kvm of this machine, booting a tiny
//! hand-made ELF "kernel" (a few instructions, so instruction emulation is fast
//! enough): `run`, `list`, graceful `stop` through the ACPI power button, `stop
//! --force`, and every thread of the process confined by seccomp.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOAD: u64 = 0x10_0000;
const VMM: &str = env!("CARGO_BIN_EXE_byteport-vmm");

/// A minimal ELF64 executable whose one PT_LOAD segment is `code` at 1 MiB.
fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend(b"\x7fELF\x02\x01\x01\x00");
    e.extend([0u8; 8]);
    e.extend(2u16.to_le_bytes()); // ET_EXEC
    e.extend(0x3eu16.to_le_bytes()); // x86-64
    e.extend(1u32.to_le_bytes());
    e.extend(LOAD.to_le_bytes()); // entry
    e.extend(64u64.to_le_bytes()); // program headers right after this header
    e.extend(0u64.to_le_bytes());
    e.extend(0u32.to_le_bytes());
    e.extend(64u16.to_le_bytes());
    e.extend(56u16.to_le_bytes());
    e.extend(1u16.to_le_bytes());
    e.extend([0u8; 6]);
    e.extend(1u32.to_le_bytes()); // PT_LOAD
    e.extend(5u32.to_le_bytes()); // R+X
    e.extend(120u64.to_le_bytes()); // file offset of the code
    e.extend(LOAD.to_le_bytes());
    e.extend(LOAD.to_le_bytes());
    e.extend((code.len() as u64).to_le_bytes());
    e.extend((code.len() as u64).to_le_bytes());
    e.extend(0x1000u64.to_le_bytes());
    e.extend(code);
    e
}

/// Spins on the GED event register; prints the event as a digit; powers off.
fn power_button_guest() -> Vec<u8> {
    let mut code = vec![0x48, 0xbb];
    code.extend(0xcfff_f000u64.to_le_bytes());
    code.extend([0x8b, 0x03, 0x85, 0xc0, 0x74, 0xfa]);
    code.extend([0x04, b'0', 0x66, 0xba, 0xf8, 0x03, 0xee]);
    code.extend([0xb0, 0x20, 0x66, 0xba, 0xc0, 0x03, 0xee]);
    code
}

/// Prints dots forever.
fn busy_guest() -> Vec<u8> {
    vec![0x66, 0xba, 0xf8, 0x03, 0xb0, b'.', 0xee, 0xeb, 0xfb]
}

struct Running {
    child: Child,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(code: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("tiny.elf");
        std::fs::write(&kernel, tiny_elf(code)).unwrap();
        let child = Command::new(VMM)
            .arg("--runtime-dir")
            .arg(dir.path().join("run"))
            .args(["run", "--name", "t", "--mem", "16", "--kernel"])
            .arg(&kernel)
            .arg("--console")
            .arg(dir.path().join("console.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let r = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !r.sock().exists() {
            assert!(Instant::now() < deadline, "no control socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("run/t.sock")
    }

    fn vmm(&self, args: &[&str]) -> String {
        let out = Command::new(VMM)
            .arg("--runtime-dir")
            .arg(self.dir.path().join("run"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "byteport-vmm did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (thread name, seccomp mode) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|t| {
            let p = t.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
            let mode = status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .unwrap_or("?")
                .trim()
                .to_string();
            (comm.trim().to_string(), mode)
        })
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn graceful_stop_through_the_cli_and_every_thread_confined() {
    let mut r = Running::start(&power_button_guest());
    let list = r.vmm(&["list", "--json"]);
    assert!(list.contains(r#""state":"running""#), "{list}");

    // Once set up, every thread of the process runs under its filter. (KVM's
    // own kernel worker, `kvm-nx-lpage-recovery`, shows up in the thread list
    // on some hosts; it runs no user code.)
    let pid = r.child.id();
    let mut names = Vec::new();
    wait_for("all VMM threads confined", || {
        let t: Vec<_> = threads(pid)
            .into_iter()
            .filter(|(n, _)| !n.starts_with("kvm-"))
            .collect();
        names = t.iter().map(|(n, _)| n.clone()).collect();
        t.len() >= 4 && t.iter().all(|(_, mode)| mode == "2")
    });
    names.sort();
    assert_eq!(
        names,
        ["byteport-vmm", "vcpu0", "vmm-control", "vmm-events"],
        "unexpected thread set"
    );

    let reply = r.vmm(&["stop", "t", "--grace", "30"]);
    assert!(reply.contains("PowerOff"), "{reply}");
    assert!(r.wait_exit().success());
    assert_eq!(r.console(), "1", "the guest saw the power button event");
    assert!(!r.sock().exists(), "control socket left behind");
}

#[test]
fn forced_stop_kills_a_guest_that_ignores_the_button() {
    let mut r = Running::start(&busy_guest());
    wait_for("console output", || !r.console().is_empty());
    let t = Instant::now();
    let reply = r.vmm(&["stop", "t", "--force"]);
    assert!(reply.contains("Killed"), "{reply}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(r.wait_exit().success());
}

#[test]
fn the_control_socket_refuses_other_users_even_when_reachable() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut r = Running::start(&busy_guest());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&r.sock()), 0o600, "the control socket is owner-only");
    // Open the way on purpose (as a bind mount or a careless chmod would):
    // only the peer-credential check stands between another user and the VM.
    for p in [
        r.dir.path().to_path_buf(),
        r.dir.path().join("run"),
        r.sock(),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let out = Command::new(VMM)
        .arg("--runtime-dir")
        .arg(r.dir.path().join("run"))
        .args(["stop", "t", "--force"])
        .uid(12345)
        .gid(12345)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "another user stopped the VM");
    assert!(err.contains("permission denied"), "{err}");
    let list = r.vmm(&["list", "--json"]);
    assert!(list.contains(r#""state":"running""#), "{list}");
    assert!(r.vmm(&["stop", "t", "--force"]).contains("Killed"));
    assert!(r.wait_exit().success());
}
