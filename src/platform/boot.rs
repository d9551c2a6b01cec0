//! Booting an artifact into a healthy VM and switching the router to it:
//! the run spec (descriptor + config vars + secrets), the driver, the
//! health check, the switch and the drain of the VM it replaces.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runtime::supervisor::{self, AppSpec, HealthProbe, RunningApp};

use super::{Instance, Platform, DRAIN, MIN_MEMORY_MIB, STOP_GRACE};
use crate::store::Deploy;

/// A booted, healthy VM waiting to be switched in.
pub struct Booted {
    app: RunningApp,
    /// Where the app answers on the host.
    pub addr: std::net::SocketAddr,
    /// Milliseconds per phase (boot, health).
    pub timings: Vec<(&'static str, i64)>,
}

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

impl Platform {
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
        let Some(addr) = running.vm.host_addr() else {
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
    /// Returns the switch time in milliseconds.
    pub async fn switch(
        &self,
        app: &str,
        domains: &[String],
        booted: Booted,
    ) -> Result<i64, String> {
        Ok(self.switch_with(app, domains, booted, 0))
    }

    pub(super) fn switch_with(
        &self,
        app: &str,
        domains: &[String],
        booted: Booted,
        crashes: u32,
    ) -> i64 {
        let started = Instant::now();
        let deploy = booted.app.deploy;
        let previous_upstream = if booted.addr.port() != 0 {
            self.routes.switch(app, domains, booted.addr, deploy)
        } else {
            self.routes.forget(app)
        };
        let previous = self.running().insert(
            app.to_string(),
            Instance {
                vm: booted.app,
                domains: domains.to_vec(),
                since: Instant::now(),
                crashes,
            },
        );
        let switch_ms = started.elapsed().as_millis() as i64;
        if let Some(old) = previous {
            retire(old, previous_upstream);
        }
        switch_ms
    }

    /// The manifest's extra domains at a deploy's commit (a restart, a
    /// rollback or a restore maps them again without the push that set
    /// them). A manifest that cannot be read gives none, with a warning.
    pub(super) async fn domains_at(&self, app: &str, commit: &str) -> Vec<String> {
        let repo = self.home.join("repos").join(format!("{app}.git"));
        let commit_s = commit.to_string();
        let read = tokio::task::spawn_blocking(move || {
            crate::repo_files::read_root_file(
                &repo,
                &commit_s,
                manifest_spec::MANIFEST_FILE_NAME,
                crate::deploy::MAX_MANIFEST_BYTES,
            )
        })
        .await;
        match read {
            Ok(Ok(bytes)) => manifest_spec::parse(&bytes, manifest_spec::MANIFEST_FILE_NAME)
                .map(|m| m.domains)
                .unwrap_or_default(),
            other => {
                tracing::warn!(
                    app,
                    commit,
                    ?other,
                    "cannot read the manifest for its domains"
                );
                Vec::new()
            }
        }
    }

    /// Boots `deploy`'s artifact and switches `app` to it (restore,
    /// restart, start, crash recovery); `crashes` is carried to the new VM
    /// for the crash backoff. The caller holds the app's lock.
    pub(super) async fn boot_deploy(
        &self,
        app: &str,
        deploy: &Deploy,
        crashes: u32,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), String> {
        let digest = deploy.artifact.as_deref().ok_or_else(|| {
            format!(
                "deploy #{} of {app} has no artifact; push again to rebuild",
                deploy.number
            )
        })?;
        let domains = self.domains_at(app, &deploy.commit).await;
        let booted = self.boot(app, deploy.number, digest, progress).await?;
        self.switch_with(app, &domains, booted, crashes);
        Ok(())
    }
}

/// Drains the upstream an old VM served (in-flight requests finish), then
/// stops the VM, in the background.
pub(super) fn retire(mut old: Instance, upstream: Option<std::sync::Arc<crate::router::Upstream>>) {
    tokio::spawn(async move {
        if let Some(u) = upstream {
            let left = u.drain(DRAIN).await;
            if left > 0 {
                tracing::warn!(app = %old.vm.app, left, "drain timed out; stopping anyway");
            }
        }
        let _ = tokio::task::spawn_blocking(move || old.vm.vm.stop(STOP_GRACE)).await;
    });
}
