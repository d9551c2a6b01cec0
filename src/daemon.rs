//! `byteport up`: every service that exists so far in one process — the
//! git server first, then the router, the control socket the CLI talks to,
//! the dashboard and the crash watcher — stopped cleanly on SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use platform::events::EventKind;
use platform::store::Store;
use platform::Platform;
use router::{RouteTable, Router};

use crate::config::Config;
use crate::git_glue::{AdminCommands, PipelineHook, StoreAuthority};

/// Everything `up` started, for tests and for the shutdown path.
pub struct Services {
    /// The state store.
    pub store: Store,
    /// The app router.
    pub router: Router,
    /// Routes shared with the supervisor.
    pub routes: RouteTable,
    /// Running apps.
    pub platform: Arc<Platform>,
    /// The git server.
    pub gitd: gitd::Gitd,
    /// The dashboard and API on `http_addr`.
    pub dashboard: dashboard::Server,
}

/// What the dashboard's Host page needs from the binary: the driver in use
/// (resolved once, as the platform did) and `byteport doctor`'s checks.
struct DoctorHost {
    config: Config,
    driver: String,
}

impl DoctorHost {
    fn new(config: &Config) -> DoctorHost {
        let facts = crate::doctor::VirtFacts::probe(std::path::Path::new("/"));
        let driver = match crate::driver::choose_driver(config.driver, &facts) {
            Ok(runtime::boot::Driver::Kvm { .. }) => "kvm".into(),
            Ok(runtime::boot::Driver::Qemu { accel, .. }) => format!("qemu ({accel})"),
            Err(_) => "none (apps cannot boot here)".into(),
        };
        DoctorHost {
            config: config.clone(),
            driver,
        }
    }
}

impl dashboard::HostInfo for DoctorHost {
    fn driver(&self) -> String {
        self.driver.clone()
    }

    fn doctor(&self) -> Vec<dashboard::HostCheck> {
        crate::doctor::run(&self.config)
            .checks
            .into_iter()
            .map(|c| dashboard::HostCheck {
                name: c.name.to_string(),
                status: serde_json::to_value(c.status)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                detail: c.detail,
                fix: c.fix,
            })
            .collect()
    }
}

/// Starts the services.
pub async fn start(config: &Config) -> anyhow::Result<Services> {
    config
        .ensure_home()
        .with_context(|| format!("creating {}", config.home.display()))?;
    let store = crate::commands::open_store(config).await?;
    // First start: fetch the guest kernel and busybox (with progress) if
    // `byteport setup` has not run; a warm cache does no network work.
    if builder::setup::current_kernel(&config.home).is_none() {
        eprintln!("byteport up: no guest kernel yet; running setup first");
        let options = builder::SetupOptions {
            home: config.home.clone(),
            kernel: None,
            kernel_modules: None,
            progress: true,
        };
        tokio::task::spawn_blocking(move || builder::ensure_assets(&options))
            .await
            .context("setup task failed")?
            .context("setup (guest kernel, busybox) failed; run `byteport setup` to retry")?;
    }
    let routes = RouteTable::new("localhost");
    let platform = Arc::new(
        Platform::new(
            crate::driver::platform_settings(config),
            store.clone(),
            routes.clone(),
        )
        .with_portfolio()
        .await,
    );
    let request_platform = platform.clone();
    // One line per routed request into the app's stream and its metrics;
    // no global lock (a read lock on the app table and the app's own
    // lock). Unknown hosts never become an app's line or a metric label.
    let on_request: router::OnRequest = Arc::new(move |r: &router::RequestRecord<'_>| {
        let Some(app) = r.app else {
            return;
        };
        let line = r.to_string();
        tracing::debug!(target: "byteport::router", app, "{line}");
        platform::metrics::metrics().record_request(app, r.status);
        let deploy = request_platform.routes.deploy_of(app);
        request_platform
            .events
            .emit(app, deploy, None, EventKind::Request { line });
    });
    // The git server first: pushes are the front door.
    let mut git_config = gitd::GitdConfig::new(config.ssh_addr, &config.home);
    git_config.deploy_branches = config.deploy_branches.clone();
    git_config.max_connections = config.ssh_max_connections;
    git_config.idle_timeout = std::time::Duration::from_secs(config.ssh_idle_timeout_secs);
    git_config.max_pack_bytes = config.max_pack_size;
    git_config.max_startups = config.ssh_max_startups;
    git_config.max_startups_per_source = config.ssh_max_startups_per_source;
    git_config.handshake_timeout =
        std::time::Duration::from_secs(config.ssh_handshake_timeout_secs);
    git_config.login_timeout = std::time::Duration::from_secs(config.ssh_login_timeout_secs);
    let gitd = gitd::serve(
        git_config,
        Arc::new(StoreAuthority(store.clone())),
        Arc::new(PipelineHook(platform.clone())),
        Arc::new(AdminCommands(platform.clone())),
    )
    .await
    .with_context(|| format!("git server cannot start on {}", config.ssh_addr))?;
    let router = Router::serve(config.router.clone(), routes.clone(), on_request)
        .await
        .with_context(|| format!("router cannot listen on {}", config.router_addr))?;
    crate::control::serve(&config.home, platform.clone()).await?;
    platform.start().await.context("starting the job queue")?;
    let mut dashboard_options = dashboard::Options::new(config.http_addr);
    dashboard_options.trusted_proxy = config.http_trusted_proxy;
    let dashboard = dashboard::serve(
        dashboard_options,
        platform.clone(),
        Arc::new(DoctorHost::new(config)),
    )
    .await
    .with_context(|| format!("dashboard cannot listen on {}", config.http_addr))?;
    Ok(Services {
        dashboard,
        store,
        router,
        routes,
        platform,
        gitd,
    })
}

/// Runs until SIGINT or SIGTERM.
pub async fn up(config: &Config) -> anyhow::Result<()> {
    let services = start(config).await?;
    let report = crate::doctor::run(config);
    eprintln!("byteport up: data in {}", config.home.display());
    eprintln!(
        "  git        ssh://git@{}/<app>.git  (add keys with byteport keys add NAME FILE)",
        services.gitd.local_addr()
    );
    eprintln!(
        "  router     http://<app>.localhost:{}  (listening on {})",
        services.router.local_addr.port(),
        services.router.local_addr
    );
    eprintln!(
        "  dashboard  http://{}/  (users: byteport users add NAME)",
        services.dashboard.local_addr()
    );
    eprintln!("  driver     {}", report.driver_reason);
    if let Some(problem) = services.platform.boot_problem() {
        eprintln!("  warning    apps cannot boot: {problem}");
    }
    eprintln!("press Ctrl-C to stop");
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("byteport up: stopping");
    let _ = std::fs::remove_file(crate::control::socket_path(&config.home));
    services.router.shutdown();
    services.dashboard.shutdown().await;
    services.platform.stop_all().await;
    services.store.close().await;
    Ok(())
}
