//! Several VMs of one deploy (`web { instances N }`, `byteport scale APP
//! web=N`): booted one after another and health-checked each, switched in
//! together (the router balances across them by least outstanding
//! requests), topped up after a crash, grown or shrunk in place.
//!
//! A redeploy of an app that runs replaces its VMs one by one (Fly's
//! rolling strategy, [`Platform::roll_in`]): each new VM is healthy and
//! takes requests before one old VM leaves rotation, drains and stops. No
//! request fails, the app never serves from fewer VMs than before, and at
//! most one VM more than wanted runs; both versions serve side by side
//! for the length of the rollout. An app with a volume runs one VM (its
//! manifest cannot say otherwise, and `scale` refuses).

use std::time::Instant;

use runtime::RunningApp;

use crate::apps::{Platform, DRAIN, STOP_GRACE};
use crate::boot::{stop_vms, vm_event, Booted};
use crate::events::VmChange;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;

/// Most VMs one process may run (as the manifest's `instances`).
pub const MAX_INSTANCES: u32 = 16;

fn setting_name(app: &str) -> String {
    format!("scale:{app}")
}

/// Phase timings of several boots, summed per phase (they ran one after
/// another).
pub(crate) fn fleet_timings(booted: &[Booted]) -> Vec<(&'static str, i64)> {
    let mut out: Vec<(&'static str, i64)> = Vec::new();
    for b in booted {
        for (phase, ms) in &b.timings {
            match out.iter_mut().find(|(p, _)| p == phase) {
                Some((_, total)) => *total += ms,
                None => out.push((phase, *ms)),
            }
        }
    }
    out
}

/// Powers off VMs that will not be switched in.
pub(crate) async fn discard_all(booted: Vec<Booted>, platform: &Platform) {
    for b in booted {
        b.discard(platform).await;
    }
}

impl Platform {
    /// How many `web` VMs `app` runs for artifact `digest`: `byteport
    /// scale`'s choice if any, else the manifest's `instances` (1 for an
    /// app with volumes or without a web process).
    pub(crate) async fn instances_wanted(&self, app: &str, digest: &str) -> Result<u32, JobError> {
        let (descriptor, _) = self.artifact(digest)?;
        if !descriptor.volumes.is_empty() {
            return Ok(1);
        }
        let Some(web) = descriptor.processes.iter().find(|p| p.name == "web") else {
            return Ok(1);
        };
        let scaled: Option<u32> = self.store.setting(&setting_name(app)).await?;
        Ok(scaled.unwrap_or(web.instances).clamp(1, MAX_INSTANCES))
    }

    /// Forgets `byteport scale`'s choice for a destroyed app.
    pub(crate) async fn forget_scale(&self, app: &str) -> Result<(), JobError> {
        self.store.delete_setting(&setting_name(app)).await?;
        Ok(())
    }

    /// Boots `count` VMs of `digest`, each healthy before the next boots;
    /// if one fails, those already booted are stopped.
    pub(crate) async fn boot_fleet(
        &self,
        ctx: &JobCtx,
        deploy: i64,
        digest: &str,
        count: u32,
    ) -> Result<Vec<Booted>, JobError> {
        let mut booted = Vec::new();
        for n in 1..=count {
            if count > 1 {
                ctx.say(&format!("       instance {n} of {count} ..."));
            }
            match self.boot(ctx, deploy, digest).await {
                Ok(b) => booted.push(b),
                Err(e) => {
                    discard_all(booted, self).await;
                    return Err(e);
                }
            }
        }
        Ok(booted)
    }

    /// Brings a running app's VMs to the number wanted: boots and adds the
    /// missing ones (each healthy before it takes requests), or takes the
    /// extra ones out of rotation, drains and stops them. Returns how many
    /// it now runs (0: not running, nothing done).
    pub(crate) async fn converge(&self, ctx: &JobCtx, wanted: u32) -> Result<u32, JobError> {
        let app = ctx.app.as_str();
        let (have, deploy) = match self.running().get(app) {
            Some(i) => (i.vms.len() as u32, i.deploy()),
            None => return Ok(0),
        };
        let Some(digest) = self
            .store
            .deploy(app, deploy)
            .await?
            .and_then(|d| d.artifact)
        else {
            return Ok(have);
        };
        if wanted > have {
            let more = self.boot_fleet(ctx, deploy, &digest, wanted - have).await?;
            ctx.control.commit()?;
            for b in more {
                let addr = b.addr;
                let vm = b.into_running();
                let name = vm.vm.name().to_string();
                // The app may have been stopped meanwhile: then the VM goes.
                let orphan = {
                    let mut running = self.running();
                    match running.get_mut(app) {
                        Some(instance) => {
                            if addr.port() != 0 {
                                if let Err(e) = self.routes.add_instance(app, addr, deploy) {
                                    tracing::error!(app, error = %e, "adding an instance");
                                }
                            }
                            instance.vms.push(vm);
                            None
                        }
                        None => Some(vm),
                    }
                };
                if let Some(vm) = orphan {
                    stop_vms(vec![vm], STOP_GRACE, &self.events).await;
                    continue;
                }
                ctx.say(&format!("-----> {name} takes requests"));
            }
        } else if wanted < have {
            ctx.control.commit()?;
            let extra: Vec<_> = {
                let mut running = self.running();
                match running.get_mut(app) {
                    Some(i) => i.vms.split_off(wanted as usize),
                    None => Vec::new(),
                }
            };
            self.retire_now(app, extra).await;
        }
        Ok(self.running().get(app).map_or(0, |i| i.vms.len() as u32))
    }

    /// Whether a deploy of `count` VMs should roll (replace the running
    /// VMs one by one) rather than switch them all at once.
    pub(crate) fn rolls(&self, app: &str, count: u32) -> bool {
        count > 1 && self.is_running(app)
    }

    /// A redeploy of an app that runs (see the module docs): the new
    /// deploy's VMs replace the running ones one at a time, `first` (booted
    /// healthy before the job committed) first. A later VM that does not
    /// boot ends the rollout there: the old VMs still left go, the new
    /// deploy serves from the VMs it has, and `recover` boots the rest.
    /// Returns how long the rollout took, in milliseconds.
    pub(crate) async fn roll_in(
        &self,
        ctx: &JobCtx,
        domains: &[String],
        mut first: Vec<Booted>,
        digest: &str,
        count: u32,
    ) -> i64 {
        let started = Instant::now();
        let app = ctx.app.as_str();
        let Some(deploy) = first.first().map(|b| b.app.deploy) else {
            return 0;
        };
        for n in 1..=count {
            let booted = match first.pop() {
                Some(b) => b,
                None => {
                    ctx.say(&format!("       instance {n} of {count} ..."));
                    match self.boot(ctx, deploy, digest).await {
                        Ok(b) => b,
                        Err(e) => {
                            ctx.say(&format!(
                                "-----> instance {n} of {count} did not boot ({e}); {app} serves from {} VM(s) of deploy #{deploy} until `recover` boots the rest",
                                n - 1
                            ));
                            break;
                        }
                    }
                }
            };
            let name = booted.app.vm.name().to_string();
            match self.replace_one(app, booted, deploy) {
                Ok(leaving) => {
                    vm_event(&self.events, app, deploy, VmChange::Switched, &name, None);
                    ctx.say(&format!("-----> {name} takes requests"));
                    self.retire_now(app, leaving).await;
                }
                // Stopped meanwhile: nothing to roll.
                Err(vm) => {
                    stop_vms(vec![vm], STOP_GRACE, &self.events).await;
                    return started.elapsed().as_millis() as i64;
                }
            }
        }
        // Older VMs still left (the new deploy wants fewer, or a boot
        // failed) go too; then the new deploy's domains.
        let (left, addrs) = {
            let mut running = self.running();
            let Some(instance) = running.get_mut(app) else {
                return started.elapsed().as_millis() as i64;
            };
            let (kept, left): (Vec<_>, Vec<_>) = std::mem::take(&mut instance.vms)
                .into_iter()
                .partition(|vm| vm.deploy == deploy);
            instance.vms = kept;
            instance.domains = domains.to_vec();
            instance.since = Instant::now();
            instance.crashes = 0;
            let addrs: Vec<_> = instance
                .vms
                .iter()
                .filter_map(|vm| vm.vm.host_addr())
                .collect();
            (left, addrs)
        };
        self.retire_now(app, left).await;
        if !addrs.is_empty() {
            // The same VMs under the deploy's domains; the upstreams it
            // replaces belong to VMs that keep running.
            if let Err(e) = self.routes.switch_instances(app, domains, &addrs, deploy) {
                tracing::error!(app, error = %e, "mapping the deploy's domains");
            }
        }
        started.elapsed().as_millis() as i64
    }

    /// Puts `booted` into `app`'s rotation and takes one VM of an older
    /// deploy out of it (returned, to be drained and stopped). The VM comes
    /// back if `app` no longer runs.
    fn replace_one(
        &self,
        app: &str,
        booted: Booted,
        deploy: i64,
    ) -> Result<Vec<RunningApp>, RunningApp> {
        let addr = booted.addr;
        let vm = booted.into_running();
        let mut running = self.running();
        let Some(instance) = running.get_mut(app) else {
            return Err(vm);
        };
        if addr.port() != 0 {
            if let Err(e) = self.routes.add_instance(app, addr, deploy) {
                tracing::error!(app, error = %e, "adding an instance");
            }
        }
        instance.vms.push(vm);
        let old = instance.vms.iter().position(|v| v.deploy != deploy);
        Ok(old.map(|i| instance.vms.remove(i)).into_iter().collect())
    }

    /// Takes `vms` out of `app`'s rotation, drains them and stops them.
    async fn retire_now(&self, app: &str, vms: Vec<RunningApp>) {
        let leaving: Vec<_> = vms
            .iter()
            .filter_map(|vm| vm.vm.host_addr())
            .filter_map(|a| self.routes.remove_instance(app, a))
            .collect();
        for u in leaving {
            u.drain(DRAIN).await;
        }
        stop_vms(vms, STOP_GRACE, &self.events).await;
    }

    /// `byteport scale APP web=N`: remembered for later deploys and
    /// restarts, applied now if the app runs.
    pub(crate) async fn scale(&self, ctx: &JobCtx, web: u32) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        if !(1..=MAX_INSTANCES).contains(&web) {
            return Err(JobError::Rejected {
                message: format!("web={web}: an app runs 1 to {MAX_INSTANCES} web VMs"),
            });
        }
        let live = self.require_live(app).await?;
        let digest = live.artifact.clone().unwrap_or_default();
        let (descriptor, _) = self.artifact(&digest)?;
        if web > 1 && !descriptor.volumes.is_empty() {
            return Err(JobError::Rejected {
                message: format!(
                    "{app} has a volume, which is attached to one VM at a time: it cannot run {web} VMs"
                ),
            });
        }
        if !descriptor.processes.iter().any(|p| p.name == "web") {
            return Err(JobError::Rejected {
                message: format!("{app} has no web process to scale"),
            });
        }
        ctx.set_deploy(live.number).await;
        self.store.set_setting(&setting_name(app), &web).await?;
        let started = Instant::now();
        if !self.is_running(app) {
            ctx.say(&format!(
                "-----> {app} will run {web} web VM(s) when it starts"
            ));
            return Ok(());
        }
        ctx.say(&format!("-----> Scaling {app} to web={web} ..."));
        let now = self.converge(ctx, web).await?;
        ctx.note(&format!("scaled to web={now}"));
        ctx.say(&format!(
            "-----> {app} runs {now} web VM(s) ({:.1}s)",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}
