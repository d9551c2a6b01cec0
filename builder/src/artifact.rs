//! The artifact: `<home>/artifacts/<digest>/{rootfs.ext4, descriptor.json}`,
//! where the digest is the SHA-256 of the descriptor (which holds the rootfs
//! digest). An index `<home>/artifacts/by-input/<input key>` maps the hash of
//! every build input to the digest, so an identical input is not rebuilt.

use crate::error::{IoContext, Result};
use crate::plan::{BuildPlan, Health, Network, RunAs};
use crate::setup::KernelInfo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the artifact layout; part of every input key.
pub const FORMAT: u32 = 1;
/// Version of how images are assembled (what ends up inside for the same
/// inputs); part of every input key, so a change never serves an artifact
/// built the old way. 2: package caches kept out of the image. 3: the app's
/// directory belongs to the user its processes run as.
pub const ASSEMBLY: u32 = 3;
/// Kernel command line of every artifact.
pub const CMDLINE: &str = "console=ttyS0 reboot=k panic=-1 quiet root=/dev/vda rw rootfstype=ext4";
/// File name of the root filesystem inside an artifact directory.
pub const ROOTFS_FILE: &str = "rootfs.ext4";
/// File name of the descriptor inside an artifact directory.
pub const DESCRIPTOR_FILE: &str = "descriptor.json";

/// The kernel an artifact boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRef {
    /// Kernel version.
    pub version: String,
    /// Path of the kernel image.
    pub image: PathBuf,
    /// Modules directory to put in the initramfs.
    pub modules_dir: Option<PathBuf>,
}

/// The root filesystem image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsRef {
    /// File name inside the artifact directory.
    pub file: String,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Image size in bytes.
    pub size: u64,
}

/// A process to start in the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// `web` or the worker's name.
    pub name: String,
    /// `web` or `worker`.
    pub kind: String,
    /// Command line.
    pub run: String,
    /// How many VMs of the deploy run it (`instances N` of `web`; absent
    /// means 1, so descriptors without it are what they were).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub instances: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A persistent volume the app mounts: the platform keeps one image per
/// app and name, the runtime attaches and mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// Name, unique in the app.
    pub name: String,
    /// Absolute mount path in the VM.
    pub path: String,
    /// Size in bytes (the image grows to it; it never shrinks).
    pub size_bytes: u64,
}

/// The release phase: a command run once per deploy, before the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    /// Command line (as for processes).
    pub run: String,
}

/// A managed database the app asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    /// `postgres`.
    pub engine: String,
}

/// HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Interval (ms).
    pub interval_ms: u64,
    /// Timeout (ms).
    pub timeout_ms: u64,
}

/// The user app processes run as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// Name (present in the image's /etc/passwd for busybox and debian bases).
    pub name: String,
    /// Numeric uid.
    pub uid: u32,
    /// Numeric gid.
    pub gid: u32,
}

/// VM resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// vCPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk cap in bytes.
    pub disk_bytes: u64,
    /// Outbound network of the running app (`vm { network off }`): `on`
    /// (the internet only) or `off`. Absent means on, so descriptors of
    /// apps without the setting are byte-for-byte what they were.
    #[serde(default, skip_serializing_if = "Network::is_on")]
    pub network: Network,
}

/// Everything the runtime needs to boot an artifact (`descriptor.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Layout version.
    pub format: u32,
    /// App name.
    pub app: String,
    /// Base the image was built from.
    pub base: String,
    /// Guest kernel (`null` when none was registered at build time).
    pub kernel: Option<KernelRef>,
    /// Kernel command line.
    pub cmdline: String,
    /// Root filesystem.
    pub rootfs: RootfsRef,
    /// Processes to run.
    pub processes: Vec<ProcessSpec>,
    /// Port of the web process.
    pub port: Option<u16>,
    /// Health check of the web process.
    pub health: Option<HealthSpec>,
    /// Environment of the processes.
    pub env: BTreeMap<String, String>,
    /// Secrets the runtime injects by name (values are never stored here).
    pub secrets: Vec<String>,
    /// Working directory of the processes.
    pub workdir: String,
    /// User of the processes (`app`, 1000:1000, who owns the working
    /// directory; or `root`, 0:0, with `user root`).
    pub user: UserSpec,
    /// VM resources.
    pub vm: VmSpec,
    /// Persistent volumes (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// The release command (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseSpec>,
    /// The managed database (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
}

impl Descriptor {
    /// Describe an image built from `plan`.
    pub fn new(plan: &BuildPlan, kernel: Option<&KernelInfo>, rootfs: RootfsRef) -> Descriptor {
        let mut processes = Vec::new();
        if let Some(w) = &plan.web {
            processes.push(ProcessSpec {
                name: "web".into(),
                kind: "web".into(),
                run: w.run.clone(),
                instances: plan.web_instances,
            });
        }
        for w in &plan.workers {
            processes.push(ProcessSpec {
                name: w.name.clone(),
                kind: "worker".into(),
                run: w.run.clone(),
                instances: 1,
            });
        }
        Descriptor {
            format: FORMAT,
            app: plan.app.clone(),
            base: plan.base.to_string(),
            kernel: kernel.map(|k| KernelRef {
                version: k.version.clone(),
                image: k.image.clone(),
                modules_dir: k.modules_dir.clone(),
            }),
            cmdline: CMDLINE.to_string(),
            rootfs,
            processes,
            port: plan.port,
            health: plan.health.as_ref().map(
                |Health {
                     method,
                     path,
                     interval_ms,
                     timeout_ms,
                 }| HealthSpec {
                    method: method.clone(),
                    path: path.clone(),
                    interval_ms: *interval_ms,
                    timeout_ms: *timeout_ms,
                },
            ),
            env: plan.env.clone(),
            secrets: plan.runtime_secrets.clone(),
            workdir: plan.final_workdir(),
            user: user_spec(plan.user),
            vm: VmSpec {
                cpus: plan.cpus,
                memory_bytes: plan.memory_bytes,
                disk_bytes: plan.disk_bytes,
                network: plan.run_network,
            },
            volumes: plan
                .volumes
                .iter()
                .map(|v| VolumeSpec {
                    name: v.name.clone(),
                    path: v.path.clone(),
                    size_bytes: v.size_bytes,
                })
                .collect(),
            release: plan
                .release
                .as_ref()
                .map(|run| ReleaseSpec { run: run.clone() }),
            database: plan.database.as_ref().map(|engine| DatabaseSpec {
                engine: engine.clone(),
            }),
        }
    }

    /// Canonical JSON (stable field order, sorted maps).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The artifact digest: SHA-256 of the canonical JSON.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.to_json()))
    }
}

/// The descriptor's user for `run_as`.
fn user_spec(run_as: RunAs) -> UserSpec {
    let (name, uid, gid) = run_as.ids();
    UserSpec {
        name: name.into(),
        uid,
        gid,
    }
}

/// Paths of the artifact store under `<home>/artifacts`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of `home`, created if missing.
    pub fn open(home: &Path) -> Result<Store> {
        let root = home.join("artifacts");
        std::fs::create_dir_all(root.join("by-input")).ctx("creating artifact store", &root)?;
        sweep_stale(&root, ".tmp-build-", STALE_AFTER);
        Ok(Store { root })
    }

    /// Root directory of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of an artifact.
    pub fn dir(&self, digest: &str) -> PathBuf {
        self.root.join(digest)
    }

    /// The artifact already built from `input_key`, if complete.
    pub fn lookup(&self, input_key: &str) -> Option<(String, Descriptor)> {
        let digest = std::fs::read_to_string(self.root.join("by-input").join(input_key)).ok()?;
        let digest = digest.trim().to_string();
        let dir = self.dir(&digest);
        let desc: Descriptor =
            serde_json::from_slice(&std::fs::read(dir.join(DESCRIPTOR_FILE)).ok()?).ok()?;
        let size = std::fs::metadata(dir.join(ROOTFS_FILE)).ok()?.len();
        (size == desc.rootfs.size && desc.digest() == digest).then_some((digest, desc))
    }

    /// Move a finished artifact directory into place (atomic rename) and
    /// record `input_key → digest`.
    pub fn commit(&self, tmp_dir: &Path, digest: &str, input_key: &str) -> Result<PathBuf> {
        let dest = self.dir(digest);
        if dest.is_dir() {
            std::fs::remove_dir_all(tmp_dir).ctx("removing duplicate build", tmp_dir)?;
        } else {
            std::fs::rename(tmp_dir, &dest).ctx("moving artifact into place", &dest)?;
        }
        let index = self.root.join("by-input").join(input_key);
        let tmp = self.root.join("by-input").join(format!(".{input_key}.tmp"));
        std::fs::write(&tmp, digest).ctx("writing index", &tmp)?;
        std::fs::rename(&tmp, &index).ctx("writing index", &index)?;
        Ok(dest)
    }
}

/// Age after which a temp build directory is left over from a killed builder.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Remove `prefix*` directories under `dir` untouched for `age` (left by a
/// builder that was killed before it could clean up).
pub(crate) fn sweep_stale(dir: &Path, prefix: &str, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if old && e.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Hash of everything that determines an artifact.
pub fn input_key(
    plan: &BuildPlan,
    source_identity: &str,
    build_secrets: &BTreeMap<String, String>,
    kernel: Option<&KernelInfo>,
) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "byteport-artifact-v{FORMAT}-a{ASSEMBLY}\n{CMDLINE}\n{source_identity}\n"
    ));
    h.update(serde_json::to_vec(plan).unwrap_or_default());
    for (k, v) in build_secrets {
        h.update(format!(
            "\nsecret {k} {}",
            hex::encode(Sha256::digest(v.as_bytes()))
        ));
    }
    if let Some(k) = kernel {
        h.update(serde_json::to_vec(k).unwrap_or_default());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{BaseSpec, Process};

    #[test]
    fn stale_temp_dirs_are_swept_fresh_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join(".tmp-build-old");
        let fresh = d.path().join(".tmp-build-fresh");
        std::fs::create_dir(&old).unwrap();
        std::fs::create_dir(&fresh).unwrap();
        let t = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_file_mtime(&old, t).unwrap();
        sweep_stale(d.path(), ".tmp-build-", STALE_AFTER);
        assert!(!old.exists() && fresh.exists());
    }

    #[test]
    fn network_settings_appear_only_when_off_so_old_digests_hold() {
        let plan = BuildPlan::new("a", BaseSpec::Busybox);
        let r = RootfsRef {
            file: ROOTFS_FILE.into(),
            sha256: "00".into(),
            size: 1,
        };
        let d = Descriptor::new(&plan, None, r.clone());
        let json = String::from_utf8(d.to_json()).unwrap();
        assert!(!json.contains("network"), "{json}");
        assert!(!serde_json::to_string(&plan).unwrap().contains("network"));
        let back: Descriptor = serde_json::from_str(&json).unwrap();
        assert_eq!(back.vm.network, Network::On);
        let mut off = plan.clone();
        off.run_network = Network::Off;
        off.build_network = Network::Off;
        let d = Descriptor::new(&off, None, r);
        assert!(String::from_utf8(d.to_json())
            .unwrap()
            .contains("\"network\": \"off\""));
        let none = BTreeMap::new();
        assert_ne!(
            input_key(&plan, "t", &none, None),
            input_key(&off, "t", &none, None)
        );
    }

    #[test]
    fn digest_is_stable_and_key_tracks_inputs() {
        let mut plan = BuildPlan::new("a", BaseSpec::Busybox);
        plan.web = Some(Process {
            name: "web".into(),
            run: "httpd -f".into(),
        });
        plan.port = Some(8080);
        let r = RootfsRef {
            file: ROOTFS_FILE.into(),
            sha256: "00".into(),
            size: 1,
        };
        let d = Descriptor::new(&plan, None, r);
        assert_eq!(d.digest(), d.clone().digest());
        assert_eq!(d.processes[0].kind, "web");
        let none = BTreeMap::new();
        let k1 = input_key(&plan, "git-tree:1", &none, None);
        assert_eq!(k1, input_key(&plan, "git-tree:1", &none, None));
        assert_ne!(k1, input_key(&plan, "git-tree:2", &none, None));
        let s = BTreeMap::from([("TOKEN".to_string(), "x".to_string())]);
        assert_ne!(k1, input_key(&plan, "git-tree:1", &s, None));
    }
}
