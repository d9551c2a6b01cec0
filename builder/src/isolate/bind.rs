//! Host files bound into a step's rootfs for the step only.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A host file bind-mounted read-only over a file of the rootfs for the
/// step only (DNS config, CA bundle). The target is created empty when its
/// directory exists but the file does not, and removed again afterwards;
/// nothing is bound when the directory is missing or any part is a symlink.
pub(super) struct BindFile {
    pub(super) host: CString,
    pub(super) target: Option<PathBuf>,
    created: bool,
}

impl BindFile {
    pub(super) fn prepare(root: &Path, host: &Path, target: &str) -> BindFile {
        let mut bind = BindFile {
            host: super::cstr(host),
            target: None,
            created: false,
        };
        if !host.is_file() {
            return bind;
        }
        let mut dir = root.to_path_buf();
        let parts: Vec<&str> = target.trim_start_matches('/').split('/').collect();
        let (name, dirs) = match parts.split_last() {
            Some(x) => x,
            None => return bind,
        };
        for d in dirs {
            dir.push(d);
            if !std::fs::symlink_metadata(&dir)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                return bind;
            }
        }
        let f = dir.join(name);
        match std::fs::symlink_metadata(&f) {
            Ok(m) if m.is_file() => bind.target = Some(f),
            Ok(_) => {}
            Err(_) => {
                if std::fs::write(&f, "").is_ok() {
                    bind.target = Some(f);
                    bind.created = true;
                }
            }
        }
        bind
    }
}

impl Drop for BindFile {
    fn drop(&mut self) {
        if let (true, Some(f)) = (self.created, &self.target) {
            let _ = std::fs::remove_file(f);
        }
    }
}
