//! From a parsed `Byteport` manifest (`manifest-spec`) to a [`BuildPlan`].

use crate::error::{BuildError, Result};
use crate::plan::{BaseSpec, BuildPlan, Health, Network, Process, RunAs, Step, Volume};
use manifest_spec as spec;
pub use spec::MANIFEST_FILE_NAME;

/// Parse manifest `source` (named `origin` in diagnostics) into a plan.
pub fn plan_from_source(source: &[u8], origin: &str) -> Result<BuildPlan> {
    let m = spec::parse(source, origin).map_err(|d| BuildError::Manifest {
        rendered: d.to_string(),
    })?;
    Ok(plan_from_manifest(&m))
}

/// Convert a parsed manifest.
pub fn plan_from_manifest(m: &spec::Manifest) -> BuildPlan {
    let base = match &m.base {
        spec::Base::Scratch => BaseSpec::Scratch,
        spec::Base::Busybox => BaseSpec::Busybox,
        spec::Base::Debian { suite } => BaseSpec::Debian {
            suite: suite.clone(),
        },
    };
    let steps = m
        .build
        .iter()
        .map(|s| match s {
            spec::BuildStep::Copy { from, to, .. } => Step::Copy {
                from: from.clone(),
                to: to.clone(),
            },
            spec::BuildStep::Workdir { path, .. } => Step::Workdir { path: path.clone() },
            spec::BuildStep::Run { command, .. } => Step::Run {
                command: command.clone(),
            },
        })
        .collect();
    let (build_secrets, runtime_secrets) = secrets(&m.secrets);
    let network = |n: spec::Network| match n {
        spec::Network::On => Network::On,
        spec::Network::Off => Network::Off,
    };
    BuildPlan {
        app: m.app.clone(),
        base,
        packages: m.packages.clone(),
        steps,
        build_network: network(m.build_network),
        run_network: network(m.vm.network),
        env: m.env.clone(),
        build_secrets,
        runtime_secrets,
        cpus: m.vm.cpus,
        memory_bytes: m.vm.memory_bytes,
        disk_bytes: m.vm.disk_bytes,
        web: m.web.as_ref().map(|w| Process {
            name: "web".into(),
            run: w.run.clone(),
        }),
        port: m.web.as_ref().map(|w| w.port),
        health: m
            .web
            .as_ref()
            .and_then(|w| w.health.as_ref())
            .map(|h| Health {
                method: h.method.clone(),
                path: h.path.clone(),
                interval_ms: h.interval_ms,
                timeout_ms: h.timeout_ms,
            }),
        workers: m
            .workers
            .iter()
            .map(|w| Process {
                name: w.name.clone(),
                run: w.run.clone(),
            })
            .collect(),
        web_instances: m.web.as_ref().map_or(1, |w| w.instances),
        user: match m.user {
            spec::User::App => RunAs::App,
            spec::User::Root => RunAs::Root,
        },
        volumes: m
            .volumes
            .iter()
            .map(|v| Volume {
                name: v.name.clone(),
                path: v.path.clone(),
                size_bytes: v.size_bytes,
            })
            .collect(),
        release: m.release.as_ref().map(|r| r.run.clone()),
        database: m.database.map(|d| d.to_string()),
    }
    .normalize()
}

/// Split secrets into (needed at build time, runtime only).
fn secrets(list: &[spec::Secret]) -> (Vec<String>, Vec<String>) {
    let mut build = Vec::new();
    let mut runtime = Vec::new();
    for s in list {
        if s.at_build {
            build.push(s.name.clone());
        }
        runtime.push(s.name.clone());
    }
    (build, runtime)
}
