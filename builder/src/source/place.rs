//! Placing source entries into the rootfs being assembled, like `COPY`:
//! never through a symlink already in the image, with fixed modes.

use super::{Entry, Kind, Origin, SourceTree};
use crate::error::{BuildError, IoContext, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

impl SourceTree {
    /// Place `from` (a path in the tree, `.` for all) at `to` (absolute in the
    /// rootfs at `root`), like `COPY`. Never writes through a symlink that is
    /// already in the rootfs. Returns the number of entries placed.
    pub fn place(&self, from: &str, to: &str, root: &Path, step: usize) -> Result<usize> {
        let bad = |reason: String| BuildError::BadCopy {
            number: step,
            reason,
        };
        let from = from.trim_start_matches("./").trim_end_matches('/');
        let from = if from == "." { "" } else { from };
        if from.split('/').any(|c| c == "..") || from.starts_with('/') {
            return Err(bad(format!(
                "source `{from}` must be a relative path inside the repository"
            )));
        }
        let selected: Vec<(&Entry, String)> = if from.is_empty() {
            self.entries.values().map(|e| (e, e.path.clone())).collect()
        } else {
            match self.entries.get(from) {
                None => return Err(bad(format!("`{from}` is not in {}", self.origin))),
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {
                    let prefix = format!("{from}/");
                    self.entries
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, e)| (e, k[prefix.len()..].to_string()))
                        .collect()
                }
                Some(e) => {
                    let base = e.path.rsplit('/').next().unwrap_or(&e.path).to_string();
                    let dest_is_dir = to.ends_with('/')
                        || std::fs::symlink_metadata(root.join(to.trim_start_matches('/')))
                            .map(|m| m.is_dir())
                            .unwrap_or(false);
                    if dest_is_dir {
                        vec![(e, base)]
                    } else {
                        vec![(e, String::new())]
                    }
                }
            }
        };
        let single = selected.len() == 1 && selected[0].1.is_empty();
        let dest_root = dest_dir(root, to, !single).map_err(bad)?;
        let repo = self.local_repo();
        for (e, rel) in &selected {
            let dest = if rel.is_empty() {
                dest_root.clone()
            } else {
                ensure_parents(root, &dest_root, rel).map_err(bad)?
            };
            self.write_entry(e, &dest, repo.as_ref())?;
        }
        Ok(selected.len())
    }

    fn write_entry(&self, e: &Entry, dest: &Path, repo: Option<&gix::Repository>) -> Result<()> {
        let existing = std::fs::symlink_metadata(dest).ok();
        match &e.kind {
            Kind::Dir => {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => std::fs::remove_file(dest).ctx("replacing", dest)?,
                    None => {}
                }
                if !dest.is_dir() {
                    std::fs::create_dir(dest).ctx("creating directory", dest)?;
                }
                std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))
                    .ctx("chmod", dest)?;
            }
            Kind::Symlink { target } => {
                remove_existing(dest, existing)?;
                std::os::unix::fs::symlink(target, dest).ctx("creating symlink", dest)?;
            }
            Kind::File { executable } => {
                remove_existing(dest, existing)?;
                match &e.origin {
                    Origin::Disk(p) => {
                        std::fs::copy(p, dest).ctx("copying", p)?;
                    }
                    _ => {
                        let data = self.content(e, repo)?;
                        std::fs::write(dest, data).ctx("writing", dest)?;
                    }
                }
                let mode = if *executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
                    .ctx("chmod", dest)?;
            }
        }
        Ok(())
    }
}

fn remove_existing(dest: &Path, existing: Option<std::fs::Metadata>) -> Result<()> {
    match existing {
        Some(m) if m.is_dir() => std::fs::remove_dir_all(dest).ctx("replacing directory", dest),
        Some(_) => std::fs::remove_file(dest).ctx("replacing", dest),
        None => Ok(()),
    }
}

/// Resolve the absolute rootfs path `to` under `root`, creating missing
/// directories, refusing `..` and existing symlinks on the way.
pub(crate) fn dest_dir(root: &Path, to: &str, make_dir: bool) -> Result<PathBuf, String> {
    if !to.starts_with('/') {
        return Err(format!("destination `{to}` must be an absolute path"));
    }
    let rel = to.trim_start_matches('/').trim_end_matches('/');
    if rel.is_empty() {
        return Ok(root.to_path_buf());
    }
    let p = ensure_parents(root, root, rel)?;
    if make_dir {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("destination {to} exists and is not a directory")),
            Err(_) => {
                std::fs::create_dir(&p).map_err(|e| format!("creating {}: {e}", p.display()))?
            }
        }
    }
    Ok(p)
}

/// `base.join(rel)` with every intermediate directory created or checked to be
/// a real directory (not a symlink). The last component is not created.
fn ensure_parents(root: &Path, base: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut p = base.to_path_buf();
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    for (i, c) in comps.iter().enumerate() {
        if *c == ".." {
            return Err(format!("path `{rel}` must not contain `..`"));
        }
        p.push(c);
        if i + 1 == comps.len() {
            break;
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let shown = p
                    .strip_prefix(root)
                    .map(|x| x.display().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "destination crosses the symlink /{shown} in the image"
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is a file, not a directory", p.display())),
            Err(_) => {
                std::fs::create_dir(&p).map_err(|e| format!("creating {}: {e}", p.display()))?
            }
        }
    }
    Ok(p)
}
