//! The running side of BytePort inside `byteport up`: which VM serves each
//! app, booting artifacts ([`boot`]), switching the router with zero
//! downtime, draining and stopping old VMs, the owner's lifecycle commands
//! ([`lifecycle`]: restart, rollback, stop, start), bringing crashed VMs
//! back ([`watch`]) and restoring apps after a restart of `byteport up`.

mod boot;
mod lifecycle;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use builder::Descriptor;
use runtime::supervisor::{BootOptions, RunningApp};

pub use boot::Booted;
pub use lifecycle::remove_app_files;

use crate::config::{Config, Driver};
use crate::router::RouteTable;
use crate::store::Store;

/// How long an old VM keeps serving in-flight requests after a switch.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How long a guest may take to power off when asked before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The guest kernel and its initramfs need about this much memory to boot
/// (measured: a 64M manifest made the Debian cloud kernel die silently).
pub const MIN_MEMORY_MIB: u64 = 128;

/// Where `byteport-init` is: `$BYTEPORT_INIT`, beside this executable, or on PATH.
pub fn find_init_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BYTEPORT_INIT") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()?
        .with_file_name("byteport-init");
    if beside.exists() {
        return Some(beside);
    }
    crate::doctor::which("byteport-init")
}

/// One app's serving VM and what the platform knows about it.
pub(crate) struct Instance {
    vm: RunningApp,
    /// The manifest's extra host names (the router maps them too).
    domains: Vec<String>,
    /// When it went live (crash backoff starts afresh after a long run).
    since: Instant,
    /// Crashes in a row before this VM (for the backoff).
    crashes: u32,
}

/// A snapshot of one app's VM, for `ps` and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmStatus {
    /// The app.
    pub app: String,
    /// The deploy it runs.
    pub deploy: i64,
    /// The VM's name.
    pub vm: String,
    /// The host process (QEMU or byteport-vmm).
    pub pid: Option<u32>,
    /// Where the router sends its requests.
    pub upstream: Option<String>,
    /// Seconds since it went live.
    pub uptime_secs: u64,
    /// Crashes in a row before this VM came up.
    pub crashes: u32,
}

/// Shared state of the running apps.
pub struct Platform {
    /// The state store.
    pub store: Store,
    /// The router's table.
    pub routes: RouteTable,
    home: PathBuf,
    router_port: u16,
    boot: Option<BootOptions>,
    boot_problem: Option<String>,
    running: Mutex<HashMap<String, Instance>>,
    app_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    logs: crate::applog::AppLogs,
    build_ca: builder::CaTrust,
}

impl Platform {
    /// Prepares the platform; booting is disabled (with the reason) when
    /// the driver cannot run here.
    pub fn new(
        config: &Config,
        store: Store,
        routes: RouteTable,
        logs: crate::applog::AppLogs,
    ) -> Platform {
        let facts = crate::doctor::VirtFacts::probe(Path::new("/"));
        let driver = match config.driver {
            Driver::Auto => facts.auto_driver().0,
            d => d,
        };
        let (boot, boot_problem) = match (driver, find_init_binary(), crate::doctor::which("qemu-system-x86_64")) {
            (Driver::Kvm, _, _) => (
                None,
                Some("the kvm driver (BytePort's own VMM) is not wired into deploys yet; set driver = \"qemu\"".to_string()),
            ),
            (_, None, _) => (
                None,
                Some("byteport-init not found beside byteport: reinstall with `cargo install --path .`".to_string()),
            ),
            (_, _, None) => (None, Some("qemu-system-x86_64 not found: apt-get install qemu-system-x86".to_string())),
            (_, Some(init), Some(qemu)) => (
                Some(BootOptions {
                    run_dir: config.home.join("run"),
                    init_binary: init,
                    qemu,
                    accel: if facts.hardware_virt_usable() { "kvm".into() } else { "tcg".into() },
                    ready_timeout: Duration::from_secs(180),
                }),
                None,
            ),
        };
        Platform {
            store,
            routes,
            home: config.home.clone(),
            router_port: config.router_addr.port(),
            boot,
            boot_problem,
            running: Mutex::new(HashMap::new()),
            app_locks: Mutex::new(HashMap::new()),
            logs,
            build_ca: config.build_ca.clone(),
        }
    }

    /// `$BYTEPORT_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The router's port (for URLs shown to users).
    pub fn router_port(&self) -> u16 {
        self.router_port
    }

    /// Why apps cannot boot here, if they cannot.
    pub fn boot_problem(&self) -> Option<&str> {
        self.boot_problem.as_deref()
    }

    /// Which CA certificates build steps trust (`build_ca`).
    pub fn build_ca(&self) -> &builder::CaTrust {
        &self.build_ca
    }

    /// The app log streams.
    pub fn logs(&self) -> &crate::applog::AppLogs {
        &self.logs
    }

    /// Serializes everything that changes which VM serves `app` (deploys,
    /// restarts, rollbacks, stop/start, crash recovery).
    pub async fn lock_app(&self, app: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .app_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instance>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads an artifact's descriptor and rootfs path by digest.
    pub fn artifact(&self, digest: &str) -> Result<(Descriptor, PathBuf), String> {
        let store = builder::artifact::Store::open(&self.home).map_err(|e| e.to_string())?;
        let dir = store.dir(digest);
        let bytes = std::fs::read(dir.join("descriptor.json")).map_err(|e| {
            format!("artifact {digest} is missing its descriptor ({e}); rebuild by pushing again")
        })?;
        let d: Descriptor =
            serde_json::from_slice(&bytes).map_err(|e| format!("artifact {digest}: {e}"))?;
        let rootfs = dir.join(&d.rootfs.file);
        Ok((d, rootfs))
    }

    /// Writes a line of BytePort's own into `app`'s log stream (shown by
    /// `logs` beside the app's lines).
    pub fn log_event(&self, app: &str, deploy: i64, text: &str) {
        let ts = crate::commands::fmt_time(crate::store::now_ms());
        self.logs
            .append(app, deploy, &format!("{ts} byteport  {text}"));
    }

    /// Stops every VM (daemon shutdown).
    pub async fn stop_all(&self) {
        let vms: Vec<Instance> = self.running().drain().map(|(_, v)| v).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for mut v in vms {
                v.vm.vm.stop(Duration::from_secs(15));
            }
        })
        .await;
    }

    /// Is `app` running a VM right now?
    pub fn is_running(&self, app: &str) -> bool {
        self.running().contains_key(app)
    }

    /// The VMs running now, by app name.
    pub fn status(&self) -> Vec<VmStatus> {
        let mut out: Vec<VmStatus> = self
            .running()
            .iter()
            .map(|(app, i)| VmStatus {
                app: app.clone(),
                deploy: i.vm.deploy,
                vm: i.vm.vm.name().to_string(),
                pid: i.vm.vm.pid(),
                upstream: i.vm.vm.host_addr().map(|a| a.to_string()),
                uptime_secs: i.since.elapsed().as_secs(),
                crashes: i.crashes,
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        out
    }

    /// Boots the live deploy of every app that is not stopped (after `up`
    /// restarts), as many at a time as the host has CPUs; the router
    /// answers 502 "it is starting" for them meanwhile.
    pub async fn restore(self: &Arc<Self>) {
        let apps = match self.store.list_apps(None).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot list apps to restore");
                return;
            }
        };
        // Booting every app at once would starve them all (each boot is
        // CPU-bound under TCG): as many at a time as there are CPUs.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = Arc::new(tokio::sync::Semaphore::new(cpus));
        for a in apps {
            let Ok(Some(live)) = self.store.live_deploy(&a.name).await else {
                continue;
            };
            if a.stopped {
                self.routes.mark_down(&a.name, &[], lifecycle::STOPPED);
                continue;
            }
            self.routes.mark_down(&a.name, &[], "it is starting");
            let this = self.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                let _guard = this.lock_app(&a.name).await;
                let quiet = |_: &str| {};
                match this.boot_deploy(&a.name, &live, 0, &quiet).await {
                    Ok(()) => tracing::info!(app = %a.name, deploy = live.number, "restored"),
                    Err(e) => {
                        this.log_event(&a.name, live.number, &format!("cannot restore: {e}"));
                        tracing::error!(app = %a.name, error = %e, "cannot restore");
                    }
                }
            });
        }
    }
}
