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

use crate::apps::{Instance, Platform};
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
    /// out of service and queue their recovery.
    async fn check_vms(&self) {
        let mut crashed: Vec<(String, Instance, String)> = Vec::new();
        {
            let mut running = self.running();
            let mut gone = Vec::new();
            for (app, instance) in running.iter_mut() {
                for event in instance.vm.vm.drain_events() {
                    if let Some(line) = describe_event(&event) {
                        self.note(app, Some(instance.vm.deploy), &line);
                    }
                }
                if let Some(how) = instance.vm.vm.exit_status() {
                    gone.push((app.clone(), how));
                }
            }
            for (app, how) in gone {
                if let Some(instance) = running.remove(&app) {
                    crashed.push((app, instance, how));
                }
            }
        }
        for (app, instance, how) in crashed {
            let crashes = if instance.since.elapsed() >= STABLE {
                1
            } else {
                instance.crashes + 1
            };
            let deploy = instance.vm.deploy;
            let delay = backoff(crashes);
            let tail = instance.vm.vm.console_tail();
            tracing::warn!(%app, deploy, %how, crashes, "VM ended unexpectedly; restarting in {delay:?}");
            crate::metrics::metrics().crash(&app);
            let last_line = tail
                .lines()
                .last()
                .map(|l| format!("; last console line: {l}"));
            self.events.emit(
                &app,
                Some(deploy),
                None,
                EventKind::Vm {
                    change: VmChange::Crashed,
                    vm: instance.vm.vm.name().to_string(),
                    detail: Some(format!(
                        "{how}; restarting in {}s, crash {crashes} in a row{}",
                        delay.as_secs(),
                        last_line.unwrap_or_default()
                    )),
                },
            );
            self.routes
                .mark_down(&app, &instance.domains, "it is restarting after a crash");
            let run_after = now_ms() + delay.as_millis() as i64;
            if let Err(e) = self
                .enqueue_at(
                    &app,
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
            return Ok(()); // a deploy, restart or start got there first
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
                if let Some(vm) = self.running().get(app).map(|i| i.vm.vm.name().to_string()) {
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
            Err(e) => {
                let next = crashes + 1;
                let delay = backoff(next);
                ctx.note(&format!(
                    "restart after a crash failed: {}; next try in {}s",
                    e.to_string().lines().next().unwrap_or_default(),
                    delay.as_secs()
                ));
                let run_after = now_ms() + delay.as_millis() as i64;
                self.enqueue_at(
                    app,
                    JobSpec::Recover { crashes: next },
                    Some("byteport"),
                    true,
                    run_after,
                )
                .await?;
                Err(e)
            }
        }
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
