//! Prometheus metrics of the whole daemon, in one process-wide registry
//! ([`metrics`]): jobs and deploys by outcome, phase durations (build,
//! boot, health, …) as histograms, VM crashes, router requests by app and
//! status, and gauges the reader sets just before a scrape (queue length,
//! VMs running). The dashboard serves them as text at `/metrics`.
//!
//! Process-wide because the places that count (the dispatcher, the
//! pipeline, the supervisor, the router's request log) share nothing else
//! cheap; the registry is lock-free on the hot path (atomic counters).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    status: String,
}

fn duration_histogram() -> Histogram {
    // 50 ms … ~27 min, doubling: a cached restart and a cold Debian build
    // both land in a bucket of their own.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    deploys: Family<OutcomeLabels, Counter>,
    phases: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    crashes: Family<AppLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    queue_length: Gauge,
    vms_running: Gauge,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("byteport");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Jobs that ended, by kind (deploy, restart, …) and outcome (succeeded, failed, cancelled)",
            jobs.clone(),
        );
        let deploys = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deploys",
            "Deploys (pushes) that ended, by outcome",
            deploys.clone(),
        );
        let phases: Family<PhaseLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "phase_duration_seconds",
            "How long each phase of a job took: manifest, build, boot, health, switch",
            phases.clone(),
        );
        let crashes = Family::<AppLabels, Counter>::default();
        registry.register(
            "vm_crashes",
            "VMs that ended unexpectedly (each is restarted with a backoff), by app",
            crashes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "router_requests",
            "Requests the router served, by app and HTTP status",
            requests.clone(),
        );
        let queue_length = Gauge::default();
        registry.register(
            "queue_length",
            "Jobs queued or running",
            queue_length.clone(),
        );
        let vms_running = Gauge::default();
        registry.register(
            "vms_running",
            "App VMs serving on this node",
            vms_running.clone(),
        );
        Metrics {
            registry,
            jobs,
            deploys,
            phases,
            crashes,
            requests,
            queue_length,
            vms_running,
        }
    }

    /// A job ended: its kind (`deploy`, …) and verdict (`succeeded`, …).
    pub fn job_finished(&self, kind: &str, outcome: &str) {
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        if kind == "deploy" {
            self.deploys
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_string(),
                })
                .inc();
        }
    }

    /// A phase of a job took `ms` milliseconds.
    pub fn phase(&self, phase: &str, ms: i64) {
        self.phases
            .get_or_create(&PhaseLabels {
                phase: phase.to_string(),
            })
            .observe(ms.max(0) as f64 / 1000.0);
    }

    /// A VM of `app` ended unexpectedly.
    pub fn crash(&self, app: &str) {
        self.crashes
            .get_or_create(&AppLabels {
                app: app.to_string(),
            })
            .inc();
    }

    /// The router answered a request for `app` with `status`.
    pub fn record_request(&self, app: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                app: app.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// Sets the gauges that are read, not counted, then renders everything
    /// in the Prometheus text format.
    pub fn render(&self, queue_length: i64, vms_running: i64) -> String {
        self.queue_length.set(queue_length);
        self.vms_running.set(vms_running);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_as_prometheus_text() {
        let m = Metrics::new();
        m.job_finished("deploy", "succeeded");
        m.job_finished("deploy", "failed");
        m.job_finished("restart", "succeeded");
        m.phase("build", 1500);
        m.crash("hello");
        m.record_request("hello", 200);
        m.record_request("hello", 200);
        let text = m.render(3, 2);
        for want in [
            "byteport_jobs_total{kind=\"deploy\",outcome=\"succeeded\"} 1",
            "byteport_deploys_total{outcome=\"failed\"} 1",
            "byteport_phase_duration_seconds_count{phase=\"build\"} 1",
            "byteport_phase_duration_seconds_sum{phase=\"build\"} 1.5",
            "byteport_vm_crashes_total{app=\"hello\"} 1",
            "byteport_router_requests_total{app=\"hello\",status=\"200\"} 2",
            "byteport_queue_length 3",
            "byteport_vms_running 2",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("outcome=\"succeeded\",kind"), "{text}");
    }
}
