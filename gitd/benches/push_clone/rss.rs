//! Peak resident memory of a process tree, sampled from /proc: the sum of
//! VmRSS over the root and all its descendants (for sshd: the listener,
//! the per-connection sshd processes and the git processes they run).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `pid` and all its descendants, with their command names.
fn tree(root: u32) -> Vec<(u32, String)> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut names = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parens.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_string();
        let ppid = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        children.entry(ppid).or_default().push(pid);
        names.insert(pid, name);
    }
    let mut out = vec![];
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        out.push((p, names.get(&p).cloned().unwrap_or_default()));
        stack.extend(children.get(&p).into_iter().flatten());
    }
    out
}

/// Current VmRSS summed over `root`'s process tree, KiB.
pub fn tree_kib(root: u32) -> u64 {
    tree(root)
        .iter()
        .map(|(p, _)| rss_kib(*p).unwrap_or(0))
        .sum()
}

/// Peaks seen while sampling.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peak {
    /// Whole tree, KiB.
    pub total_kib: u64,
    /// Only `git*` processes, KiB.
    pub git_kib: u64,
}

/// Samples the tree under `root` every 5 ms until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Peak>>,
}

impl Sampler {
    /// Starts sampling.
    pub fn start(root: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = Peak::default();
            while !s.load(Ordering::SeqCst) {
                let procs = tree(root);
                let mut total = 0;
                let mut git = 0;
                for (pid, name) in procs {
                    let r = rss_kib(pid).unwrap_or(0);
                    total += r;
                    if name.starts_with("git") {
                        git += r;
                    }
                }
                peak.total_kib = peak.total_kib.max(total);
                peak.git_kib = peak.git_kib.max(git);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the peaks.
    pub fn stop(mut self) -> Peak {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// Resets the kernel's peak-RSS counter (VmHWM) of `pid`.
pub fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// VmHWM (peak RSS since the last reset) of `pid` in KiB.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
