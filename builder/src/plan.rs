//! What to build: the builder's own, manifest-independent view of an app
//! (base, packages, ordered steps, env, limits, processes). It is derived from
//! a `manifest_spec::Manifest` and hashed into the artifact's input key.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The base layer of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BaseSpec {
    /// Nothing but the app files.
    Scratch,
    /// busybox-static and its applet links.
    Busybox,
    /// A Debian minbase of the given suite.
    Debian {
        /// Suite or codename, e.g. `bookworm`.
        suite: String,
    },
}

impl fmt::Display for BaseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseSpec::Scratch => f.write_str("scratch"),
            BaseSpec::Busybox => f.write_str("busybox"),
            BaseSpec::Debian { suite } => write!(f, "debian:{suite}"),
        }
    }
}

/// Outbound network of build steps or of the running app: the internet
/// only ([`egress`]), or nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The internet (never this host or its private networks); the default.
    #[default]
    On,
    /// No outbound connections.
    Off,
}

impl Network {
    /// Whether it is [`Network::On`].
    pub fn is_on(&self) -> bool {
        *self == Network::On
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_on() { "on" } else { "off" })
    }
}

/// Who the app's processes run as (`user` in the manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// The unprivileged `app` user (uid/gid [`APP_UID`]), who gets the
    /// app's directory (the default).
    #[default]
    App,
    /// Root of the VM (`user root`).
    Root,
}

/// uid and gid of the `app` user in every image.
pub const APP_UID: u32 = 1000;

impl RunAs {
    /// Whether it is [`RunAs::App`].
    pub fn is_app(&self) -> bool {
        *self == RunAs::App
    }

    /// (name, uid, gid).
    pub fn ids(&self) -> (&'static str, u32, u32) {
        match self {
            RunAs::App => ("app", APP_UID, APP_UID),
            RunAs::Root => ("root", 0, 0),
        }
    }
}

/// A persistent volume the app mounts (`volume NAME /PATH SIZE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Name, unique in the app.
    pub name: String,
    /// Absolute mount path in the VM.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// One step of the `build` block, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    /// Copy `from` (a path in the repository tree) to `to` (absolute in the rootfs).
    Copy {
        /// Source path in the tree (`.` for all of it).
        from: String,
        /// Absolute destination in the image.
        to: String,
    },
    /// Set the working directory of later steps and of the app's processes.
    Workdir {
        /// Absolute path in the image.
        path: String,
    },
    /// Run a shell command inside the rootfs, isolated.
    Run {
        /// The command line given to `/bin/sh -c`.
        command: String,
    },
}

/// A long-running process of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// `web` or the worker's name.
    pub name: String,
    /// Command line (run with `/bin/sh -c` when the image has a shell).
    pub run: String,
}

/// HTTP health check of the web process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Interval between checks, in milliseconds.
    pub interval_ms: u64,
    /// Timeout of one check, in milliseconds.
    pub timeout_ms: u64,
}

/// Everything the builder needs to know about an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// App name.
    pub app: String,
    /// Base layer.
    pub base: BaseSpec,
    /// Extra packages for the base (sorted, deduplicated).
    pub packages: Vec<String>,
    /// Build steps in order.
    pub steps: Vec<Step>,
    /// Network of `run` steps (`build { network off }`). Left out of the
    /// serialized plan when on, so plans without the setting hash (and
    /// artifacts key) as they did before it existed.
    #[serde(skip_serializing_if = "Network::is_on")]
    pub build_network: Network,
    /// Network of the running app (`vm { network off }`), for the runtime.
    #[serde(skip_serializing_if = "Network::is_on")]
    pub run_network: Network,
    /// Environment of build steps and processes.
    pub env: BTreeMap<String, String>,
    /// Names of secrets whose values are given to build steps.
    pub build_secrets: Vec<String>,
    /// Names of secrets given to the running app (values never enter the artifact).
    pub runtime_secrets: Vec<String>,
    /// vCPUs of the VM.
    pub cpus: u32,
    /// Memory of the VM in bytes.
    pub memory_bytes: u64,
    /// Cap on the rootfs image size in bytes.
    pub disk_bytes: u64,
    /// The web process, if any.
    pub web: Option<Process>,
    /// Port the web process listens on.
    pub port: Option<u16>,
    /// Health check of the web process.
    pub health: Option<Health>,
    /// Worker processes.
    pub workers: Vec<Process>,
    /// Instances of the web process (`instances N`). Left out of the
    /// serialized plan when 1, like every setting below at its default, so
    /// plans without them hash as they did before they existed.
    #[serde(skip_serializing_if = "is_one")]
    pub web_instances: u32,
    /// Who the processes run as.
    #[serde(skip_serializing_if = "RunAs::is_app")]
    pub user: RunAs,
    /// Persistent volumes, in manifest order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The release command (`release { run ... }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The managed database the app asks for (`database postgres`: `postgres`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl BuildPlan {
    /// A plan with no steps and defaults (1 vCPU, 256 MiB, 1 GiB disk), for tests and tools.
    pub fn new(app: &str, base: BaseSpec) -> Self {
        BuildPlan {
            app: app.to_string(),
            base,
            packages: Vec::new(),
            steps: Vec::new(),
            build_network: Network::On,
            run_network: Network::On,
            env: BTreeMap::new(),
            build_secrets: Vec::new(),
            runtime_secrets: Vec::new(),
            cpus: 1,
            memory_bytes: 256 << 20,
            disk_bytes: 1 << 30,
            web: None,
            port: None,
            health: None,
            workers: Vec::new(),
            web_instances: 1,
            user: RunAs::App,
            volumes: Vec::new(),
            release: None,
            database: None,
        }
    }

    /// Sort and deduplicate `packages` (the base cache key depends on it).
    pub fn normalize(mut self) -> Self {
        self.packages.sort();
        self.packages.dedup();
        self
    }

    /// The working directory after all steps (where the app's processes start).
    pub fn final_workdir(&self) -> String {
        self.steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Workdir { path } => Some(path.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "/".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_sorts_and_dedups_packages() {
        let mut p = BuildPlan::new(
            "a",
            BaseSpec::Debian {
                suite: "bookworm".into(),
            },
        );
        p.packages = vec!["b".into(), "a".into(), "b".into()];
        assert_eq!(p.normalize().packages, vec!["a", "b"]);
    }

    #[test]
    fn final_workdir_is_last_workdir_step() {
        let mut p = BuildPlan::new("a", BaseSpec::Scratch);
        assert_eq!(p.final_workdir(), "/");
        p.steps = vec![
            Step::Workdir { path: "/x".into() },
            Step::Run {
                command: "true".into(),
            },
            Step::Workdir {
                path: "/app".into(),
            },
        ];
        assert_eq!(p.final_workdir(), "/app");
        assert_eq!(
            BaseSpec::Debian {
                suite: "sid".into()
            }
            .to_string(),
            "debian:sid"
        );
    }
}
