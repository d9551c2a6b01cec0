//! An app's volumes as its owner manages them: list, back up, restore,
//! destroy (Fly.io's `volumes`, Dokku's storage).
//!
//! A backup is consistent because no VM has the volume mounted while it is
//! copied: a running app is drained and stopped first, and booted again on
//! its live deploy afterwards (the router says "deploying" meanwhile) — a
//! short, told gap, as for a deploy of an app with volumes. Each action is
//! a job, so it never overlaps a deploy of the same app.
//!
//! Backups made over SSH stay on the host, under
//! `$BYTEPORT_HOME/backups/<app>/`, named by volume and time; the operator's
//! CLI may also give a file path on the host.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::apps::Platform;
use crate::boot::stop_vms;
use crate::jobs::run::JobCtx;
use crate::jobs::JobError;

/// What a volume job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum VolumeAction {
    /// Copy the volume to a backup.
    Backup {
        /// The volume.
        name: String,
        /// A file on the host (the operator's); `None`: a new backup under
        /// the app's backups directory.
        to: Option<PathBuf>,
    },
    /// Replace the volume with a backup.
    Restore {
        /// The volume.
        name: String,
        /// A backup's name (see `volumes APP`) or, from the operator, a
        /// file on the host.
        from: String,
    },
    /// Delete the volume and its data.
    Destroy {
        /// The volume.
        name: String,
    },
}

/// One volume as `volumes APP` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Where the live deploy mounts it (`None`: no longer in the manifest).
    pub mount: Option<String>,
    /// Its filesystem's size.
    pub bytes: u64,
    /// What it takes on the host's disk.
    pub on_disk: u64,
}

/// A backup kept under the app's backups directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupInfo {
    /// Its name (what `volumes restore` takes).
    pub name: String,
    /// Its size on disk.
    pub on_disk: u64,
}

/// A file name with no path in it (what SSH users may name).
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

/// Now as `20261202-140000` (UTC), for backup names.
pub(crate) fn stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    // 2026-12-02 14:00:00 → 20261202-140000
    crate::time::fmt_time(now)
        .replace(' ', "-")
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .collect::<String>()
        .replacen('-', "", 2)
}

fn on_disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

impl Platform {
    fn backups_dir(&self, app: &str) -> PathBuf {
        self.home.join("backups").join(app)
    }

    /// The live deploy's volumes (from its artifact), by name.
    async fn live_volumes(
        &self,
        app: &str,
    ) -> Result<Vec<builder::artifact::VolumeSpec>, JobError> {
        let Some(live) = self.store.live_deploy(app).await? else {
            return Ok(Vec::new());
        };
        let Some(digest) = live.artifact else {
            return Ok(Vec::new());
        };
        Ok(self.artifact(&digest)?.0.volumes)
    }

    /// The app's volume images and backups.
    pub async fn volume_list(
        &self,
        app: &str,
    ) -> Result<(Vec<VolumeInfo>, Vec<BackupInfo>), JobError> {
        let declared = self.live_volumes(app).await?;
        let mut volumes = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.home.join("volumes").join(app)) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let Some(name) = file.strip_suffix(".ext4") else {
                    continue;
                };
                let bytes = runtime::volume::inspect(name, &e.path())
                    .map(|sb| sb.bytes)
                    .unwrap_or(0);
                volumes.push(VolumeInfo {
                    name: name.to_string(),
                    mount: declared
                        .iter()
                        .find(|v| v.name == name)
                        .map(|v| v.path.clone()),
                    bytes,
                    on_disk: on_disk(&e.path()),
                });
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut backups: Vec<BackupInfo> = std::fs::read_dir(self.backups_dir(app))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().contains(".partial-"))
            .map(|e| BackupInfo {
                name: e.file_name().to_string_lossy().into_owned(),
                on_disk: on_disk(&e.path()),
            })
            .collect();
        backups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((volumes, backups))
    }

    /// Runs a volume job: the app's VM (if it has the volume) is stopped
    /// for the action and booted again after it, whatever its outcome.
    pub(crate) async fn volume_job(
        &self,
        ctx: &JobCtx,
        action: &VolumeAction,
    ) -> Result<(), JobError> {
        let app = ctx.app.as_str();
        self.store.require_app(app).await?;
        let name = match action {
            VolumeAction::Backup { name, .. }
            | VolumeAction::Restore { name, .. }
            | VolumeAction::Destroy { name } => name.as_str(),
        };
        if !is_plain_name(name) {
            return Err(JobError::Rejected {
                message: format!("`{}` is not a volume name", name.escape_default()),
            });
        }
        let image = self.volume_image(app, name);
        let declared = self.live_volumes(app).await?;
        let spec = declared.iter().find(|v| v.name == name);
        if !image.exists() && !matches!(action, VolumeAction::Restore { .. }) {
            return Err(JobError::Rejected {
                message: format!("{app} has no volume `{name}` (see `volumes {app}`)"),
            });
        }
        if matches!(action, VolumeAction::Destroy { .. }) && spec.is_some() {
            return Err(JobError::Rejected {
                message: format!(
                    "volume `{name}` is in {app}'s live manifest; remove the `volume {name}` line and deploy, or destroy the app"
                ),
            });
        }
        let volume = runtime::Volume {
            name: name.to_string(),
            image: image.clone(),
            mount: spec.map(|v| v.path.clone()).unwrap_or_else(|| "/".into()),
            size_bytes: match (spec, runtime::volume::inspect(name, &image)) {
                (Some(v), _) => v.size_bytes,
                (None, Ok(sb)) => sb.bytes,
                (None, Err(_)) => 0,
            },
        };
        let source = match action {
            VolumeAction::Restore { from, .. } => Some(self.backup_source(app, from)?),
            _ => None,
        };
        if matches!(action, VolumeAction::Restore { .. }) && spec.is_none() {
            return Err(JobError::Rejected {
                message: format!(
                    "volume `{name}` is not in {app}'s live manifest; add it (`volume {name} PATH SIZE`) and deploy before restoring into it"
                ),
            });
        }
        if let Some(source) = &source {
            // Refused before the app is stopped for it.
            let sb = runtime::volume::inspect(name, source).map_err(|_| JobError::Rejected {
                message: format!(
                    "{} holds no ext4 filesystem: it is not a volume backup",
                    source.display()
                ),
            })?;
            if sb.bytes > volume.size_bytes {
                return Err(JobError::Rejected {
                    message: format!(
                        "the backup is {} MiB, larger than volume `{name}` ({} MiB); raise the volume's size in the manifest and deploy first",
                        sb.bytes >> 20,
                        volume.size_bytes >> 20
                    ),
                });
            }
        }
        ctx.control.commit()?;

        // The VM lets go of the volume; it is booted again afterwards.
        let serving = self.running().remove(app);
        let stopped = match serving {
            Some(old) if spec.is_some() => {
                ctx.mark_took_down_live();
                ctx.say(&format!(
                    "-----> Stopping {app} (deploy #{}): volume `{name}` is copied while no VM has it",
                    old.deploy()
                ));
                for u in self.routes.mark_deploying(
                    app,
                    &old.domains,
                    crate::boot::DEPLOYING_RETRY_AFTER,
                ) {
                    u.drain(crate::apps::DRAIN).await;
                }
                stop_vms(old.vms, crate::apps::STOP_GRACE, &self.events).await;
                true
            }
            Some(other) => {
                self.running().insert(app.to_string(), other);
                false
            }
            None => false,
        };
        let result = self.volume_action(ctx, action, &volume, source).await;
        if stopped {
            let live = self.require_live(app).await?;
            ctx.say(&format!(
                "-----> Starting {app} (deploy #{}) again ...",
                live.number
            ));
            self.boot_and_switch(ctx, &live, 0).await?;
            ctx.say(&format!("-----> {app} is back: {}", self.app_url(app)));
        }
        result
    }

    fn backup_source(&self, app: &str, from: &str) -> Result<PathBuf, JobError> {
        let path = if from.starts_with('/') {
            PathBuf::from(from)
        } else if is_plain_name(from) {
            self.backups_dir(app).join(from)
        } else {
            return Err(JobError::Rejected {
                message: format!(
                    "`{}` is neither a backup of {app} (see `volumes {app}`) nor an absolute path",
                    from.escape_default()
                ),
            });
        };
        if !path.is_file() {
            return Err(JobError::Rejected {
                message: format!("no backup at {} (see `volumes {app}`)", path.display()),
            });
        }
        Ok(path)
    }

    async fn volume_action(
        &self,
        ctx: &JobCtx,
        action: &VolumeAction,
        volume: &runtime::Volume,
        source: Option<PathBuf>,
    ) -> Result<(), JobError> {
        let app = ctx.app.clone();
        let name = volume.name.clone();
        let failed = |e: String| JobError::Rejected { message: e };
        match action {
            VolumeAction::Backup { to, .. } => {
                let dest = match to {
                    Some(p) => p.clone(),
                    None => {
                        let dir = self.backups_dir(&app);
                        std::fs::create_dir_all(&dir).map_err(|e| JobError::Internal {
                            message: format!("cannot create {}: {e}", dir.display()),
                        })?;
                        let stamp = stamp();
                        dir.join(format!("{name}-{stamp}.ext4"))
                    }
                };
                let (v, d) = (volume.clone(), dest.clone());
                let bytes = tokio::task::spawn_blocking(move || runtime::volume::backup(&v, &d))
                    .await
                    .map_err(|e| JobError::Internal {
                        message: e.to_string(),
                    })?
                    .map_err(|e| failed(e.to_string()))?;
                ctx.say(&format!(
                    "-----> Backed up volume `{name}` ({} MiB filesystem, {} MiB on disk) to {}",
                    bytes >> 20,
                    on_disk(&dest) >> 20,
                    if to.is_some() {
                        dest.display().to_string()
                    } else {
                        dest.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                    }
                ));
                ctx.note(&format!("volume `{name}` backed up"));
            }
            VolumeAction::Restore { from, .. } => {
                let (v, s) = (volume.clone(), source.unwrap_or_default());
                tokio::task::spawn_blocking(move || runtime::volume::restore(&v, &s))
                    .await
                    .map_err(|e| JobError::Internal {
                        message: e.to_string(),
                    })?
                    .map_err(|e| failed(e.to_string()))?;
                ctx.say(&format!("-----> Restored volume `{name}` from {from}"));
                ctx.note(&format!("volume `{name}` restored from a backup"));
            }
            VolumeAction::Destroy { .. } => {
                for path in [
                    volume.image.clone(),
                    runtime::volume::lock_path(&volume.image),
                ] {
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(JobError::Internal {
                                message: format!("cannot delete {}: {e}", path.display()),
                            })
                        }
                        _ => {}
                    }
                }
                ctx.say(&format!("-----> Destroyed volume `{name}` of {app}"));
                ctx.note(&format!("volume `{name}` destroyed"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_plain_name;

    #[test]
    fn backup_and_volume_names_cannot_leave_their_directory() {
        for ok in ["data", "data-20261202-140000.ext4", "a_b"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "x\0"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(!is_plain_name(&"a".repeat(129)));
    }
}
