//! Builds the nested test host: level 1 = QEMU TCG `-cpu max` (emulated SVM) with
//! the Debian cloud kernel and the kvm modules; level 2 = the same kernel under
//! our static `byteport-vmm` on level 1's /dev/kvm. Shared by `tests/nested.rs`
//! and `benches/boot.rs` through [`Level1`].
//!
//! Inputs are cached outside the clone in
//! `${BYTEPORT_TEST_CACHE:-/var/cache/byteport-test}/runtime-nested/<kernel>`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian packages this harness needs on the host.
pub const APT: &str = "apt-get install -y qemu-system-x86 busybox-static cpio e2fsprogs";

/// Level-2 kernel modules, in load order.
pub const L2_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "net/vmw_vsock/vsock.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport.ko",
    "drivers/char/hw_random/virtio-rng.ko",
    "drivers/input/evdev.ko",
    "drivers/acpi/button.ko",
];
/// Level-1 kvm modules, in load order.
pub const L1_MODULES: &[&str] = &[
    "virt/lib/irqbypass.ko",
    "arch/x86/kvm/kvm.ko",
    "arch/x86/kvm/kvm-amd.ko",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (install with: {APT})"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails loudly (with the apt-get command) if a host tool is missing.
pub fn require_tools() {
    for tool in [
        "qemu-system-x86_64",
        "cpio",
        "mkfs.ext4",
        "gzip",
        "apt-get",
        "dpkg-deb",
    ] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "required tool {tool} is missing; run: {APT}");
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "static busybox missing; run: {APT}"
    );
}

/// Extracted cloud kernel: (kernel image, modules dir).
pub fn kernel() -> (PathBuf, PathBuf) {
    let base = PathBuf::from(
        std::env::var("BYTEPORT_TEST_CACHE").unwrap_or_else(|_| "/var/cache/byteport-test".into()),
    )
    .join("runtime-nested");
    std::fs::create_dir_all(&base).unwrap();
    // Resolve the meta package to the real versioned package.
    let depends = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]));
    let pkg = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
        .unwrap_or_else(|| panic!("cannot resolve linux-image-cloud-amd64; run: apt-get update"))
        .to_string();
    let dir = base.join(&pkg);
    let version = pkg.trim_start_matches("linux-image-");
    let kernel = dir.join(format!("boot/vmlinuz-{version}"));
    let modules = dir.join(format!("lib/modules/{version}/kernel"));
    if !kernel.exists() {
        let dl = base.join("download");
        let _ = std::fs::remove_dir_all(&dl);
        std::fs::create_dir_all(&dl).unwrap();
        run(Command::new("apt-get")
            .arg("download")
            .arg(&pkg)
            .current_dir(&dl));
        let deb = std::fs::read_dir(&dl)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("downloaded .deb");
        let tmp = base.join(format!("{pkg}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp));
        std::fs::rename(&tmp, &dir).unwrap();
        let _ = std::fs::remove_dir_all(&dl);
    }
    assert!(
        kernel.exists(),
        "{} missing after extraction",
        kernel.display()
    );
    (kernel, modules)
}

/// Builds the static VMM binaries; returns the directory holding `byteport-vmm`
/// and `byteport-vsock-probe`.
pub fn static_bins() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args([
            "build",
            "-p",
            "runtime",
            "--release",
            "--bin",
            "byteport-vmm",
            "--bin",
            "byteport-vsock-probe",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    target.join("x86_64-unknown-linux-gnu/release")
}

/// Builds integration test `name` of the runtime crate as a static binary (so it
/// can run inside level 1) and returns its path.
pub fn static_test_binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = run(Command::new(cargo)
        .args(["test", "-p", "runtime", "--no-run", "--message-format=json"])
        .args(["--test", name, "--target", "x86_64-unknown-linux-gnu"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo did not report the `{name}` test executable"))
}

/// The workspace's (dynamically linked) `byteport-init`, built if needed.
pub fn guest_init_binary() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "-p", "byteport", "--bin", "byteport-init"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    target.join("debug/byteport-init")
}

/// Writes a gzip'd newc cpio of `root` to `out`.
pub fn cpio(root: &Path, out: &Path) {
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        root.display(),
        out.display()
    )));
}

/// Creates a busybox root with `/init` = `script` and `modules` copied to /lib/modules.
pub fn busybox_root(root: &Path, script: &str, modules_dir: &Path, modules: &[&str]) {
    for d in ["bin", "proc", "sys", "dev", "mnt", "lib/modules", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    for m in modules {
        let name = Path::new(m).file_name().unwrap();
        std::fs::copy(modules_dir.join(m), root.join("lib/modules").join(name))
            .unwrap_or_else(|e| panic!("module {m}: {e}"));
    }
    let init = root.join("init");
    std::fs::write(&init, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Makes an ext4 image of `size_mib` from directory `src`.
pub fn ext4(src: &Path, out: &Path, size_mib: u32) {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(out)
        .arg(format!("{size_mib}M")));
}

/// Level-1 guest: a busybox initramfs with the kvm modules, the static VMM and
/// vsock probe at `/`, and whatever payload the caller adds under [`root`](Self::root).
pub struct Level1 {
    work: tempfile::TempDir,
    /// Root of the level-1 initramfs being assembled.
    pub root: PathBuf,
    /// The Debian cloud kernel (level 1 and level 2 boot it).
    pub kernel: PathBuf,
    /// Its modules directory (`.../kernel`).
    pub modules: PathBuf,
}

/// The level-1 console, line by line, each tagged with seconds since boot.
pub struct Console {
    pub lines: Vec<(f64, String)>,
    /// The level-1 kernel panicked (QEMU's emulated SVM has, rarely, crashed the
    /// level-1 kernel inside KVM_RUN); the log then ends there.
    pub panicked: bool,
}

impl Console {
    /// Whether any line contains `m`.
    pub fn has(&self, m: &str) -> bool {
        self.lines.iter().any(|(_, l)| l.contains(m))
    }
    /// The rest of the first line containing `prefix`, after it.
    pub fn value(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|(_, l)| l.find(prefix).map(|i| l[i + prefix.len()..].trim()))
    }
    /// The whole log, for assertion messages.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Level1 {
    /// Prepares level 1 with `init` as its `/init` script.
    pub fn new(init: &str) -> Self {
        require_tools();
        let (kernel, modules) = kernel();
        let bins = static_bins();
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("l1root");
        busybox_root(&root, init, &modules, L1_MODULES);
        for b in ["byteport-vmm", "byteport-vsock-probe"] {
            std::fs::copy(bins.join(b), root.join(b)).unwrap();
        }
        std::fs::create_dir_all(root.join("l2")).unwrap();
        std::fs::copy(&kernel, root.join("l2/vmlinuz")).unwrap();
        Self {
            work,
            root,
            kernel,
            modules,
        }
    }

    /// A scratch directory outside the level-1 image.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Adds `/l2/initrd.gz`: a busybox level-2 initramfs with `init` and `modules`
    /// (plus the vsock probe as `/bin/byteport-vsock-probe`).
    pub fn add_l2_initrd(&self, init: &str, modules: &[&str]) {
        let l2root = self.scratch("l2root");
        busybox_root(&l2root, init, &self.modules, modules);
        std::fs::copy(
            self.root.join("byteport-vsock-probe"),
            l2root.join("bin/byteport-vsock-probe"),
        )
        .unwrap();
        cpio(&l2root, &self.root.join("l2/initrd.gz"));
    }

    /// Boots level 1 (QEMU TCG, `-cpu max`) and collects its console until a line
    /// contains `done` or `timeout` passes. Lines are echoed to stderr as they come.
    pub fn boot(&self, mem_mib: u32, smp: u32, timeout: Duration, done: &str) -> Console {
        let initrd = self.work.path().join("l1.gz");
        cpio(&self.root, &initrd);
        let start = Instant::now();
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max"])
            .args(["-smp", &smp.to_string(), "-m", &mem_mib.to_string()])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-nographic",
                "-serial",
                "stdio",
            ])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&initrd)
            // Under load, TCG timing defeats the kernel's PIT-based TSC calibration
            // and the boot stalls; give it the figures instead.
            .args([
                "-append",
                "console=ttyS0 quiet panic=0 tsc_early_khz=2000000 lpj=4000000",
            ])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("qemu-system-x86_64: {e}; run: {APT}"));
        let out = qemu.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let mut deadline = start + timeout;
        let mut panicked = false;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(l) => {
                    let l = l.trim_end_matches('\r').to_string();
                    let t = start.elapsed().as_secs_f64();
                    eprintln!("[{t:6.1}s] {l}");
                    let end = l.contains(done);
                    if l.contains("Kernel panic - not syncing") && !panicked {
                        // Keep the trace's tail, then give up (panic=0: no reboot).
                        panicked = true;
                        deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                    }
                    lines.push((t, l));
                    if end {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        let _ = qemu.kill();
        let _ = qemu.wait();
        Console { lines, panicked }
    }
}
