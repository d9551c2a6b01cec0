//! The one QEMU runner of this crate: boot `-M microvm` under TCG with a
//! kernel and an initramfs, collect the serial console line by line until a
//! marker shows up, the guest powers off, or time runs out.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to boot and when to stop watching.
#[derive(Debug, Clone)]
pub struct Boot {
    /// Kernel image (bzImage).
    pub kernel: PathBuf,
    /// Initramfs (cpio, optionally gzip'd).
    pub initrd: PathBuf,
    /// Kernel command line; [`tcg_timing`] is appended.
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Give up (and kill QEMU) after this long.
    pub timeout: Duration,
    /// Stop collecting once a line contains this.
    pub done: String,
    /// Echo each line to stderr as it comes (long nested runs).
    pub echo: bool,
}

/// What the guest printed.
#[derive(Debug, Clone, Default)]
pub struct Console {
    /// Every line, `\r` trimmed, with seconds since QEMU started.
    pub lines: Vec<(f64, String)>,
    /// The kernel panicked (QEMU's emulated SVM has, rarely, crashed a
    /// level-1 kernel inside KVM_RUN); the log ends shortly after.
    pub panicked: bool,
    /// Wall time until the `done` marker (or the end).
    pub elapsed: Duration,
}

impl Console {
    /// Whether any line contains `m`.
    pub fn has(&self, m: &str) -> bool {
        self.lines.iter().any(|(_, l)| l.contains(m))
    }

    /// The rest of the first line containing `prefix`, after it, trimmed.
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

/// Kernel parameters that keep TCG boots reliable: under load the kernel's
/// PIT calibration of the TSC fails (`tsc: Unable to calibrate against PIT`)
/// and the Debian kernel hangs; giving it the frequency avoids that.
pub fn tcg_timing() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let khz = host_tsc_khz(&cpuinfo).unwrap_or(2_000_000);
    // Debian's kernels use HZ=250.
    format!(
        "tsc_early_khz={khz} lpj={} no_timer_check",
        khz * 1000 / 250
    )
}

/// The host CPU's clock in kHz from `/proc/cpuinfo`.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
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

/// Boots and collects the console. Errors are set-up failures (QEMU missing);
/// a guest that hangs is a [`Console`] without the `done` marker.
pub fn boot(b: &Boot) -> Result<Console, String> {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max"])
        .args(["-smp", &b.cpus.to_string(), "-m", &b.memory_mib.to_string()])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&b.kernel)
        .arg("-initrd")
        .arg(&b.initrd)
        .args(["-append", &format!("{} {}", b.append, tcg_timing())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting qemu-system-x86_64: {e}; run: {}", crate::APT))?;
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
    let mut out = Console::default();
    let mut deadline = start + b.timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let t = start.elapsed().as_secs_f64();
                if b.echo {
                    eprintln!("[{t:6.1}s] {line}");
                }
                let done = line.contains(&b.done);
                if line.contains("Kernel panic - not syncing") && !out.panicked {
                    // Keep the trace's tail, then give up.
                    out.panicked = true;
                    deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                }
                out.lines.push((t, line));
                if done {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_parsing_and_console_queries() {
        assert_eq!(
            host_tsc_khz("processor : 0\ncpu MHz\t\t: 2299.998\n"),
            Some(2_299_998)
        );
        assert_eq!(host_tsc_khz("nothing"), None);
        let c = Console {
            lines: vec![(0.1, "L1-X=7 ".into()), (0.2, "other".into())],
            ..Console::default()
        };
        assert_eq!(c.value("L1-X="), Some("7"));
        assert!(c.has("oth") && !c.has("nope"));
        assert_eq!(c.text(), "L1-X=7 \nother");
    }
}
