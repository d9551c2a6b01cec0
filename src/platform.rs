//! The running side of BytePort inside `byteport up`: which VM serves each
//! app, booting artifacts, switching the router with zero downtime,
//! draining and stopping old VMs, restoring apps after a restart, rollback.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use builder::Descriptor;
use runtime::supervisor::{self, AppSpec, BootOptions, HealthProbe, RunningApp};

use crate::config::{Config, Driver};
use crate::router::RouteTable;
use crate::store::Store;

/// How long an old VM keeps serving in-flight requests after a switch.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The guest kernel and its initramfs need about this much memory to boot
/// (measured: a 64M manifest made the Debian cloud kernel die silently).
pub const MIN_MEMORY_MIB: u64 = 128;

fn memory_mib(bytes: u64, progress: &(dyn Fn(&str) + Send + Sync)) -> u64 {
    let mib = bytes >> 20;
    if mib < MIN_MEMORY_MIB {
        progress(&format!(
            "       note: memory {mib}M is below the {MIN_MEMORY_MIB}M a Linux guest needs to boot; using {MIN_MEMORY_MIB}M"
        ));
        MIN_MEMORY_MIB
    } else {
        mib
    }
}

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
    running: Mutex<HashMap<String, RunningApp>>,
    logs: crate::applog::AppLogs,
}

/// A booted, healthy VM waiting to be switched in.
pub struct Booted {
    app: RunningApp,
    /// Where the app answers on the host.
    pub addr: std::net::SocketAddr,
    /// Milliseconds per phase (boot, health).
    pub timings: Vec<(&'static str, i64)>,
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
            logs,
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

    /// The app log streams.
    pub fn logs(&self) -> &crate::applog::AppLogs {
        &self.logs
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

    /// Boots `digest` for (`app`, `deploy`) and waits until it is healthy.
    pub async fn boot(
        &self,
        app: &str,
        deploy: i64,
        digest: &str,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Booted, String> {
        let opts = self
            .boot
            .clone()
            .ok_or_else(|| self.boot_problem.clone().unwrap_or_default())?;
        let (descriptor, rootfs) = self.artifact(digest)?;
        let kernel = descriptor
            .kernel
            .clone()
            .ok_or("the artifact names no guest kernel: run `byteport setup`, then push again")?;
        let mut env: BTreeMap<String, String> = descriptor.env.clone();
        env.extend(
            self.store
                .config_vars(app)
                .await
                .map_err(|e| e.to_string())?,
        );
        let secrets = self
            .store
            .secret_values(app)
            .await
            .map_err(|e| e.to_string())?;
        for name in &descriptor.secrets {
            match secrets.get(name) {
                Some(v) => {
                    env.insert(name.clone(), v.clone());
                }
                None => progress(&format!(
                    "       warning: secret {name} is not set (byteport secrets set {app} {name})"
                )),
            }
        }
        let spec = AppSpec {
            app: app.to_string(),
            deploy,
            kernel: kernel.image.clone(),
            modules_dir: kernel.modules_dir.clone(),
            rootfs,
            cpus: descriptor.vm.cpus,
            memory_mib: memory_mib(descriptor.vm.memory_bytes, progress),
            processes: descriptor
                .processes
                .iter()
                .map(|p| (p.name.clone(), p.run.clone()))
                .collect(),
            port: descriptor.port,
            env,
            uid: descriptor.user.uid,
            gid: descriptor.user.gid,
            workdir: descriptor.workdir.clone(),
        };
        let started = Instant::now();
        let sink = self.logs.sink(app, deploy);
        let log_file = self.logs.file(app, deploy);
        if let Err(e) = self
            .store
            .index_log(app, deploy, "app", &log_file.display().to_string(), 0)
            .await
        {
            tracing::warn!(app, deploy, error = %e, "cannot index the app log");
        }
        let running = tokio::task::spawn_blocking(move || supervisor::boot(&spec, &opts, sink))
            .await
            .map_err(|e| format!("boot task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let boot_ms = started.elapsed().as_millis() as i64;
        let Some(addr) = running.vm.host_addr else {
            return Ok(Booted {
                app: running,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                timings: vec![("boot", boot_ms)],
            });
        };
        let probe = match &descriptor.health {
            Some(h) => HealthProbe::Http {
                method: h.method.clone(),
                path: h.path.clone(),
            },
            None => HealthProbe::Tcp,
        };
        let (interval, timeout) = descriptor
            .health
            .as_ref()
            .map(|h| {
                (
                    Duration::from_millis(h.interval_ms.clamp(100, 1000)),
                    Duration::from_millis(h.timeout_ms),
                )
            })
            .unwrap_or((Duration::from_millis(250), Duration::from_secs(2)));
        let started = Instant::now();
        let checked = tokio::task::spawn_blocking(move || {
            let r =
                supervisor::wait_healthy(addr, &probe, interval, timeout, Duration::from_secs(90));
            (r, running)
        })
        .await
        .map_err(|e| format!("health task failed: {e}"))?;
        let (result, mut running) = checked;
        if let Err(e) = result {
            let tail = running.vm.console_tail();
            tokio::task::spawn_blocking(move || running.vm.stop(Duration::from_secs(5)))
                .await
                .ok();
            return Err(format!("health check failed: {e}\n{tail}"));
        }
        Ok(Booted {
            app: running,
            addr,
            timings: vec![
                ("boot", boot_ms),
                ("health", started.elapsed().as_millis() as i64),
            ],
        })
    }

    /// Routes `app` to a healthy VM, drains and stops the one it replaces.
    pub async fn switch(
        &self,
        app: &str,
        domains: &[String],
        booted: Booted,
    ) -> Result<i64, String> {
        let started = Instant::now();
        let deploy = booted.app.deploy;
        let previous_upstream = if booted.addr.port() != 0 {
            self.routes.switch(app, domains, booted.addr, deploy)
        } else {
            self.routes.forget(app)
        };
        let previous_vm = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string(), booted.app);
        let switch_ms = started.elapsed().as_millis() as i64;
        if let Some(mut old) = previous_vm {
            let upstream = previous_upstream.clone();
            tokio::spawn(async move {
                if let Some(u) = upstream {
                    let left = u.drain(DRAIN).await;
                    if left > 0 {
                        tracing::warn!(app = %old.app, left, "drain timed out; stopping anyway");
                    }
                }
                let _ =
                    tokio::task::spawn_blocking(move || old.vm.stop(Duration::from_secs(20))).await;
            });
        }
        Ok(switch_ms)
    }

    /// Stops every VM (daemon shutdown).
    pub async fn stop_all(&self) {
        let vms: Vec<RunningApp> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, v)| v)
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for mut v in vms {
                v.vm.stop(Duration::from_secs(15));
            }
        })
        .await;
    }

    /// Is `app` running a VM right now?
    pub fn is_running(&self, app: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(app)
    }

    /// Boots the live deploy of every app (after `up` restarts).
    pub async fn restore(self: &Arc<Self>) {
        let apps = match self.store.list_apps(None).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot list apps to restore");
                return;
            }
        };
        for a in apps {
            let Ok(Some(live)) = self.store.live_deploy(&a.name).await else {
                continue;
            };
            let Some(digest) = live.artifact.clone() else {
                continue;
            };
            self.routes.mark_down(&a.name, &[]);
            let this = self.clone();
            tokio::spawn(async move {
                let quiet = |_: &str| {};
                match this.boot(&a.name, live.number, &digest, &quiet).await {
                    Ok(booted) => {
                        let _ = this.switch(&a.name, &[], booted).await;
                        tracing::info!(app = %a.name, deploy = live.number, "restored");
                    }
                    Err(e) => tracing::error!(app = %a.name, error = %e, "cannot restore"),
                }
            });
        }
    }
}
