//! Resource limits for build steps, on the cgroup hierarchy the host has:
//!
//! - **v2** (unified): `memory.max` (+ `memory.swap.max` = 0), `pids.max`,
//!   `cpu.max`, in `<root>/byteport-build/<step>`;
//! - **v1** (legacy, or the "hybrid" layout whose unified mount carries no
//!   controllers): `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`
//!   when swap accounting is on), `pids.max`, `cpu.cfs_quota_us` /
//!   `cpu.cfs_period_us`, in `byteport-build/<step>` of each controller's
//!   hierarchy — what Docker's cgroupfs driver does on such hosts.
//!
//! Hierarchies are found in `/proc/self/mountinfo`, not at fixed paths, so
//! `cpu,cpuacct` co-mounts and non-standard mount points work. A controller
//! that is nowhere available is reported by name; when none is, the build
//! log says limits are not enforced (the timeout still is).

mod group;

pub use group::{GroupReport, StepGroup};

use std::path::{Path, PathBuf};

/// A cgroup controller the builder limits steps with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// Memory (OOM-kills the step's processes past the limit).
    Memory,
    /// Number of processes (stops fork bombs).
    Pids,
    /// CPU bandwidth.
    Cpu,
}

impl Controller {
    /// All controllers, in the order limits are written.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// Limits applied to one build step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes (swap is not allowed beyond it).
    pub memory_bytes: u64,
    /// Maximum number of processes (and threads).
    pub pids: u32,
    /// CPU quota in whole CPUs.
    pub cpus: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 2 << 30,
            pids: 4096,
            cpus: 2,
        }
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory {} MiB, {} processes, {} CPU{}",
            self.memory_bytes >> 20,
            self.pids,
            self.cpus,
            if self.cpus == 1 { "" } else { "s" }
        )
    }
}

/// Which cgroup hierarchy limits build steps on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified (v2) hierarchy mounted at `root`, offering `controllers`.
    V2 {
        /// Mount point (normally `/sys/fs/cgroup`).
        root: PathBuf,
        /// Controllers it offers (a subset of [`Controller::ALL`]).
        controllers: Vec<Controller>,
    },
    /// Legacy (v1) hierarchies: the mount point of each available controller.
    V1 {
        /// (controller, mount point), e.g. `(Memory, /sys/fs/cgroup/memory)`.
        mounts: Vec<(Controller, PathBuf)>,
    },
    /// No usable controller; the reason is shown in the build log.
    Unsupported(String),
}

impl Hierarchy {
    /// `cgroup v2`, `cgroup v1` or `no cgroups`.
    pub fn label(&self) -> &'static str {
        match self {
            Hierarchy::V2 { .. } => "cgroup v2",
            Hierarchy::V1 { .. } => "cgroup v1",
            Hierarchy::Unsupported(_) => "no cgroups",
        }
    }

    /// Controllers this hierarchy cannot limit.
    pub fn missing(&self) -> Vec<Controller> {
        Controller::ALL
            .into_iter()
            .filter(|c| match self {
                Hierarchy::V2 { controllers, .. } => !controllers.contains(c),
                Hierarchy::V1 { mounts } => !mounts.iter().any(|(m, _)| m == c),
                Hierarchy::Unsupported(_) => true,
            })
            .collect()
    }
}

/// Detect the hierarchy from this process's `/proc/self/mountinfo`.
pub fn detect() -> Hierarchy {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => detect_from(&text),
        Err(e) => Hierarchy::Unsupported(format!("cannot read /proc/self/mountinfo ({e})")),
    }
}

/// Detect the hierarchy from mountinfo text (reads each v2 mount's
/// `cgroup.controllers`). v2 wins when it offers every controller; else v1
/// when it has any; else whatever v2 offers.
pub fn detect_from(mountinfo: &str) -> Hierarchy {
    let mut v2: Option<(PathBuf, Vec<Controller>)> = None;
    let mut v1: Vec<(Controller, PathBuf)> = Vec::new();
    for m in mountinfo.lines().filter_map(parse_mount_line) {
        match m.fstype.as_str() {
            "cgroup2" => {
                let offered =
                    std::fs::read_to_string(m.point.join("cgroup.controllers")).unwrap_or_default();
                let controllers: Vec<Controller> = Controller::ALL
                    .into_iter()
                    .filter(|c| offered.split_whitespace().any(|w| w == c.name()))
                    .collect();
                if v2
                    .as_ref()
                    .is_none_or(|(_, best)| controllers.len() > best.len())
                {
                    v2 = Some((m.point, controllers));
                }
            }
            "cgroup" => {
                for c in Controller::ALL {
                    let has = m.super_options.split(',').any(|o| o == c.name());
                    if has && !v1.iter().any(|(known, _)| *known == c) {
                        v1.push((c, m.point.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    v1.sort();
    match v2 {
        Some((root, controllers)) if controllers.len() == Controller::ALL.len() => {
            Hierarchy::V2 { root, controllers }
        }
        _ if !v1.is_empty() => Hierarchy::V1 { mounts: v1 },
        Some((root, controllers)) if !controllers.is_empty() => {
            Hierarchy::V2 { root, controllers }
        }
        Some((root, _)) => Hierarchy::Unsupported(format!(
            "the cgroup v2 hierarchy at {} offers none of the memory, pids and cpu controllers, and no cgroup v1 hierarchy has them",
            root.display()
        )),
        None => Hierarchy::Unsupported(
            "no cgroup hierarchy is mounted (mount cgroup2 at /sys/fs/cgroup)".into(),
        ),
    }
}

/// The fields of a mountinfo line the detection needs.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Parse `36 35 98:0 /root /mnt rw,noatime master:1 - cgroup cgroup rw,memory`.
fn parse_mount_line(line: &str) -> Option<MountLine> {
    let (pre, post) = line.split_once(" - ")?;
    let point = pre.split(' ').nth(4)?;
    let mut post = post.split(' ');
    let fstype = post.next()?.to_string();
    let _source = post.next()?;
    let super_options = post.next().unwrap_or("").to_string();
    Some(MountLine {
        point: PathBuf::from(unescape(point)),
        fstype,
        super_options,
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\134` for `\`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a step's group lives under one hierarchy root.
pub(crate) fn group_dir(root: &Path, name: &str) -> PathBuf {
    root.join(PARENT).join(name)
}

/// Parent group of every step group, in each hierarchy.
pub const PARENT: &str = "byteport-build";

#[cfg(test)]
mod tests {
    use super::*;

    fn line(point: &Path, fstype: &str, opts: &str) -> String {
        format!(
            "30 25 0:26 / {} rw,nosuid shared:9 - {fstype} {fstype} {opts}\n",
            point.display().to_string().replace(' ', "\\040")
        )
    }

    #[test]
    fn v2_with_all_controllers_wins() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        let info =
            line(d.path(), "cgroup2", "rw") + &line(Path::new("/x/memory"), "cgroup", "rw,memory");
        assert_eq!(
            detect_from(&info),
            Hierarchy::V2 {
                root: d.path().to_path_buf(),
                controllers: Controller::ALL.to_vec()
            }
        );
    }

    #[test]
    fn hybrid_host_uses_v1_and_names_missing_controllers() {
        // This machine's layout: v1 controllers plus an empty `unified` v2 mount.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let info = line(
            Path::new("/sys/fs/cgroup/cpu,cpuacct"),
            "cgroup",
            "rw,cpu,cpuacct",
        ) + &line(Path::new("/sys/fs/cgroup/memory"), "cgroup", "rw,memory")
            + &line(d.path(), "cgroup2", "rw,nsdelegate")
            + &line(
                Path::new("/sys/fs/cgroup/systemd"),
                "cgroup",
                "rw,xattr,name=systemd",
            );
        let h = detect_from(&info);
        assert_eq!(
            h,
            Hierarchy::V1 {
                mounts: vec![
                    (Controller::Memory, "/sys/fs/cgroup/memory".into()),
                    (Controller::Cpu, "/sys/fs/cgroup/cpu,cpuacct".into()),
                ]
            }
        );
        assert_eq!(h.missing(), vec![Controller::Pids]);
        assert_eq!(h.label(), "cgroup v1");
    }

    #[test]
    fn nothing_usable_is_explained() {
        assert!(
            matches!(detect_from(""), Hierarchy::Unsupported(m) if m.contains("no cgroup hierarchy"))
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
        let h = detect_from(&line(d.path(), "cgroup2", "rw"));
        assert!(
            matches!(&h, Hierarchy::Unsupported(m) if m.contains("offers none")),
            "{h:?}"
        );
        assert_eq!(h.missing(), Controller::ALL.to_vec());
    }

    #[test]
    fn v2_subset_is_used_when_there_is_no_v1() {
        let d = tempfile::tempdir().unwrap();
        let spaced = d.path().join("a b");
        std::fs::create_dir(&spaced).unwrap();
        std::fs::write(spaced.join("cgroup.controllers"), "memory pids\n").unwrap();
        let h = detect_from(&line(&spaced, "cgroup2", "rw"));
        assert_eq!(
            h,
            Hierarchy::V2 {
                root: spaced,
                controllers: vec![Controller::Memory, Controller::Pids]
            }
        );
        assert_eq!(h.missing(), vec![Controller::Cpu]);
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        assert_eq!(parse_mount_line("garbage"), None);
        assert_eq!(parse_mount_line("1 2 3 - x"), None);
        assert_eq!(unescape("a\\040b\\134c\\9"), "a b\\c\\9");
        assert!(matches!(
            detect_from("\u{0}\n - -\n1 2 3 4\n"),
            Hierarchy::Unsupported(_)
        ));
    }
}
