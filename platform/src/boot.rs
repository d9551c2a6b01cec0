//! Booting an artifact into a healthy VM and switching the router to it:
//! the run spec (descriptor + config vars + secrets), the driver, the
//! health check, the switch and the drain of the VM it replaces.
//!
//! A job may be cancelled while its VM boots or is health-checked: the
//! half-booted VM is stopped and nothing is routed to it. The switch is
//! the point of no return ([`crate::jobs::dispatch::JobControl::commit`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use runtime::health::{wait_healthy, HealthCheck, HealthError, HealthProbe};
use runtime::{AppSpec, RunningApp};

use crate::apps::{Instance, Platform, DRAIN, MIN_MEMORY_MIB, STOP_GRACE};
use crate::events::{EventKind, Events, VmChange};
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;
use crate::store::Deploy;

/// A booted, healthy VM waiting to be switched in.
pub struct Booted {
    pub(crate) app: RunningApp,
    /// Where the app answers on the host.
    pub addr: std::net::SocketAddr,
    /// Milliseconds per phase (boot, health).
    pub timings: Vec<(&'static str, i64)>,
}

/// How long a booted VM has to become healthy.
const HEALTH_DEADLINE: Duration = Duration::from_secs(90);

/// [`wait_healthy`] in slices of at most a second, so a cancelled job's
/// VM is let go within one; the reasons keep the whole time waited.
fn health_until_stopped(
    running: &mut RunningApp,
    check: &HealthCheck,
    stop: &AtomicBool,
) -> Result<(), HealthError> {
    let started = Instant::now();
    loop {
        let left = check.deadline.saturating_sub(started.elapsed());
        let slice = HealthCheck {
            deadline: left.min(Duration::from_secs(1)),
            ..check.clone()
        };
        match wait_healthy(running.vm.as_mut(), &slice) {
            Ok(_) => return Ok(()),
            Err(HealthError::NeverListened { .. } | HealthError::Timeout { .. })
                if left > slice.deadline && !stop.load(Ordering::SeqCst) => {}
            Err(mut e) => {
                match &mut e {
                    HealthError::NeverListened { waited_s, .. } => {
                        *waited_s = started.elapsed().as_secs()
                    }
                    HealthError::Timeout { waited_ms, .. } => {
                        *waited_ms = started.elapsed().as_millis()
                    }
                    _ => {}
                }
                return Err(e);
            }
        }
    }
}

impl Booted {
    pub(crate) fn into_running(self) -> RunningApp {
        self.app
    }
}

fn memory_mib(bytes: u64, say: &dyn Fn(&str)) -> u64 {
    let mib = bytes >> 20;
    if mib < MIN_MEMORY_MIB {
        say(&format!(
            "       note: memory {mib}M is below the {MIN_MEMORY_MIB}M a Linux guest needs to boot; using {MIN_MEMORY_MIB}M"
        ));
        MIN_MEMORY_MIB
    } else {
        mib
    }
}

pub(crate) fn vm_event(
    events: &Events,
    app: &str,
    deploy: i64,
    change: VmChange,
    vm: &str,
    detail: Option<String>,
) {
    events.emit(
        app,
        Some(deploy),
        None,
        EventKind::Vm {
            change,
            vm: vm.to_string(),
            detail,
        },
    );
}

/// Stops a VM off the async runtime (it waits for the guest).
pub(crate) async fn stop_vm(mut vm: RunningApp, grace: Duration, events: &Events) {
    let (app, deploy, name) = (vm.app.clone(), vm.deploy, vm.vm.name().to_string());
    let _ = tokio::task::spawn_blocking(move || vm.vm.stop(grace)).await;
    vm_event(events, &app, deploy, VmChange::Stopped, &name, None);
}

/// Stops several VMs at once (an app's instances).
pub(crate) async fn stop_vms(vms: Vec<RunningApp>, grace: Duration, events: &Events) {
    let stops: Vec<_> = vms
        .into_iter()
        .map(|vm| {
            let events = events.clone();
            tokio::spawn(async move { stop_vm(vm, grace, &events).await })
        })
        .collect();
    for s in stops {
        let _ = s.await;
    }
}

/// What clients are told to wait while an app with volumes has no VM
/// (`503` + `Retry-After`): about one boot.
pub const DEPLOYING_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Platform {
    /// Where `app`'s volume `name` lives: `$BYTEPORT_HOME/volumes/<app>/<name>.ext4`.
    pub fn volume_image(&self, app: &str, name: &str) -> std::path::PathBuf {
        self.home
            .join("volumes")
            .join(app)
            .join(format!("{name}.ext4"))
    }

    /// An ext4 volume is mounted by one VM at a time: the serving VM is
    /// drained and stopped before the new one boots (as Fly.io does for
    /// apps with volumes). Should the job then fail, the dispatcher boots
    /// the live deploy again.
    pub(crate) async fn stop_for_volumes(&self, ctx: &JobCtx, spec: &AppSpec) {
        let app = ctx.app.as_str();
        let Some(old) = self.running().remove(app) else {
            return;
        };
        ctx.mark_took_down_live();
        let names: Vec<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
        ctx.say(&format!(
            "-----> Stopping deploy #{} first: its volumes ({}) can be mounted by one VM at a time",
            old.deploy(),
            names.join(", ")
        ));
        for upstream in self
            .routes
            .mark_deploying(app, &old.domains, DEPLOYING_RETRY_AFTER)
        {
            upstream.drain(DRAIN).await;
        }
        stop_vms(old.vms, STOP_GRACE, &self.events).await;
    }

    /// What a VM of `digest` for (`app`, `deploy`) runs with: the
    /// artifact's descriptor, and the spec (config vars, secrets, volumes,
    /// egress) for the driver.
    pub(crate) async fn app_spec(
        &self,
        app: &str,
        deploy: i64,
        digest: &str,
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<(builder::Descriptor, AppSpec, runtime::BootOptions), JobError> {
        let opts = self.boot.clone().ok_or_else(|| JobError::Boot {
            message: format!(
                "cannot boot here: {}",
                self.boot_problem.clone().unwrap_or_default()
            ),
        })?;
        let (descriptor, rootfs) = self.artifact(digest)?;
        let kernel = descriptor
            .kernel
            .clone()
            .ok_or_else(|| JobError::Rejected {
                message:
                    "the artifact names no guest kernel: run `byteport setup`, then push again"
                        .into(),
            })?;
        let mut env: BTreeMap<String, String> = descriptor.env.clone();
        env.extend(self.store.config_vars(app).await?);
        let secrets = self.store.secret_values(app).await?;
        for name in &descriptor.secrets {
            match secrets.get(name) {
                Some(v) => {
                    env.insert(name.clone(), v.clone());
                }
                None => say(&format!(
                    "       warning: secret {name} is not set (byteport secrets set {app} {name})"
                )),
            }
        }
        let mut spec = AppSpec {
            app: app.to_string(),
            deploy,
            kernel: kernel.image.clone(),
            modules_dir: kernel.modules_dir.clone(),
            rootfs,
            cpus: descriptor.vm.cpus,
            memory_mib: memory_mib(descriptor.vm.memory_bytes, say),
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
            volumes: descriptor
                .volumes
                .iter()
                .map(|v| runtime::Volume {
                    name: v.name.clone(),
                    image: self.volume_image(app, &v.name),
                    mount: v.path.clone(),
                    size_bytes: v.size_bytes,
                })
                .collect(),
            one_off: false,
            console: None,
            database: None,
            egress: match descriptor.vm.network {
                builder::Network::Off => None,
                builder::Network::On => {
                    Some(self.egress.endpoint(app).map_err(|e| JobError::Boot {
                        message: format!("cannot start the egress proxy of {app}: {e}"),
                    })?)
                }
            },
        };
        if descriptor.database.is_some() {
            let door = self
                .attach_database(app, &mut spec.env, &opts.driver)
                .await?;
            spec.database = Some(door);
        }
        Ok((descriptor, spec, opts))
    }

    /// Boots `digest` for (`app`, `deploy`) and waits until it is healthy.
    /// Cancelling the job stops the VM.
    pub async fn boot(&self, ctx: &JobCtx, deploy: i64, digest: &str) -> Result<Booted, JobError> {
        let app = ctx.app.as_str();
        let (descriptor, spec, opts) = self.app_spec(app, deploy, digest, &ctx.progress()).await?;
        if !spec.volumes.is_empty() {
            self.stop_for_volumes(ctx, &spec).await;
        }
        let started = Instant::now();
        let sink = self.events.app_sink(app, deploy);
        let mut boot = tokio::task::spawn_blocking(move || runtime::boot(&spec, &opts, sink));
        let running = tokio::select! {
            done = &mut boot => done
                .map_err(|e| JobError::Internal { message: format!("boot task failed: {e}") })?
                .map_err(|e| JobError::Boot { message: crate::jobs::error_chain(&e) })?,
            why = ctx.control.stopped() => {
                // The boot cannot be interrupted half-way: let it finish,
                // then power the VM off.
                let events = self.events.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(vm)) = boot.await {
                        stop_vm(vm, Duration::from_secs(5), &events).await;
                    }
                });
                return Err(why);
            }
        };
        let boot_ms = started.elapsed().as_millis() as i64;
        let vm_name = running.vm.name().to_string();
        vm_event(&self.events, app, deploy, VmChange::Booted, &vm_name, None);
        let (Some(addr), Some(port)) = (running.vm.host_addr(), descriptor.port) else {
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
        let (interval, probe_timeout) = descriptor
            .health
            .as_ref()
            .map(|h| {
                (
                    Duration::from_millis(h.interval_ms.clamp(100, 1000)),
                    Duration::from_millis(h.timeout_ms),
                )
            })
            .unwrap_or((Duration::from_millis(250), Duration::from_secs(2)));
        let check = HealthCheck {
            probe,
            port,
            interval,
            probe_timeout,
            deadline: HEALTH_DEADLINE,
        };
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut health = {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                let mut running = running;
                let result = health_until_stopped(&mut running, &check, &stop);
                (result, running)
            })
        };
        let (result, running) = tokio::select! {
            done = &mut health => done.map_err(|e| JobError::Internal { message: format!("health task failed: {e}") })?,
            why = ctx.control.stopped() => {
                stop.store(true, Ordering::SeqCst);
                if let Ok((_, running)) = health.await {
                    stop_vm(running, Duration::from_secs(5), &self.events).await;
                }
                return Err(why);
            }
        };
        if let Err(e) = result {
            let tail = running.vm.console_tail();
            stop_vm(running, Duration::from_secs(5), &self.events).await;
            return Err(JobError::Boot {
                message: format!("health check failed: {e}\n{tail}"),
            });
        }
        let _ = addr;
        let health_ms = started.elapsed().as_millis() as i64;
        vm_event(
            &self.events,
            app,
            deploy,
            VmChange::Healthy,
            &vm_name,
            Some(format!("in {:.1}s", (boot_ms + health_ms) as f64 / 1000.0)),
        );
        Ok(Booted {
            app: running,
            addr,
            timings: vec![("boot", boot_ms), ("health", health_ms)],
        })
    }

    /// Routes the app to its healthy new VMs at once (requests are
    /// balanced across them), then drains and stops the ones they replace.
    /// The caller has passed the job's point of no return. Returns the
    /// switch time in milliseconds.
    pub(crate) fn switch_in(
        &self,
        app: &str,
        domains: &[String],
        booted: Vec<Booted>,
        crashes: u32,
    ) -> i64 {
        let started = Instant::now();
        let Some(deploy) = booted.first().map(|b| b.app.deploy) else {
            return 0;
        };
        let addrs: Vec<std::net::SocketAddr> = booted
            .iter()
            .map(|b| b.addr)
            .filter(|a| a.port() != 0)
            .collect();
        let previous_upstreams = if addrs.is_empty() {
            self.routes.forget_all(app)
        } else {
            // Distinct host ports of fresh VMs: never refused.
            self.routes
                .switch_instances(app, domains, &addrs, deploy)
                .unwrap_or_else(|e| {
                    tracing::error!(app, error = %e, "switching instances");
                    Vec::new()
                })
        };
        let names: Vec<String> = booted.iter().map(|b| b.app.vm.name().to_string()).collect();
        let previous = self.running().insert(
            app.to_string(),
            Instance {
                vms: booted.into_iter().map(Booted::into_running).collect(),
                domains: domains.to_vec(),
                since: Instant::now(),
                crashes,
            },
        );
        let switch_ms = started.elapsed().as_millis() as i64;
        for name in names {
            vm_event(&self.events, app, deploy, VmChange::Switched, &name, None);
        }
        if let Some(old) = previous {
            retire(old.vms, previous_upstreams, self.events.clone());
        }
        switch_ms
    }

    /// The manifest's extra domains at a deploy's commit (a restart, a
    /// rollback or a restore maps them again without the push that set
    /// them). A manifest that cannot be read gives none, with a warning.
    pub(crate) async fn domains_at(&self, app: &str, commit: &str) -> Vec<String> {
        let repo = self.repo_path(app);
        let commit_s = commit.to_string();
        let read = tokio::task::spawn_blocking(move || {
            crate::repo_files::read_root_file(
                &repo,
                &commit_s,
                manifest_spec::MANIFEST_FILE_NAME,
                crate::pipeline::MAX_MANIFEST_BYTES,
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

    /// Boots `deploy`'s artifact and switches the job's app to it
    /// (restore, restart, start, crash recovery); `crashes` is carried to
    /// the new VM for the crash backoff. Returns the phase timings.
    pub(crate) async fn boot_and_switch(
        &self,
        ctx: &JobCtx,
        deploy: &Deploy,
        crashes: u32,
    ) -> Result<Vec<(&'static str, i64)>, JobError> {
        let digest = deploy
            .artifact
            .as_deref()
            .ok_or_else(|| JobError::Rejected {
                message: format!(
                    "deploy #{} of {} has no artifact; push again to rebuild",
                    deploy.number, ctx.app
                ),
            })?;
        let domains = self.domains_at(&ctx.app, &deploy.commit).await;
        let count = self.instances_wanted(&ctx.app, digest).await?;
        // A running app with several VMs (a restart, a rollback) is rolled.
        let rolling = self.rolls(&ctx.app, count);
        let booted = self
            .boot_fleet(ctx, deploy.number, digest, if rolling { 1 } else { count })
            .await?;
        let mut timings = crate::scale::fleet_timings(&booted);
        if let Err(why) = ctx.control.commit() {
            crate::scale::discard_all(booted, self).await;
            return Err(why);
        }
        let switch_ms = if rolling {
            self.roll_in(ctx, &domains, booted, digest, count).await
        } else {
            self.switch_in(&ctx.app, &domains, booted, crashes)
        };
        timings.push(("switch", switch_ms));
        Ok(timings)
    }
}

/// Drains the upstreams old VMs served (in-flight requests finish), then
/// stops the VMs, in the background.
pub(crate) fn retire(old: Vec<RunningApp>, upstreams: Vec<Arc<router::Upstream>>, events: Events) {
    tokio::spawn(async move {
        for u in upstreams {
            let left = u.drain(DRAIN).await;
            if left > 0 {
                tracing::warn!(app = %u.app, left, "drain timed out; stopping anyway");
            }
        }
        stop_vms(old, STOP_GRACE, &events).await;
    });
}
