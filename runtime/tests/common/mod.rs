//! What the runtime's VM tests share: the guest (Debian cloud kernel,
//! BytePort's guest init), busybox app images, run specs, collected logs.
//! Machinery that other crates need too lives in `testvm`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::boot::{AppSpec, BootOptions, Driver};
use runtime::drivers::AppLog;
use runtime::EgressEndpoint;

/// The guest kernel and the guest init binary (built if needed).
pub struct Guest {
    /// Debian cloud kernel.
    pub kernel: testvm::kernel::DebianKernel,
    /// `byteport-init`.
    pub init: PathBuf,
}

pub fn guest() -> Guest {
    assert!(
        testvm::have("qemu-system-x86_64"),
        "qemu-system-x86_64 is missing: {}",
        testvm::nested::APT
    );
    Guest {
        kernel: testvm::kernel::debian_cloud(),
        init: testvm::build::workspace_bin("guest-init", "byteport-init")
            .unwrap_or_else(|e| panic!("{e}")),
    }
}

/// A busybox app image with `/www/index.html`.
pub fn image(work: &Path) -> PathBuf {
    testvm::rootfs::busybox_ext4(
        work,
        &work.join("rootfs.ext4"),
        &[("/www/index.html", b"hello from a jailed VM\n", 0o644)],
        32,
    )
}

/// A run spec for `processes` on `rootfs`.
pub fn spec(
    g: &Guest,
    app: &str,
    rootfs: &Path,
    processes: &[(&str, &str)],
    port: Option<u16>,
    egress: Option<EgressEndpoint>,
) -> AppSpec {
    AppSpec {
        app: app.into(),
        deploy: 1,
        kernel: g.kernel.image.clone(),
        modules_dir: Some(g.kernel.modules_dir.clone()),
        rootfs: rootfs.to_path_buf(),
        cpus: 1,
        memory_mib: 256,
        processes: processes
            .iter()
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect(),
        port,
        env: BTreeMap::new(),
        uid: 1000,
        gid: 1000,
        workdir: "/".into(),
        egress,
        database: None,
        volumes: vec![],
        one_off: false,
        console: None,
    }
}

/// Boot options for QEMU (TCG), jailed when this test runs as root.
pub fn qemu_opts(g: &Guest, run_dir: &Path) -> BootOptions {
    let jail = match runtime::jail::Jail::for_this_host() {
        Ok(j) => Some(j),
        Err(why) => {
            eprintln!("NOTE: VMs run unjailed in this test: {why}");
            None
        }
    };
    BootOptions {
        run_dir: run_dir.to_path_buf(),
        init_binary: g.init.clone(),
        driver: Driver::Qemu {
            qemu: testvm::build::which("qemu-system-x86_64").expect("qemu-system-x86_64"),
            accel: "tcg".into(),
        },
        ready_timeout: Duration::from_secs(240),
        jail,
    }
}

/// App log records as they arrive: (process, stream, text).
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<(String, String, String)>>>);

impl Logs {
    pub fn sink(&self) -> AppLog {
        let l = self.0.clone();
        Arc::new(move |p: &str, s: &str, t: &str| {
            l.lock()
                .unwrap()
                .push((p.to_string(), s.to_string(), t.to_string()))
        })
    }

    /// Lines of `process` (text only).
    pub fn of(&self, process: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == process)
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    /// Waits until some line of `process` contains `marker`.
    pub fn wait_for(&self, process: &str, marker: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.of(process).iter().any(|l| l.contains(marker)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn dump(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(p, s, t)| format!("{p} {s}: {t}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A `/proc/PID/status` field.
pub fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}
