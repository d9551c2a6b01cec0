//! The manifest's `build` block, in order: `copy` places app files,
//! `workdir` moves later steps, `run` executes isolated
//! ([`crate::isolate`]) with the user namespace, network, limits, CA trust
//! and build cache that are set up (and logged) when the first `run` step
//! comes.

use crate::build::BuildRequest;
use crate::cache::{BuildCache, CACHE_ENV};
use crate::cgroup::{self, Hierarchy, Limits};
use crate::error::{BuildError, Result};
use crate::identity::Identity;
use crate::image;
use crate::isolate::{self, Egress, StepNetwork, StepRoot, StepRun, UserNs};
use crate::plan::{BuildPlan, Network, Step};
use crate::source::{self, SourceTree};
use std::collections::BTreeMap;
use std::path::Path;

/// What steps get besides the plan.
pub(crate) struct StepEnv<'a> {
    pub(crate) secrets: &'a BTreeMap<String, String>,
    pub(crate) ca_bundle: Option<&'a Path>,
    /// Whose build it is (keys the cache and the id range).
    pub(crate) owner: &'a Identity,
    /// How the rootfs is presented to steps.
    pub(crate) root: StepRoot<'a>,
}

/// Builder-side set-up shared by all `run` steps of a build, made (and
/// logged) when the first one runs.
struct StepSetup {
    hierarchy: Hierarchy,
    limits: Limits,
    cache: BuildCache,
    user: UserNs,
    egress: Option<Egress>,
}

fn step_setup(
    req: &BuildRequest<'_>,
    plan: &BuildPlan,
    env: &StepEnv<'_>,
    number: usize,
) -> Result<StepSetup> {
    let log = req.log;
    let limits = req.step_limits.unwrap_or(Limits {
        memory_bytes: plan.memory_bytes.max(1 << 30),
        pids: 4096,
        cpus: plan.cpus.max(1),
    });
    let hierarchy = cgroup::detect();
    log.line(&limits_line(&hierarchy, limits, req.step_timeout));
    log.line(&format!("-----> {}", req.ca_trust.describe(env.ca_bundle)));
    let cache_root = req
        .build_cache
        .clone()
        .unwrap_or_else(|| req.home.join("cache/build"));
    let pool = crate::ids::Pool::from_host()?;
    let ids = crate::ids::range_for(&cache_root, &env.owner.key(), pool)?;
    let user = UserNs::new(ids).map_err(|source| BuildError::Isolation {
        number,
        context: format!(
            "creating the user namespace for host ids {ids} (build steps run unprivileged; needs root and user namespaces)"
        ),
        source,
    })?;
    log.line(&format!(
        "-----> Build steps run as root of their own user namespace: host uids/gids {ids} (the app's), no capabilities outside it, seccomp, no new privileges"
    ));
    let egress = match plan.build_network {
        Network::Off => {
            log.line("-----> Build steps have no network (`build { network off }`)");
            None
        }
        Network::On => {
            let exceptions: Vec<String> =
                req.egress.allowed().iter().map(|a| a.to_string()).collect();
            log.line(&format!(
                "-----> Build steps reach the internet through BytePort's egress proxy ({}); not this host or its private networks{}",
                isolate::net::PROXY_URL,
                if exceptions.is_empty() {
                    String::new()
                } else {
                    format!(" (allowed besides: {})", exceptions.join(", "))
                }
            ));
            Some(
                Egress::start(req.egress.clone()).map_err(|source| BuildError::Isolation {
                    number,
                    context: "starting the egress proxy".into(),
                    source,
                })?,
            )
        }
    };
    let cache = BuildCache::open(&cache_root, env.owner, &plan.base, ids, log)?;
    log.line(&format!(
        "-----> Build cache {} (package caches stay out of the image)",
        cache.dir().display()
    ));
    Ok(StepSetup {
        hierarchy,
        limits,
        cache,
        user,
        egress,
    })
}

/// The build log's line about step limits on `hierarchy`.
fn limits_line(hierarchy: &Hierarchy, limits: Limits, timeout: std::time::Duration) -> String {
    match hierarchy {
        Hierarchy::Unsupported(why) => format!(
            "-----> warning: {why}; memory/pids/cpu limits are not enforced for build steps (only the {timeout:?} timeout is)"
        ),
        h => {
            let missing: Vec<&str> = h.missing().iter().map(|c| c.name()).collect();
            format!(
                "-----> Build steps limited by {}: {limits}, timeout {timeout:?}{}",
                h.label(),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(" (not limited, no controller: {})", missing.join(", "))
                }
            )
        }
    }
}

pub(crate) fn run_steps(
    req: &BuildRequest<'_>,
    tree: &SourceTree,
    plan: &BuildPlan,
    root: &Path,
    step_env: &StepEnv<'_>,
) -> Result<()> {
    let total = plan.steps.len();
    let mut workdir = "/".to_string();
    let mut env: BTreeMap<String, String> = CACHE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(plan.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(step_env.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut setup: Option<StepSetup> = None;
    let mut times_fixed = false;
    for (i, step) in plan.steps.iter().enumerate() {
        let number = i + 1;
        if req
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(BuildError::Cancelled { step: None });
        }
        match step {
            Step::Copy { from, to } => {
                let n = tree.place(from, to, root, number)?;
                req.log.line(&format!(
                    "-----> Step {number}/{total}: copy {from} {to} ({n} entries)"
                ));
            }
            Step::Workdir { path } => {
                source::dest_dir(root, path, true)
                    .map_err(|reason| BuildError::BadCopy { number, reason })?;
                workdir = path.clone();
                req.log
                    .line(&format!("-----> Step {number}/{total}: workdir {path}"));
            }
            Step::Run { command } => {
                if setup.is_none() {
                    setup = Some(step_setup(req, plan, step_env, number)?);
                }
                req.log
                    .line(&format!("-----> Step {number}/{total}: run {command}"));
                if std::fs::symlink_metadata(root.join("bin/sh")).is_err() {
                    return Err(BuildError::NoShell {
                        number,
                        command: command.clone(),
                        base: plan.base.to_string(),
                    });
                }
                if !times_fixed {
                    // Tools that embed source mtimes (.pyc, archives) see fixed ones.
                    image::normalize_times(root)?;
                    times_fixed = true;
                }
                let Some(setup) = setup.as_ref() else {
                    continue;
                };
                let run = StepRun {
                    number,
                    command,
                    rootfs: root,
                    workdir: &workdir,
                    env: &env,
                    timeout: req.step_timeout,
                    limits: setup.limits,
                    hierarchy: &setup.hierarchy,
                    ca_bundle: step_env.ca_bundle,
                    caches: setup.cache.mounts(),
                    user: &setup.user,
                    root: step_env.root,
                    network: match &setup.egress {
                        Some(e) => StepNetwork::Egress(e),
                        None => StepNetwork::Off,
                    },
                    cancel: req.cancel.as_deref(),
                };
                let outcome = isolate::run_step(&run, req.log)?;
                let usage = outcome.report.as_ref().map(usage).unwrap_or_default();
                req.log.line(&format!(
                    "-----> Step {number}/{total} done in {:.1}s{usage}",
                    outcome.elapsed.as_secs_f64()
                ));
            }
        }
    }
    Ok(())
}

/// What a step's cgroup saw, for its "done" line.
fn usage(r: &cgroup::GroupReport) -> String {
    let mut s = String::new();
    if let Some(peak) = r.memory_peak {
        s.push_str(&format!(", peak memory {} MiB", peak >> 20));
    }
    if r.pids_refused > 0 {
        s.push_str(&format!(
            ", {} forks refused at the {}-process limit",
            r.pids_refused,
            r.pids_limit.unwrap_or(0)
        ));
    }
    if r.cpu_throttled > 0 {
        s.push_str(&format!(", CPU-throttled in {} periods", r.cpu_throttled));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Controller;
    use std::time::Duration;

    #[test]
    fn the_limits_line_says_what_is_enforced_and_what_is_not() {
        let limits = Limits {
            memory_bytes: 1 << 30,
            pids: 4096,
            cpus: 1,
        };
        let t = Duration::from_secs(900);
        let none = limits_line(
            &Hierarchy::Unsupported("this host has no cgroups".into()),
            limits,
            t,
        );
        assert_eq!(
            none,
            "-----> warning: this host has no cgroups; memory/pids/cpu limits are not enforced for build steps (only the 900s timeout is)"
        );
        let v1 = Hierarchy::V1 {
            mounts: vec![
                (Controller::Memory, "/m".into()),
                (Controller::Cpu, "/c".into()),
            ],
        };
        assert_eq!(
            limits_line(&v1, limits, t),
            "-----> Build steps limited by cgroup v1: memory 1024 MiB, 4096 processes, 1 CPU, timeout 900s (not limited, no controller: pids)"
        );
        let v2 = Hierarchy::V2 {
            root: "/sys/fs/cgroup".into(),
            controllers: Controller::ALL.to_vec(),
        };
        assert!(limits_line(&v2, limits, t)
            .ends_with("by cgroup v2: memory 1024 MiB, 4096 processes, 1 CPU, timeout 900s"));
    }
}
