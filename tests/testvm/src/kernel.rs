//! The Debian cloud kernel (`linux-image-cloud-amd64`), the guest kernel of
//! BytePort's VMs, fetched with `apt-get download` once and unpacked into
//! `<cache>/runtime-nested/<package>` (the package name carries the version).

use std::path::PathBuf;
use std::process::Command;

/// An unpacked Debian cloud kernel.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// The bzImage (`boot/vmlinuz-<version>`).
    pub image: PathBuf,
    /// `lib/modules/<version>` (holds `kernel/` and, after depmod, `modules.dep`).
    pub modules_dir: PathBuf,
}

impl DebianKernel {
    /// `lib/modules/<version>/kernel`, where module paths like
    /// `drivers/virtio/virtio.ko` are relative to.
    pub fn modules(&self) -> PathBuf {
        self.modules_dir.join("kernel")
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {cmd:?}: {e} (install with: {})",
            crate::nested::APT
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel, downloaded and unpacked on first use. Panics with the fix
/// (`apt-get update`, the package to install) when it cannot be fetched.
pub fn debian_cloud() -> DebianKernel {
    let base = crate::cache_dir().join("runtime-nested");
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
    let image = dir.join(format!("boot/vmlinuz-{version}"));
    let modules_dir = dir.join(format!("lib/modules/{version}"));
    if !image.exists() {
        let dl = base.join(format!("download-{}", std::process::id()));
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
        let tmp = base.join(format!("{pkg}.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp));
        // Another test process may have won the race; either copy is fine.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let _ = std::fs::remove_dir_all(&dl);
    }
    assert!(
        image.exists(),
        "{} missing after extraction",
        image.display()
    );
    DebianKernel { image, modules_dir }
}
