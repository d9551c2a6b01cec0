//! `byteport doctor`: what this host can do, each line OK or missing with
//! the fix, and which runtime driver `auto` picks and why.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::config::{Config, Driver};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Works, with a caveat.
    Warn,
    /// Absent or unusable.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, when not OK.
    pub fix: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The driver `auto` resolves to on this host.
    pub driver: Driver,
    /// Why.
    pub driver_reason: String,
}

/// Facts about virtualization on this host (see the shared doc
/// `virtualization-on-these-machines.md`).
#[derive(Debug, Clone, Serialize)]
pub struct VirtFacts {
    /// `/dev/kvm` exists.
    pub kvm_device: bool,
    /// `/dev/kvm` opens read-write.
    pub kvm_openable: bool,
    /// `vmx` or `svm` in `/proc/cpuinfo`.
    pub hw_virt_flag: bool,
    /// The paravirtual KVM module (`/sys/module/kvm_pvm`) is loaded: guests
    /// run under instruction emulation, far too slow to boot Linux.
    pub kvm_pvm: bool,
}

impl VirtFacts {
    /// Reads the facts from `root` (normally `/`; tests pass a fake tree).
    pub fn probe(root: &Path) -> VirtFacts {
        let kvm = root.join("dev/kvm");
        let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
        let hw_virt_flag = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        VirtFacts {
            kvm_device: kvm.exists(),
            kvm_openable: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&kvm)
                .is_ok(),
            hw_virt_flag,
            kvm_pvm: root.join("sys/module/kvm_pvm").exists(),
        }
    }

    /// Hardware virtualization usable by BytePort's own VMM.
    pub fn hardware_virt_usable(&self) -> bool {
        self.kvm_openable && self.hw_virt_flag && !self.kvm_pvm
    }

    /// What `auto` picks, and why.
    pub fn auto_driver(&self) -> (Driver, String) {
        if self.hardware_virt_usable() {
            (
                Driver::Kvm,
                "hardware virtualization is usable: BytePort's own VMM on /dev/kvm".into(),
            )
        } else if !self.kvm_device {
            (
                Driver::Qemu,
                "no /dev/kvm: QEMU microvm with software emulation (TCG)".into(),
            )
        } else if self.kvm_pvm {
            (
                Driver::Qemu,
                "/dev/kvm is the paravirtual kvm_pvm module without VT-x/AMD-V: guests would run under instruction emulation, so QEMU microvm with TCG is faster".into(),
            )
        } else if !self.hw_virt_flag {
            (
                Driver::Qemu,
                "the CPU shows no vmx/svm flag: QEMU microvm with TCG".into(),
            )
        } else {
            (
                Driver::Qemu,
                "/dev/kvm cannot be opened read-write: QEMU microvm with TCG".into(),
            )
        }
    }
}

/// Finds an executable in `PATH` (plus the sbin directories tools hide in).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn version_of(bin: &Path, arg: Option<&str>) -> String {
    Command::new(bin)
        .args(arg)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The argument that makes `bin` print its version on the first line.
fn version_arg(bin: &Path) -> Option<&'static str> {
    match bin.file_name()?.to_str()? {
        "mkfs.ext4" => Some("-V"),
        // busybox prints "BusyBox v1.x ..." first when run without arguments.
        "busybox" => None,
        _ => Some("--version"),
    }
}

fn tool(name: &'static str, candidates: &[&str], fix: &str) -> Check {
    match candidates.iter().find_map(|c| which(c)) {
        Some(p) => Check {
            name,
            status: Status::Ok,
            detail: format!("{} {}", p.display(), version_of(&p, version_arg(&p))),
            fix: None,
        },
        None => Check {
            name,
            status: Status::Missing,
            detail: format!("none of {} found", candidates.join(", ")),
            fix: Some(fix.to_string()),
        },
    }
}

fn free_disk(path: &Path) -> Check {
    let probe = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized,
    // zero-initialised out-parameter that statvfs fills in.
    let (rc, st) = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return Check {
            name: "free disk",
            status: Status::Warn,
            detail: format!("cannot stat {}", probe.display()),
            fix: None,
        };
    }
    let free = st.f_bavail * st.f_frsize;
    let gib = free as f64 / (1u64 << 30) as f64;
    let (status, fix) = if gib < 5.0 {
        (
            Status::Warn,
            Some("free at least 5 GiB: base layers, kernels and artifacts live here".to_string()),
        )
    } else {
        (Status::Ok, None)
    };
    Check {
        name: "free disk",
        status,
        detail: format!("{gib:.1} GiB free at {}", probe.display()),
        fix,
    }
}

/// What the builder can limit for build steps, from its own detection.
fn cgroups(hierarchy: &builder::cgroup::Hierarchy) -> Check {
    use builder::cgroup::Hierarchy;
    let missing: Vec<&str> = hierarchy.missing().iter().map(|c| c.name()).collect();
    match hierarchy {
        Hierarchy::Unsupported(why) => Check {
            name: "cgroups",
            status: Status::Warn,
            detail: format!(
                "{why}: build steps run with a timeout but without memory/pids/CPU limits"
            ),
            fix: Some(
                "mount cgroup2 on /sys/fs/cgroup (or the v1 memory, pids and cpu controllers)"
                    .into(),
            ),
        },
        h if missing.is_empty() => Check {
            name: "cgroups",
            status: Status::Ok,
            detail: format!("{}: build steps get memory, pids and CPU limits", h.label()),
            fix: None,
        },
        h => Check {
            name: "cgroups",
            status: Status::Warn,
            detail: format!(
                "{}: build steps are not limited for {}",
                h.label(),
                missing.join(", ")
            ),
            fix: Some(format!("enable the {} controller(s)", missing.join(", "))),
        },
    }
}

/// Runs every check against the live host.
pub fn run(config: &Config) -> Report {
    let facts = VirtFacts::probe(Path::new("/"));
    let mut checks = vec![];
    checks.push(Check {
        name: "/dev/kvm",
        status: if facts.kvm_openable {
            Status::Ok
        } else {
            Status::Missing
        },
        detail: if facts.kvm_openable {
            "present and opens read-write".into()
        } else if facts.kvm_device {
            "present but cannot be opened read-write".into()
        } else {
            "absent".into()
        },
        fix: (!facts.kvm_openable).then(|| {
            "load kvm_intel/kvm_amd and add your user to the `kvm` group (or run as root)".into()
        }),
    });
    checks.push(Check {
        name: "hardware virtualization",
        status: if facts.hardware_virt_usable() { Status::Ok } else { Status::Missing },
        detail: match (facts.hw_virt_flag, facts.kvm_pvm) {
            (_, true) => "not usable: KVM here is the paravirtual kvm_pvm module and the CPU has no vmx/svm; guests run under instruction emulation".into(),
            (false, false) => "not usable: no vmx/svm flag in /proc/cpuinfo".into(),
            (true, false) if facts.kvm_openable => "usable (vmx/svm present)".into(),
            (true, false) => "CPU supports it but /dev/kvm is unusable".into(),
        },
        fix: (!facts.hardware_virt_usable()).then(|| {
            "use bare metal or a cloud VM with nested virtualization enabled; until then the qemu driver (TCG) runs apps".into()
        }),
    });
    checks.push(match runtime::drivers::kvm::find_vmm() {
        Some(p) => Check {
            name: "byteport-vmm",
            status: Status::Ok,
            detail: format!("{} (the kvm driver)", p.display()),
            fix: None,
        },
        None => Check {
            name: "byteport-vmm",
            status: if facts.hardware_virt_usable() {
                Status::Missing
            } else {
                Status::Warn
            },
            detail: "not found beside byteport: the kvm driver cannot run".into(),
            fix: Some("cargo install --locked --path vmm --bin byteport-vmm".into()),
        },
    });
    checks.push(tool(
        "QEMU",
        &["qemu-system-x86_64"],
        "apt-get install qemu-system-x86",
    ));
    checks.push(tool(
        "Chromium",
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium (portfolio screenshots)",
    ));
    checks.push(tool(
        "mkfs.ext4",
        &["mkfs.ext4"],
        "apt-get install e2fsprogs",
    ));
    checks.push(tool(
        "debootstrap/mmdebstrap",
        &["mmdebstrap", "debootstrap"],
        "apt-get install mmdebstrap (debian:<suite> bases)",
    ));
    checks.push(tool(
        "busybox",
        &["busybox"],
        "apt-get install busybox-static",
    ));
    checks.push(tool(
        "git",
        &["git"],
        "apt-get install git (clients only; the server needs none)",
    ));
    checks.push(cgroups(&builder::cgroup::detect()));
    checks.push(Check {
        name: "vhost-vsock",
        status: if Path::new("/dev/vhost-vsock").exists() {
            Status::Ok
        } else {
            Status::Warn
        },
        detail: if Path::new("/dev/vhost-vsock").exists() {
            "present: the qemu driver can use vsock".into()
        } else {
            "absent: the qemu driver reaches apps through user-mode networking".into()
        },
        fix: None,
    });
    checks.push(free_disk(&config.home));
    let (auto, reason) = facts.auto_driver();
    let (driver, driver_reason) = match config.driver {
        Driver::Auto => (auto, format!("auto → {auto}: {reason}")),
        d => (
            d,
            format!("{d}: set explicitly (auto would pick {auto}: {reason})"),
        ),
    };
    Report {
        checks,
        driver,
        driver_reason,
    }
}

impl Report {
    /// Human-readable rendering.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = match c.status {
                Status::Ok => "OK     ",
                Status::Warn => "WARN   ",
                Status::Missing => "MISSING",
            };
            out.push_str(&format!("{tag} {:<24} {}\n", c.name, c.detail));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("        {:<24} fix: {fix}\n", ""));
            }
        }
        out.push_str(&format!("\nruntime driver: {}\n", self.driver_reason));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(cpu_flags: &str, pvm: bool) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("proc")).unwrap();
        std::fs::write(
            d.path().join("proc/cpuinfo"),
            format!("processor\t: 0\nflags\t\t: fpu sse2 {cpu_flags}\n"),
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::fs::write(d.path().join("dev/kvm"), b"").unwrap();
        if pvm {
            std::fs::create_dir_all(d.path().join("sys/module/kvm_pvm")).unwrap();
        }
        d
    }

    #[test]
    fn paravirtual_kvm_without_flags_picks_qemu_and_says_why() {
        let root = fake_root("", true);
        let f = VirtFacts::probe(root.path());
        assert!(f.kvm_device && !f.hw_virt_flag && f.kvm_pvm);
        assert!(!f.hardware_virt_usable());
        let (d, why) = f.auto_driver();
        assert_eq!(d, Driver::Qemu);
        assert!(why.contains("kvm_pvm"), "{why}");
    }

    #[test]
    fn svm_flag_with_real_kvm_picks_kvm() {
        let root = fake_root("svm", false);
        let f = VirtFacts::probe(root.path());
        assert!(f.hardware_virt_usable());
        assert_eq!(f.auto_driver().0, Driver::Kvm);
    }

    #[test]
    fn no_kvm_device_picks_qemu() {
        let d = tempfile::tempdir().unwrap();
        let f = VirtFacts::probe(d.path());
        assert!(!f.kvm_device);
        let (drv, why) = f.auto_driver();
        assert_eq!(drv, Driver::Qemu);
        assert!(why.contains("no /dev/kvm"));
    }
}
