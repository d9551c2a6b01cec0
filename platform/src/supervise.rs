//! Supervision of the running VMs: a VM that ends without being asked to
//! (kernel panic, guest power-off, the VMM process killed) is noticed
//! within a second, its app's hosts answer 502 ("restarting after a
//! crash"), and a `recover` job boots its live deploy again after an
//! exponential backoff — 1 s, 2 s, 4 s … capped at a minute, starting
//! afresh once a VM has stayed up for five minutes. Process crashes inside
//! the guest are the guest init's business (it restarts them with its own
//! backoff); its events land in the app's stream.

use std::sync::Arc;
use std::time::Duration;

use runtime::RunningApp;

use crate::apps::Platform;
use crate::events::{EventKind, VmChange};
use crate::jobs::run::JobCtx;
use crate::jobs::{JobError, JobSpec};
use crate::store::now_ms;

/// How often running VMs are checked.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait between two restarts of a crashing app.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A VM that ran this long resets the crash count.
const STABLE: Duration = Duration::from_secs(300);

/// A VM that ended without being asked to.
struct Crash {
    app: String,
    /// Crashes in a row, this one included.
    crashes: u32,
    /// The app's VMs still serving.
    left: usize,
    domains: Vec<String>,
    vm: RunningApp,
    how: String,
}

/// The wait before restart attempt `crashes` (1 = the first crash).
pub fn backoff(crashes: u32) -> Duration {
    let secs = 1u64 << crashes.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The guest init's event as a sentence (`None`: not worth one).
fn describe_event(event: &str) -> Option<String> {
    let (kind, rest) = event.split_once(' ').unwrap_or((event, ""));
    match kind {
        "STARTED" | "EXITED" | "RESTART" | "FAILED" | "WARN" | "FATAL" | "STOPPING" => {
            Some(format!("guest: {} {rest}", kind.to_ascii_lowercase()))
        }
        _ => None,
    }
}

impl Platform {
    /// Starts the supervisor task; it runs until `byteport up` stops.
    pub(crate) fn spawn_supervisor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(platform) = this.upgrade() else {
                    return;
                };
                platform.check_vms().await;
            }
        })
    }

    /// One pass: ship guest events to the app streams, take crashed VMs
    /// out of service and queue their recovery. An app with several VMs
    /// keeps serving on the others meanwhile.
    async fn check_vms(&self) {
        let mut crashed: Vec<Crash> = Vec::new();
        {
            let mut running = self.running();
            let mut emptied = Vec::new();
            for (app, instance) in running.iter_mut() {
                let mut k = 0;
                while k < instance.vms.len() {
                    let vm = &mut instance.vms[k];
                    for event in vm.vm.drain_events() {
                        if let Some(line) = describe_event(&event) {
                            self.note(app, Some(vm.deploy), &line);
                        }
                    }
                    let Some(how) = vm.vm.exit_status() else {
                        k += 1;
                        continue;
                    };
                    let vm = instance.vms.remove(k);
                    if let Some(addr) = vm.vm.host_addr() {
                        self.routes.remove_instance(app, addr);
                    }
                    crashed.push(Crash {
                        app: app.clone(),
                        crashes: if instance.since.elapsed() >= STABLE {
                            1
                        } else {
                            instance.crashes + 1
                        },
                        left: instance.vms.len(),
                        domains: instance.domains.clone(),
                        vm,
                        how,
                    });
                }
                if instance.vms.is_empty() {
                    emptied.push(app.clone());
                }
            }
            for app in emptied {
                running.remove(&app);
            }
        }
        for c in crashed {
            let (app, crashes) = (c.app.as_str(), c.crashes);
            let deploy = c.vm.deploy;
            let delay = backoff(crashes);
            let tail = c.vm.vm.console_tail();
            tracing::warn!(%app, deploy, how = %c.how, crashes, "VM ended unexpectedly; restarting in {delay:?}");
            crate::metrics::metrics().crash(app);
            let last_line = tail
                .lines()
                .last()
                .map(|l| format!("; last console line: {l}"));
            let others = match c.left {
                0 => String::new(),
                1 => "; 1 other VM serves meanwhile".to_string(),
                n => format!("; {n} other VMs serve meanwhile"),
            };
            self.events.emit(
                app,
                Some(deploy),
                None,
                EventKind::Vm {
                    change: VmChange::Crashed,
                    vm: c.vm.vm.name().to_string(),
                    detail: Some(format!(
                        "{}; restarting in {}s, crash {crashes} in a row{others}{}",
                        c.how,
                        delay.as_secs(),
                        last_line.unwrap_or_default()
                    )),
                },
            );
            if c.left == 0 {
                self.routes
                    .mark_down(app, &c.domains, "it is restarting after a crash");
            }
            let run_after = now_ms() + delay.as_millis() as i64;
            if let Err(e) = self
                .enqueue_at(
                    app,
                    JobSpec::Recover { crashes },
                    Some("byteport"),
                    true,
                    run_after,
                )
                .await
            {
                tracing::error!(%app, error = %e, "cannot queue the recovery of a crashed VM");
            }
        }
    }

    /// Boots the live deploy again after a crash, unless meanwhile the app
    /// was stopped, redeployed or destroyed; a failed boot queues another
    /// try with a longer wait.
    pub(crate) async fn recover(&self, ctx: &JobCtx, crashes: u32) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        if self.is_running(app) {
            // Other instances serve: boot the missing ones (a deploy,
            // restart or start may have got there first).
            let Some(digest) = self.live_digest(app).await? else {
                return Ok(());
            };
            let wanted = self.instances_wanted(app, &digest).await?;
            return match self.converge(ctx, wanted).await {
                Ok(_) => Ok(()),
                Err(e @ (JobError::Cancelled { .. } | JobError::Interrupted { .. })) => Err(e),
                Err(e) => self.recover_later(ctx, crashes, e).await,
            };
        }
        let live = match (
            self.store.app(app).await?,
            self.store.live_deploy(app).await?,
        ) {
            (Some(a), Some(live)) if !a.stopped => live,
            _ => return Ok(()),
        };
        ctx.set_deploy(live.number).await;
        match self.boot_and_switch(ctx, &live, crashes).await {
            Ok(_) => {
                let first = self
                    .running()
                    .get(app)
                    .and_then(|i| i.vms.first().map(|v| v.vm.name().to_string()));
                if let Some(vm) = first {
                    self.events.emit(
                        app,
                        Some(live.number),
                        Some(ctx.id),
                        EventKind::Vm {
                            change: VmChange::Restarted,
                            vm,
                            detail: None,
                        },
                    );
                }
                Ok(())
            }
            Err(e @ (JobError::Cancelled { .. } | JobError::Interrupted { .. })) => Err(e),
            Err(e) => self.recover_later(ctx, crashes, e).await,
        }
    }

    /// After a failed recovery: another try, with a longer wait.
    async fn recover_later(&self, ctx: &JobCtx, crashes: u32, e: JobError) -> Result<(), JobError> {
        let next = crashes + 1;
        let delay = backoff(next);
        ctx.note(&format!(
            "restart after a crash failed: {}; next try in {}s",
            e.to_string().lines().next().unwrap_or_default(),
            delay.as_secs()
        ));
        let run_after = now_ms() + delay.as_millis() as i64;
        self.enqueue_at(
            &ctx.app,
            JobSpec::Recover { crashes: next },
            Some("byteport"),
            true,
            run_after,
        )
        .await?;
        Err(e)
    }

    /// The artifact of `app`'s live deploy, if it has one.
    async fn live_digest(&self, app: &str) -> Result<Option<String>, JobError> {
        Ok(self.store.live_deploy(app).await?.and_then(|d| d.artifact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0).as_secs(), 1);
        assert_eq!(backoff(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn guest_events_become_sentences() {
        assert_eq!(
            describe_event("EXITED web pid=42 signal=9").as_deref(),
            Some("guest: exited web pid=42 signal=9")
        );
        assert_eq!(
            describe_event("RESTART web in 1000ms (failure 1)").as_deref(),
            Some("guest: restart web in 1000ms (failure 1)")
        );
        assert_eq!(describe_event("READY"), None);
        assert_eq!(describe_event(""), None);
    }
}
