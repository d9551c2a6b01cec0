//! The nested test host: level 1 = QEMU TCG `-cpu max` (emulated SVM) with
//! the Debian cloud kernel and the kvm modules, so level 2 runs on a real
//! `/dev/kvm` — BytePort's static `byteport-vmm` booting the same kernel.
//! Used by the `vmm` crate's tests and boot benchmark and by the runtime's
//! `kvm` driver test, through [`Level1`].
//!
//! Inputs are cached outside the clone (see [`crate::kernel`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use crate::console::Console;
use crate::kernel::DebianKernel;

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
        assert!(
            crate::have(tool),
            "required tool {tool} is missing; run: {APT}"
        );
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "static busybox missing; run: {APT}"
    );
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
    pub kernel: DebianKernel,
    /// The static `byteport-vmm` and `byteport-vsock-probe` (also at `/` in level 1).
    pub bins: PathBuf,
}

impl Level1 {
    /// Prepares level 1 with `init` as its `/init` script.
    pub fn new(init: &str) -> Self {
        require_tools();
        let kernel = crate::kernel::debian_cloud();
        let bins =
            crate::build::static_release_bins("vmm", &["byteport-vmm", "byteport-vsock-probe"])
                .unwrap_or_else(|e| panic!("{e}"));
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("l1root");
        busybox_root(&root, init, &kernel.modules(), L1_MODULES);
        for b in ["byteport-vmm", "byteport-vsock-probe"] {
            std::fs::copy(bins.join(b), root.join(b)).unwrap();
        }
        std::fs::create_dir_all(root.join("l2")).unwrap();
        std::fs::copy(&kernel.image, root.join("l2/vmlinuz")).unwrap();
        Self {
            work,
            root,
            kernel,
            bins,
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
        busybox_root(&l2root, init, &self.kernel.modules(), modules);
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
        crate::console::boot(&crate::console::Boot {
            kernel: self.kernel.image.clone(),
            initrd,
            // panic=0: a panicking level 1 stays put, its trace on the console.
            append: "console=ttyS0 quiet panic=0".into(),
            memory_mib: mem_mib,
            cpus: smp,
            timeout,
            done: done.into(),
            echo: true,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs `cmd`, panicking with its output (and the packages to install) on failure.
pub fn run(cmd: &mut Command) -> String {
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
