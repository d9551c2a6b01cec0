//! Start-up CPU accounting, on when `BYTEPORT_VMM_REPORT_STARTUP` is set: the
//! process CPU time at the end of each set-up phase, printed to stderr by vCPU 0
//! just before its first `KVM_RUN` (the boot benchmark reads that line).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static PHASES: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());
static GUEST_RAM: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Whether start-up accounting is on.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("BYTEPORT_VMM_REPORT_STARTUP").is_some())
}

/// CPU time this process has used so far (all threads).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Records that `phase` just ended.
pub fn mark(phase: &'static str) {
    if enabled() {
        let t = process_cpu_time();
        PHASES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((phase, t));
    }
}

/// Records the host address ranges of guest RAM, so that memory measurements
/// can tell guest RAM from the VMM's own memory (see the boot benchmark).
pub fn guest_ram(mem: &vm_memory::GuestMemoryMmap) {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    if enabled() {
        let mut g = GUEST_RAM.lock().unwrap_or_else(|p| p.into_inner());
        for r in mem.iter() {
            g.push((r.as_ptr() as usize, r.len() as usize));
        }
    }
}

/// Prints the total and the per-phase breakdown (called before the first KVM_RUN).
pub fn report() {
    if !enabled() {
        return;
    }
    let total = process_cpu_time();
    let phases = PHASES.lock().unwrap_or_else(|p| p.into_inner());
    let mut prev = Duration::ZERO;
    let mut parts = Vec::with_capacity(phases.len());
    for (name, t) in phases.iter() {
        parts.push(format!("{name} {:.2}", (*t - prev).as_secs_f64() * 1000.0));
        prev = *t;
    }
    let ram: Vec<String> = GUEST_RAM
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(a, l)| format!("{a:x}-{:x}", a + l))
        .collect();
    eprintln!(
        "byteport-vmm: first KVM_RUN after {:.2} ms of process CPU time ({}; threads {:.2})\n\
         byteport-vmm: guest RAM {}",
        total.as_secs_f64() * 1000.0,
        parts.join(", "),
        (total.saturating_sub(prev)).as_secs_f64() * 1000.0,
        ram.join(" ")
    );
}
