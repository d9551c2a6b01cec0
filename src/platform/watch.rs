//! Crash recovery: a VM that ends without being asked to (kernel panic,
//! guest power-off, the VMM process killed) is noticed within a second, its
//! app's hosts answer 502 ("restarting after a crash"), and its live
//! deploy boots again after an exponential backoff — 1 s, 2 s, 4 s … capped
//! at a minute, starting afresh once a VM has stayed up for five minutes.
//! Process crashes inside the guest are the guest init's business (it
//! restarts them with its own backoff); their events land in the app log.

use std::sync::Arc;
use std::time::Duration;

use super::{Instance, Platform};

/// How often running VMs are checked.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait between two restarts of a crashing app.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A VM that ran this long resets the crash count.
const STABLE: Duration = Duration::from_secs(300);

/// The wait before restart attempt `crashes` (1 = the first crash).
pub(crate) fn backoff(crashes: u32) -> Duration {
    let secs = 1u64 << crashes.saturating_sub(1).min(6);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// The guest init's event as a log line for people (`None`: not worth one).
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
    /// Starts the watcher task; it runs until `byteport up` stops.
    pub fn spawn_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(platform) = this.upgrade() else {
                    return;
                };
                platform.check_vms();
            }
        })
    }

    /// One pass: ship guest events to the app logs, take crashed VMs out
    /// of service and schedule their recovery.
    fn check_vms(self: &Arc<Self>) {
        let mut crashed: Vec<(String, Instance, String)> = Vec::new();
        {
            let mut running = self.running();
            let mut gone = Vec::new();
            for (app, instance) in running.iter_mut() {
                for event in instance.vm.vm.drain_events() {
                    if let Some(line) = describe_event(&event) {
                        self.log_event(app, instance.vm.deploy, &line);
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
            self.log_event(
                &app,
                deploy,
                &format!(
                    "VM {} ended unexpectedly ({how}); restarting in {}s (crash {crashes} in a row)",
                    instance.vm.vm.name(),
                    delay.as_secs()
                ),
            );
            if let Some(last) = tail.lines().last() {
                self.log_event(&app, deploy, &format!("last console line: {last}"));
            }
            self.routes
                .mark_down(&app, &instance.domains, "it is restarting after a crash");
            let this = self.clone();
            tokio::spawn(async move { this.recover(app, crashes, delay).await });
        }
    }

    /// Boots `app`'s live deploy again after `delay`, unless meanwhile it
    /// was stopped, redeployed or destroyed; a failed boot tries again with
    /// a longer wait.
    async fn recover(self: Arc<Self>, app: String, mut crashes: u32, mut delay: Duration) {
        loop {
            tokio::time::sleep(delay).await;
            let _guard = self.lock_app(&app).await;
            if self.is_running(&app) {
                return; // a deploy, restart or start got there first
            }
            let live = match (
                self.store.app(&app).await,
                self.store.live_deploy(&app).await,
            ) {
                (Ok(Some(a)), Ok(Some(live))) if !a.stopped => live,
                _ => return,
            };
            let quiet = |_: &str| {};
            match self.boot_deploy(&app, &live, crashes, &quiet).await {
                Ok(()) => {
                    self.log_event(&app, live.number, "VM restarted after a crash");
                    return;
                }
                Err(e) => {
                    crashes += 1;
                    delay = backoff(crashes);
                    self.log_event(
                        &app,
                        live.number,
                        &format!(
                            "restart after a crash failed: {}; next try in {}s",
                            e.lines().next().unwrap_or_default(),
                            delay.as_secs()
                        ),
                    );
                }
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
    fn guest_events_become_log_lines() {
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
