//! The typed, validated and normalized manifest that builder and runtime
//! consume. Sizes are bytes, durations milliseconds, defaults filled in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated `Byteport` manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The app's name: a DNS label (`app hello`).
    pub app: String,
    /// The root filesystem the app is built on (`from ...`).
    pub base: Base,
    /// Debian packages installed into the base (`packages ...`), in order.
    pub packages: Vec<String>,
    /// Build steps in order. Without a `build` block this is
    /// `copy . /app` + `workdir /app` (with `line` 0).
    pub build: Vec<BuildStep>,
    /// Whether `run` build steps may reach the internet (`network` in the
    /// `build` block; default on).
    #[serde(default)]
    pub build_network: Network,
    /// Plain environment variables for build steps and processes.
    pub env: BTreeMap<String, String>,
    /// Secrets the app expects; their values are set with the CLI.
    pub secrets: Vec<Secret>,
    /// VM resources, defaults filled in.
    pub vm: VmResources,
    /// Who the processes run as (`user`; default [`User::App`]).
    #[serde(default)]
    pub user: User,
    /// Persistent volumes (`volume NAME /PATH SIZE`), in source order.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// The process that serves HTTP, if any.
    pub web: Option<WebProcess>,
    /// Non-web processes, in order.
    pub workers: Vec<Worker>,
    /// The release command (`release { run ... }`), run once per deploy
    /// before the switch.
    #[serde(default)]
    pub release: Option<Release>,
    /// A managed database for the app (`database postgres`).
    #[serde(default)]
    pub database: Option<Database>,
    /// Custom domains routed to the web process, lowercased.
    pub domains: Vec<String>,
    /// Portfolio page settings, when the app asks for one.
    pub portfolio: Option<Portfolio>,
}

/// The base layer of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Base {
    /// An empty filesystem: the app brings a static binary.
    Scratch,
    /// A busybox userland (shell, httpd, coreutils); no package manager.
    Busybox,
    /// A Debian root filesystem of the given suite, plus `packages`.
    Debian {
        /// The Debian suite, e.g. `bookworm`.
        suite: String,
    },
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Scratch => f.write_str("scratch"),
            Base::Busybox => f.write_str("busybox"),
            Base::Debian { suite } => write!(f, "debian:{suite}"),
        }
    }
}

/// One step of the `build` block. `line` is the 1-based source line (0 for
/// defaults the validator filled in); match with `..` to ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "lowercase")]
pub enum BuildStep {
    /// Copy a path of the repository (relative) to an absolute path in the
    /// root filesystem.
    Copy {
        /// Source path, relative to the repository root (`.` = all of it).
        from: String,
        /// Absolute destination path in the root filesystem.
        to: String,
        /// Source line.
        line: usize,
    },
    /// Set the working directory for later steps and for the processes.
    Workdir {
        /// Absolute path in the root filesystem.
        path: String,
        /// Source line.
        line: usize,
    },
    /// Run a shell command (`/bin/sh -c`) inside the root filesystem.
    Run {
        /// The command line.
        command: String,
        /// Source line.
        line: usize,
    },
}

/// A secret the app needs. Values never live in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Variable name, `[A-Z_][A-Z0-9_]*`.
    pub name: String,
    /// Also exposed to build steps (`secret NAME build`), not only at run time.
    pub at_build: bool,
}

/// VM resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmResources {
    /// Virtual CPUs, 1..=32 (default 1).
    pub cpus: u32,
    /// Guest memory in bytes (default 256 MiB).
    pub memory_bytes: u64,
    /// Root disk size in bytes (default 1 GiB).
    pub disk_bytes: u64,
    /// Whether the running app may open connections to the internet
    /// (`network` in the `vm` block; default on). Inbound traffic from
    /// BytePort's router reaches the web process either way.
    #[serde(default)]
    pub network: Network,
}

/// Outbound network access (`network on|off`). "On" means the internet
/// only: never the host, its private networks or other apps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Connections to the internet are allowed (default).
    #[default]
    On,
    /// No outbound connections at all.
    Off,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::On => "on",
            Network::Off => "off",
        })
    }
}

/// The HTTP-serving process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebProcess {
    /// Shell command that starts it.
    pub run: String,
    /// TCP port it listens on inside the VM (also exported as `PORT`).
    pub port: u16,
    /// HTTP health check, if declared.
    pub health: Option<HealthCheck>,
    /// How many VMs of the deploy serve it (`instances N`, 1..=16; default 1).
    #[serde(default = "one")]
    pub instances: u32,
}

fn one() -> u32 {
    1
}

/// Who the app's processes run as inside the VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum User {
    /// The unprivileged user `app` (uid 1000, gid 1000), who owns the app's
    /// directory and its volumes (default).
    #[default]
    App,
    /// Root of the VM (`user root`): see SPEC.md for what that gives up.
    Root,
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            User::App => "app",
            User::Root => "root",
        })
    }
}

/// A persistent volume: an ext4 filesystem that outlives deploys, mounted
/// into the VM before the processes start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Name, a DNS label of at most 32 characters, unique in the app.
    pub name: String,
    /// Absolute mount path in the VM (normalized: no trailing `/`).
    pub path: String,
    /// Size in bytes (a whole number of MiB, 16 MiB..=1 TiB).
    pub size_bytes: u64,
}

/// The release phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Shell command run in a one-off VM of the new build.
    pub run: String,
}

/// A database BytePort provisions and manages for the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// PostgreSQL; the app gets `DATABASE_URL`.
    Postgres,
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Database::Postgres => "postgres",
        })
    }
}

/// An HTTP health check against the web process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `GET` or `HEAD`.
    pub method: String,
    /// Request path, starting with `/`.
    pub path: String,
    /// Time between checks.
    pub interval_ms: u64,
    /// Time a check may take before it counts as failed (≤ interval).
    pub timeout_ms: u64,
}

/// A non-web process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Name, a DNS label, unique among workers (default `worker`).
    pub name: String,
    /// Shell command that starts it.
    pub run: String,
}

/// Portfolio page settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portfolio {
    /// Page title (default: the app name).
    pub title: String,
    /// Lowercase tags.
    pub tags: Vec<String>,
    /// What to screenshot; `None` for an app without a web process.
    pub screenshot: Option<Screenshot>,
    /// Where the description comes from.
    pub description: Description,
    /// What happens to a new draft.
    pub publish: Publish,
}

/// Which page of the live app to screenshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screenshot {
    /// Path on the app, starting with `/` (default `/`).
    pub path: String,
    /// Time to wait after load before the shot (default 1 s).
    pub wait_ms: u64,
}

/// Source of the portfolio description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Description {
    /// Drafted automatically (LLM, or offline from README + manifest).
    Auto,
    /// Written by the owner in the manifest.
    Text(String),
    /// No write-up at all: the page has the title, screenshots and facts,
    /// and nothing about the project is sent to a language model.
    Off,
}

/// Publication policy of portfolio drafts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// Drafts wait for the owner's approval in the dashboard (default).
    Review,
    /// Drafts are published without review.
    Auto,
    /// No portfolio page is produced.
    Off,
}

impl Manifest {
    /// One line for the push log, e.g.
    /// `hello: Byteport manifest OK (from debian:bookworm, 1 vCPU, 256M)`.
    pub fn summary(&self) -> String {
        let s = if self.vm.cpus == 1 { "" } else { "s" };
        format!(
            "{}: Byteport manifest OK (from {}, {} vCPU{s}, {})",
            self.app,
            self.base,
            self.vm.cpus,
            format_size(self.vm.memory_bytes)
        )
    }

    /// The working directory of the processes: the last `workdir` of the
    /// build, or `/` when there is none.
    pub fn workdir(&self) -> &str {
        self.build
            .iter()
            .rev()
            .find_map(|s| match s {
                BuildStep::Workdir { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .unwrap_or("/")
    }
}

/// Formats a byte count with the largest exact unit: `1G`, `256M`, `4K`, `10`.
pub fn format_size(bytes: u64) -> String {
    const K: u64 = 1024;
    for (unit, size) in [("G", K * K * K), ("M", K * K), ("K", K)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_with_the_largest_exact_unit() {
        assert_eq!(format_size(256 << 20), "256M");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536 << 20), "1536M");
        assert_eq!(format_size(4096), "4K");
        assert_eq!(format_size(100), "100");
    }

    #[test]
    fn base_serializes_tagged() {
        let b = Base::Debian {
            suite: "bookworm".into(),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"kind":"debian","suite":"bookworm"}"#
        );
        assert_eq!(b.to_string(), "debian:bookworm");
        let d: Description = serde_json::from_str(r#"{"text":"hi"}"#).unwrap();
        assert_eq!(d, Description::Text("hi".into()));
    }
}
