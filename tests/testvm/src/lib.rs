//! Test support for BytePort's crates: run a program inside a throwaway
//! Linux VM and read what it prints on the serial console.
//!
//! The VM is QEMU's `microvm` machine under TCG (these machines have no
//! usable hardware virtualization; TCG boots Linux in a few seconds), with
//! the kernel the caller gives (the Debian cloud kernel from
//! `builder::setup`, normally) and an initramfs assembled here: static
//! busybox, the caller's files, and an `/init` that mounts `/proc`, `/sys`,
//! `/dev` (and cgroup2 at `/sys/fs/cgroup` when asked), moves to a tmpfs
//! root with `switch_root` (so the payload may `pivot_root`, which the
//! initramfs itself forbids), runs the payload command and prints
//! `TESTVM-EXIT=<status>` before powering off.
//!
//! ```no_run
//! let probe = testvm::static_build("builder", testvm::Artifact::Example("limits_probe"))?;
//! let out = testvm::Vm::new("/path/to/vmlinuz")
//!     .file(&probe, "/probe")
//!     .cgroup2(true)
//!     .command("/probe")
//!     .run()?;
//! assert_eq!(out.exit, Some(0), "{}", out.log());
//! # Ok::<(), String>(())
//! ```
//!
//! Programs are best linked statically ([`static_build`]: glibc with
//! `+crt-static`, the only target these machines have); a dynamic one
//! needs its libraries added with [`Vm::file`].
#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(format!("{tool} is missing; run: {APT}"));
            }
        }
        let work = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let initrd = work.path().join("initrd.cpio");
        self.initramfs(&work.path().join("root"), &initrd)?;
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max"])
            .args([
                "-smp",
                &self.cpus.to_string(),
                "-m",
                &self.memory_mib.to_string(),
            ])
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
            .args(["-append", &cmdline()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting qemu-system-x86_64: {e}; run: {APT}"))?;
        let start = Instant::now();
        let (tx, rx) = mpsc::channel();
        let stdout = qemu.stdout.take().ok_or("no qemu stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = start + self.timeout;
        let mut out = Output {
            lines: Vec::new(),
            exit: None,
            elapsed: Duration::ZERO,
        };
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left.min(Duration::from_secs(1))) {
                Ok(line) => {
                    let exit = line
                        .find(EXIT_MARKER)
                        .and_then(|i| line[i + EXIT_MARKER.len()..].trim().parse().ok());
                    out.lines.push(line);
                    if exit.is_some() {
                        out.exit = exit;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        out.elapsed = start.elapsed();
        let _ = qemu.kill();
        let _ = qemu.wait();
        Ok(out)
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

/// The guest command line. Under TCG on a busy host the kernel's PIT
/// calibration of the TSC can fail and the boot hang; giving it the host's
/// TSC frequency and loops-per-jiffy (Debian kernels: HZ=250) avoids that.
fn cmdline() -> String {
    let mut c = String::from("console=ttyS0 quiet panic=-1 rdinit=/init");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(khz) = host_tsc_khz(&cpuinfo) {
        c.push_str(&format!(
            " tsc_early_khz={khz} lpj={} no_timer_check",
            khz * 1000 / 250
        ));
    }
    c
}

fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 1.0).then(|| (mhz * 1000.0).round() as u64)
}

/// What [`static_build`] compiles.
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    /// A `[[bin]]` target.
    Bin(&'a str),
    /// An example (`examples/<name>.rs`).
    Example(&'a str),
}

/// Compile `artifact` of workspace package `package` as a static binary
/// (`-C target-feature=+crt-static`, dev profile without debug info) into
/// `<workspace>/target/static` — its own target directory, so the static
/// flags never invalidate the normal build, and later runs are incremental.
/// Returns the binary's path.
pub fn static_build(package: &str, artifact: Artifact<'_>) -> Result<PathBuf, String> {
    // This crate lives at <workspace>/tests/testvm.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .ok_or("testvm is not inside a workspace")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("static");
    let (flag, name, sub) = match artifact {
        Artifact::Bin(n) => ("--bin", n, ""),
        Artifact::Example(n) => ("--example", n, "examples/"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = "x86_64-unknown-linux-gnu";
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build", "--locked", "-p", package, flag, name, "--target", target,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Would override RUSTFLAGS if the caller's environment has it.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "static build of {package} {flag} {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bin = target_dir.join(target).join("debug").join(sub).join(name);
    if !bin.is_file() {
        return Err(format!("{} missing after the build", bin.display()));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_tsc_parsing() {
        assert_eq!(shell_quote("a 'b'"), r"'a '\''b'\'''");
        assert_eq!(
            host_tsc_khz("processor : 0\ncpu MHz\t\t: 2299.998\n"),
            Some(2_299_998)
        );
        assert_eq!(host_tsc_khz("nothing"), None);
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
