//! [`Vm`]: run a program inside a throwaway Linux VM and read what it
//! prints on the serial console.
//!
//! The VM is QEMU's `microvm` machine under TCG with the kernel the caller
//! gives (the Debian cloud kernel from `builder::setup` or [`crate::kernel`])
//! and an initramfs assembled here: static busybox, the caller's files, and
//! an `/init` that mounts `/proc`, `/sys`, `/dev` (and cgroup2 at
//! `/sys/fs/cgroup` when asked), moves to a tmpfs root with `switch_root` (so
//! the payload may `pivot_root`, which the initramfs itself forbids), runs
//! the payload command and prints `TESTVM-EXIT=<status>` before powering off.
//!
//! Programs are best linked statically ([`crate::static_build`]: glibc with
//! `+crt-static`, the only target these machines have); a dynamic one needs
//! its libraries added with [`Vm::file`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Debian packages the harness needs on the host.
pub const APT: &str = "apt-get install -y qemu-system-x86 busybox-static cpio";
/// The line `/init` prints after the payload, followed by its exit status.
pub const EXIT_MARKER: &str = "TESTVM-EXIT=";

/// A VM to run: kernel, files, payload command and resources.
#[derive(Debug, Clone)]
pub struct Vm {
    kernel: PathBuf,
    busybox: PathBuf,
    files: Vec<(PathBuf, String)>,
    command: String,
    memory_mib: u32,
    cpus: u32,
    timeout: Duration,
    cgroup2: bool,
}

/// What the VM printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Every console line (kernel and payload), `\r` trimmed.
    pub lines: Vec<String>,
    /// The payload's exit status, if it got that far.
    pub exit: Option<i32>,
    /// Wall time from QEMU's start to the exit marker (or the timeout).
    pub elapsed: Duration,
}

impl Output {
    /// Whether some line contains `marker`.
    pub fn has(&self, marker: &str) -> bool {
        self.lines.iter().any(|l| l.contains(marker))
    }

    /// The whole console output, for assertion messages.
    pub fn log(&self) -> String {
        self.lines.join("\n")
    }
}

impl Vm {
    /// A VM booting `kernel` (bzImage): 512 MiB, 1 vCPU, 180 s timeout,
    /// busybox from `/bin/busybox` (Debian's busybox-static).
    pub fn new(kernel: impl Into<PathBuf>) -> Vm {
        Vm {
            kernel: kernel.into(),
            busybox: PathBuf::from("/bin/busybox"),
            files: Vec::new(),
            command: "true".into(),
            memory_mib: 512,
            cpus: 1,
            timeout: Duration::from_secs(180),
            cgroup2: false,
        }
    }

    /// Copy the host file `host` to `guest` (absolute) in the VM, mode kept.
    pub fn file(mut self, host: impl AsRef<Path>, guest: &str) -> Vm {
        self.files
            .push((host.as_ref().to_path_buf(), guest.to_string()));
        self
    }

    /// The payload: a busybox `sh -c` command line.
    pub fn command(mut self, command: &str) -> Vm {
        self.command = command.to_string();
        self
    }

    /// Guest memory.
    pub fn memory_mib(mut self, mib: u32) -> Vm {
        self.memory_mib = mib;
        self
    }

    /// vCPUs.
    pub fn cpus(mut self, cpus: u32) -> Vm {
        self.cpus = cpus;
        self
    }

    /// Give up (and kill QEMU) after this long.
    pub fn timeout(mut self, timeout: Duration) -> Vm {
        self.timeout = timeout;
        self
    }

    /// Mount the unified cgroup hierarchy (v2, every controller) at `/sys/fs/cgroup`.
    pub fn cgroup2(mut self, on: bool) -> Vm {
        self.cgroup2 = on;
        self
    }

    /// A static busybox other than `/bin/busybox`.
    pub fn busybox(mut self, path: impl Into<PathBuf>) -> Vm {
        self.busybox = path.into();
        self
    }

    /// Boot, run the payload, return the console output. Errors are set-up
    /// failures (missing tools, unreadable files); a payload that fails or
    /// a guest that hangs is reported in [`Output`] (`exit` is `None` on a
    /// timeout).
    pub fn run(&self) -> Result<Output, String> {
        for tool in ["qemu-system-x86_64", "cpio"] {
            if !crate::have(tool) {
                return Err(format!("{tool} is missing; run: {APT}"));
            }
        }
        let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let initrd = work.path().join("initrd.cpio");
        self.initramfs(&work.path().join("root"), &initrd)?;
        let console = crate::console::boot(&crate::console::Boot {
            kernel: self.kernel.clone(),
            initrd,
            append: "console=ttyS0 quiet panic=-1 rdinit=/init".into(),
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            timeout: self.timeout,
            done: EXIT_MARKER.into(),
            echo: false,
        })?;
        let exit = console.value(EXIT_MARKER).and_then(|v| v.parse().ok());
        Ok(Output {
            lines: console.lines.into_iter().map(|(_, l)| l).collect(),
            exit,
            elapsed: console.elapsed,
        })
    }

    /// Lay out the initramfs tree under `root` and pack it (newc cpio,
    /// uncompressed: the kernel takes it as is and it saves a gzip pass).
    fn initramfs(&self, root: &Path, out: &Path) -> Result<(), String> {
        let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
        for d in ["bin", "proc", "sys", "dev", "newroot"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| io("creating", root, e))?;
        }
        std::fs::copy(&self.busybox, root.join("bin/busybox"))
            .map_err(|e| io(&format!("copying busybox (run: {APT})"), &self.busybox, e))?;
        for (host, guest) in &self.files {
            let rel = guest.trim_start_matches('/');
            if rel.is_empty() || rel.split('/').any(|c| c == "..") {
                return Err(format!("guest path {guest} must be absolute, without `..`"));
            }
            let dest = root.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
            }
            std::fs::copy(host, &dest).map_err(|e| io("copying", host, e))?;
        }
        write_script(&root.join("init"), INIT_STAGE1)?;
        let stage2 = INIT_STAGE2
            .replace(
                "@CGROUP2@",
                if self.cgroup2 {
                    "mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"
                } else {
                    ":"
                },
            )
            .replace("@COMMAND@", &shell_quote(&self.command));
        write_script(&root.join("stage2"), &stage2)?;
        let packed = Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . | cpio -o -H newc --quiet > \"$2\"")
            .args(["sh"])
            .arg(root)
            .arg(out)
            .status()
            .map_err(|e| format!("running cpio: {e}; run: {APT}"))?;
        if !packed.success() {
            return Err(format!("cpio failed packing {}", root.display()));
        }
        Ok(())
    }
}

/// Stage 1 (PID 1 in the initramfs): copy everything to a tmpfs and switch
/// to it, since `pivot_root` refuses to move the initramfs root.
const INIT_STAGE1: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t tmpfs -o mode=755 tmpfs /newroot
for f in /*; do
  case "$f" in /proc|/sys|/dev|/newroot) ;; *) cp -a "$f" /newroot/ ;; esac
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp
exec switch_root /newroot /stage2
echo TESTVM-SWITCH-ROOT-FAILED
"#;

/// Stage 2 (PID 1 on the tmpfs root): mounts, the payload, its status, off.
const INIT_STAGE2: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
chmod 1777 /tmp
@CGROUP2@
echo TESTVM-START
cd /
sh -c @COMMAND@
echo TESTVM-EXIT=$?
poweroff -f
"#;

fn write_script(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a 'b'"), r"'a '\''b'\'''");
    }

    #[test]
    fn guest_paths_must_be_absolute_and_inside() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let bb = d.path().join("bb");
        std::fs::write(&bb, "x").unwrap();
        let vm = Vm::new("k").busybox(&bb).file(&f, "/../etc/x");
        let err = vm
            .initramfs(&d.path().join("root"), &d.path().join("out"))
            .unwrap_err();
        assert!(err.contains("without `..`"), "{err}");
    }
}
