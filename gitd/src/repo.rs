//! Bare repositories under `repos_dir/<app>.git`.

use std::path::Path;

/// Creates a bare repository at `path` unless it exists.
pub fn ensure_bare(path: &Path) -> Result<(), String> {
    if path.join("HEAD").exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    gix::init_bare(path).map_err(|e| e.to_string())?;
    Ok(())
}
