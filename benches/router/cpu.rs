//! Where the router bench reads a proxy's CPU time from: /proc, per
//! process, process tree or named threads.

/// utime + stime of a task, in seconds, from /proc/<pid>[/task/<tid>]/stat.
fn task_cpu_secs(stat_path: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: split after it.
    let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

/// Where a proxy's CPU time is read from.
#[derive(Clone)]
pub enum CpuOf {
    /// Nothing (the direct path).
    Nobody,
    /// One process, all its threads (`byteport up`; its QEMU children are
    /// the app, not the proxy).
    Process(u32),
    /// A whole process and its children as listed in /proc (nginx master + workers).
    ProcessTree(u32),
    /// The threads of this process whose name starts with the prefix.
    ThreadsNamed(&'static str),
}

impl CpuOf {
    pub fn secs(&self) -> f64 {
        match self {
            CpuOf::Nobody => 0.0,
            CpuOf::Process(pid) => {
                task_cpu_secs(std::path::Path::new(&format!("/proc/{pid}/stat")))
            }
            CpuOf::ProcessTree(pid) => {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                std::iter::once(*pid)
                    .chain(children.split_whitespace().filter_map(|c| c.parse().ok()))
                    .map(|p: u32| task_cpu_secs(std::path::Path::new(&format!("/proc/{p}/stat"))))
                    .sum()
            }
            CpuOf::ThreadsNamed(prefix) => std::fs::read_dir("/proc/self/task")
                .map(|tasks| {
                    tasks
                        .flatten()
                        .filter(|t| {
                            std::fs::read_to_string(t.path().join("comm"))
                                .is_ok_and(|c| c.starts_with(prefix))
                        })
                        .map(|t| task_cpu_secs(&t.path().join("stat")))
                        .sum()
                })
                .unwrap_or(0.0),
        }
    }
}
