//! The [`Platform`] handle the daemon's services share: the store, the
//! route table, the event streams, the job queue, and which VM serves each
//! app right now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use builder::Descriptor;
use router::RouteTable;
use runtime::{BootOptions, RunningApp};

use crate::events::{EventKind, EventSettings, Events};
use crate::jobs::dispatch::Queue;
use crate::jobs::{JobError, JobSettings, JobSpec};
use crate::store::Store;

/// How long an old VM keeps serving in-flight requests after a switch.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How long a guest may take to power off when asked before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The guest kernel and its initramfs need about this much memory to boot
/// (measured: a 64M manifest made the Debian cloud kernel die silently).
pub const MIN_MEMORY_MIB: u64 = 128;

/// What the platform needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// The data directory.
    pub home: PathBuf,
    /// The router's port (for URLs shown to users).
    pub router_port: u16,
    /// How VMs boot here, or why they cannot (chosen by the daemon from
    /// the host's capabilities and the `driver` setting).
    pub boot: Result<BootOptions, String>,
    /// Which CA certificates build steps trust (`build_ca`).
    pub build_ca: builder::CaTrust,
    /// Job queue limits and deadlines.
    pub jobs: JobSettings,
    /// Event journal rotation and retention.
    pub journal: crate::events::journal::JournalSettings,
    /// Apps are served at `<app>.<base_domain>` (default `localhost`).
    pub base_domain: String,
    /// The portfolio generator's settings (`None`: no portfolio pages).
    pub portfolio: Option<::portfolio::PortfolioConfig>,
    /// Where the portfolio site is served (absolute, for its links).
    pub portfolio_site_url: String,
    /// Destinations app VMs may reach besides the internet and the router
    /// (an internal service on a private address), config `egress_allow`.
    pub egress_allow: Vec<egress::Allow>,
}

impl PlatformSettings {
    /// Settings for `home` with the defaults (no VMs: `boot` says why).
    pub fn new(home: impl Into<PathBuf>, boot: Result<BootOptions, String>) -> PlatformSettings {
        PlatformSettings {
            home: home.into(),
            router_port: 8000,
            boot,
            build_ca: builder::CaTrust::Host,
            jobs: JobSettings::default(),
            journal: Default::default(),
            base_domain: "localhost".into(),
            portfolio: None,
            portfolio_site_url: "http://127.0.0.1:8080/portfolio/".into(),
            egress_allow: Vec::new(),
        }
    }
}

/// One app's serving VMs (its `web` instances, one for most apps; all of
/// one deploy) and what the platform knows about them.
pub(crate) struct Instance {
    /// Never empty while the app is in the running map.
    pub(crate) vms: Vec<RunningApp>,
    /// The manifest's extra host names (the router maps them too).
    pub(crate) domains: Vec<String>,
    /// When it went live (crash backoff starts afresh after a long run).
    pub(crate) since: Instant,
    /// Crashes in a row before this VM (for the backoff).
    pub(crate) crashes: u32,
}

impl Instance {
    /// The deploy the VMs run.
    pub(crate) fn deploy(&self) -> i64 {
        self.vms.first().map(|v| v.deploy).unwrap_or_default()
    }
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

/// The control core, shared by every service of `byteport up`.
pub struct Platform {
    /// The state store.
    pub store: Store,
    /// The router's table.
    pub routes: RouteTable,
    /// Every app's event stream.
    pub events: Events,
    /// The job queue (this node's half).
    pub queue: Queue,
    pub(crate) home: PathBuf,
    pub(crate) router_port: u16,
    pub(crate) boot: Option<BootOptions>,
    pub(crate) boot_problem: Option<String>,
    running: Mutex<HashMap<String, Instance>>,
    pub(crate) build_ca: builder::CaTrust,
    pub(crate) base_domain: String,
    pub(crate) portfolio: Option<Arc<crate::portfolio::PortfolioService>>,
    portfolio_config: Option<(::portfolio::PortfolioConfig, String)>,
    /// Each app's egress proxy.
    pub(crate) egress: crate::egress::AppEgress,
    /// The managed PostgreSQL cluster, started on first use.
    pub(crate) databases: tokio::sync::Mutex<Option<Arc<::database::Cluster>>>,
}

/// This node's id: made once per data directory, kept in `node-id`.
fn node_id(home: &Path) -> String {
    let path = home.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    let id = format!("node-{}", hex::encode(rand::random::<[u8; 8]>()));
    if let Err(e) = std::fs::create_dir_all(home).and_then(|()| std::fs::write(&path, &id)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the node id; using a fresh one each start");
    }
    id
}

impl Platform {
    /// Prepares the platform; booting is disabled (with the reason) when
    /// the driver cannot run here. Nothing runs until
    /// [`Platform::start`].
    pub fn new(settings: PlatformSettings, store: Store, routes: RouteTable) -> Platform {
        let (boot, boot_problem) = match settings.boot {
            Ok(b) => (Some(b), None),
            Err(problem) => (None, Some(problem)),
        };
        let events = Events::new(EventSettings {
            dir: settings.home.join("logs"),
            journal: settings.journal,
        });
        let egress = crate::egress::AppEgress::new(
            settings.home.join("egress"),
            std::net::SocketAddr::from(([127, 0, 0, 1], settings.router_port)),
            &settings.egress_allow,
            events.clone(),
        );
        Platform {
            egress,
            store,
            routes,
            events,
            queue: Queue::new(node_id(&settings.home), settings.jobs),
            home: settings.home,
            router_port: settings.router_port,
            boot,
            boot_problem,
            running: Mutex::new(HashMap::new()),
            databases: tokio::sync::Mutex::new(None),
            build_ca: settings.build_ca,
            base_domain: settings.base_domain,
            portfolio: None,
            portfolio_config: settings.portfolio.map(|c| (c, settings.portfolio_site_url)),
        }
    }

    /// Starts what runs in the background: marks jobs of this node's
    /// previous life `interrupted`, queues a restore of every app that
    /// should run, then starts the dispatcher, the VM supervisor and the
    /// journal flusher.
    pub async fn start(self: &Arc<Self>) -> Result<(), JobError> {
        // VMs of a previous life that survived it (a daemon killed with
        // SIGKILL whose children missed their death signal): killed, their
        // directories removed, before anything boots again.
        let run_dir = self.home.join("run");
        let reaped = tokio::task::spawn_blocking(move || runtime::reap_leftovers(&run_dir))
            .await
            .map_err(|e| JobError::Internal {
                message: format!("reaping leftover VMs failed: {e}"),
            })?;
        if !reaped.killed.is_empty() || !reaped.errors.is_empty() {
            tracing::warn!("leftovers of the previous run: {reaped}");
        }
        for job in self.interrupt_previous_run().await? {
            tracing::warn!(job = job.id, app = %job.app, kind = job.spec.kind(), "job interrupted by the previous stop of byteport up");
        }
        self.queue_restores().await?;
        self.events.spawn_flusher();
        self.spawn_dispatcher();
        self.spawn_supervisor();
        Ok(())
    }

    /// Sets up the portfolio generator (it reads the store); call before
    /// sharing the platform. A host where it cannot run (no image
    /// directory) gets no portfolio pages, with a warning.
    pub async fn with_portfolio(mut self) -> Platform {
        if let Some((config, site_url)) = self.portfolio_config.take() {
            match crate::portfolio::PortfolioService::new(config, self.store.clone(), &site_url)
                .await
            {
                Ok(service) => self.portfolio = Some(Arc::new(service)),
                Err(e) => tracing::warn!("portfolio pages are off: {e}"),
            }
        }
        self
    }

    /// `$BYTEPORT_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The bare repository of `app`.
    pub fn repo_path(&self, app: &str) -> PathBuf {
        self.home.join("repos").join(format!("{app}.git"))
    }

    /// The router's port (for URLs shown to users).
    pub fn router_port(&self) -> u16 {
        self.router_port
    }

    /// The app's URL.
    pub fn app_url(&self, app: &str) -> String {
        format!("http://{app}.{}:{}", self.base_domain, self.router_port)
    }

    /// Why apps cannot boot here, if they cannot.
    pub fn boot_problem(&self) -> Option<&str> {
        self.boot_problem.as_deref()
    }

    pub(crate) fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instance>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads an artifact's descriptor and rootfs path by digest.
    pub fn artifact(&self, digest: &str) -> Result<(Descriptor, PathBuf), JobError> {
        let missing = |why: String| JobError::Rejected {
            message: format!("artifact {digest} {why}; push again to rebuild"),
        };
        let store = builder::artifact::Store::open(&self.home).map_err(|e| JobError::Internal {
            message: format!("cannot open the artifact store: {e}"),
        })?;
        let dir = store.dir(digest);
        let bytes = std::fs::read(dir.join("descriptor.json"))
            .map_err(|e| missing(format!("is missing its descriptor ({e})")))?;
        let d: Descriptor = serde_json::from_slice(&bytes)
            .map_err(|e| missing(format!("has an unreadable descriptor ({e})")))?;
        let rootfs = dir.join(&d.rootfs.file);
        Ok((d, rootfs))
    }

    /// Writes a remark of BytePort's own into `app`'s event stream (shown
    /// by `logs` beside the app's lines).
    pub fn note(&self, app: &str, deploy: Option<i64>, text: &str) {
        self.events.emit(
            app,
            deploy,
            None,
            EventKind::Note {
                text: text.to_string(),
            },
        );
    }

    /// Stops every VM (daemon shutdown).
    pub async fn stop_all(&self) {
        let vms: Vec<RunningApp> = self.running().drain().flat_map(|(_, i)| i.vms).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for mut v in vms {
                v.vm.stop(Duration::from_secs(15));
            }
        })
        .await;
        let cluster = self.databases.lock().await.take();
        if let Some(cluster) = cluster {
            let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        }
        self.events.flush();
    }

    /// Is `app` running a VM right now?
    pub fn is_running(&self, app: &str) -> bool {
        self.running().contains_key(app)
    }

    /// The VMs running now, by app name (one line per instance).
    pub fn status(&self) -> Vec<VmStatus> {
        let mut out: Vec<VmStatus> = self
            .running()
            .iter()
            .flat_map(|(app, i)| {
                i.vms.iter().map(move |vm| VmStatus {
                    app: app.clone(),
                    deploy: vm.deploy,
                    vm: vm.vm.name().to_string(),
                    pid: vm.vm.pid(),
                    upstream: vm.vm.host_addr().map(|a| a.to_string()),
                    uptime_secs: i.since.elapsed().as_secs(),
                    crashes: i.crashes,
                })
            })
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app).then_with(|| a.vm.cmp(&b.vm)));
        out
    }

    /// Queues a `restore` of every app that has a live deploy and was not
    /// stopped (after `up` starts); the router answers 502 "it is
    /// starting" for them meanwhile. The dispatcher runs as many at a time
    /// as it has slots (TCG boots are CPU-bound).
    async fn queue_restores(&self) -> Result<(), JobError> {
        for a in self.store.list_apps(None).await? {
            let Some(_live) = self.store.live_deploy(&a.name).await? else {
                continue;
            };
            if a.stopped {
                self.routes
                    .mark_down(&a.name, &[], crate::lifecycle::STOPPED);
                continue;
            }
            self.routes.mark_down(&a.name, &[], "it is starting");
            self.enqueue(&a.name, JobSpec::Restore, Some("byteport"), true)
                .await?;
        }
        Ok(())
    }
}
