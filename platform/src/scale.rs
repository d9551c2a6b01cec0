//! Several VMs of one deploy (`web { instances N }`, `byteport scale APP
//! web=N`): booted one after another and health-checked each, switched in
//! together (the router balances across them by least outstanding
//! requests), topped up after a crash, grown or shrunk in place.
//!
//! A redeploy boots all N new VMs before the first takes a request, then
//! swaps the whole set at once and drains the old one: no request fails
//! and no two versions serve side by side, at the cost of 2N VMs for the
//! length of the drain. An app with a volume runs one VM (its manifest
//! cannot say otherwise, and `scale` refuses).

use std::time::Instant;

use crate::apps::{Platform, DRAIN, STOP_GRACE};
use crate::boot::{stop_vms, Booted};
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
            let leaving: Vec<_> = extra
                .iter()
                .filter_map(|vm| vm.vm.host_addr())
                .filter_map(|a| self.routes.remove_instance(app, a))
                .collect();
            for u in leaving {
                u.drain(DRAIN).await;
            }
            stop_vms(extra, STOP_GRACE, &self.events).await;
        }
        Ok(self.running().get(app).map_or(0, |i| i.vms.len() as u32))
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
