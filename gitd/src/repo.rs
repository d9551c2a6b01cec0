//! Bare repositories under `repos_dir/<app>.git`, private to the server's
//! user whatever the umask: `repos_dir` and every repository directory are
//! 0700 and the files gitd creates 0600. The 0700 directories are the
//! guarantee (nothing below them is reachable by another user); the file
//! modes are kept tight as well, so a copied or moved repository stays
//! private.
//!
//! A new repository is made in a temporary directory beside its final
//! place and renamed into it, so a half-made repository is never visible
//! and two first pushes to one new app cannot both initialise it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A repository or the repositories directory cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A directory cannot be created or made private.
    #[error("cannot make {path} a private directory")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// gix cannot initialise the repository.
    #[error("cannot initialise a bare repository at {path}")]
    Init {
        /// Where.
        path: PathBuf,
        /// gix's error.
        #[source]
        source: Box<gix::Error>,
    },
    /// A file's mode cannot be set.
    #[error("cannot make {path} private")]
    Mode {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The new repository cannot be moved into place.
    #[error("cannot move the new repository to {path}")]
    Rename {
        /// The final path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Creates `dir` (and its parents) if needed and makes it 0700, also when
/// it existed with a wider mode.
pub fn ensure_private_dir(dir: &Path) -> Result<(), RepoError> {
    let err = |source| RepoError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Makes `path` and everything below it private: directories 0700, files
/// 0600 (symlinks are left alone: gix makes none).
pub fn make_private(path: &Path) -> Result<(), RepoError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| RepoError::Mode {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = if meta.is_dir() {
        0o700
    } else if meta.is_file() {
        0o600
    } else {
        return Ok(());
    };
    set_mode(path, mode)?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|source| RepoError::Mode {
            path: path.to_path_buf(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| RepoError::Mode {
                path: path.to_path_buf(),
                source,
            })?;
            make_private(&entry.path())?;
        }
    }
    Ok(())
}

/// Sets `path`'s mode.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), RepoError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        RepoError::Mode {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Makes the files gitd just wrote into `repo` (`written`, e.g. a ref and
/// its reflog; paths that do not exist are skipped) 0600 and their
/// directories up to `repo` 0700.
pub fn make_written_private(repo: &Path, written: &[PathBuf]) -> Result<(), RepoError> {
    for file in written {
        if file.is_file() {
            set_mode(file, 0o600)?;
        }
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !d.starts_with(repo) || d == repo {
                break;
            }
            if d.is_dir() {
                set_mode(d, 0o700)?;
            }
            dir = d.parent();
        }
    }
    Ok(())
}

/// Creates a private bare repository at `path` unless it exists.
pub fn ensure_bare(path: &Path) -> Result<(), RepoError> {
    if path.join("HEAD").exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(parent)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("repo");
    let temp = parent.join(format!(
        ".{name}.new-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let made = (|| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&temp)
            .map_err(|source| RepoError::Dir {
                path: temp.clone(),
                source,
            })?;
        gix::init_bare(&temp).map_err(|source| RepoError::Init {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        make_private(&temp)?;
        // Durable before anyone pushes into it.
        if let Ok(d) = std::fs::File::open(&temp) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    let result = made.and_then(|()| match std::fs::rename(&temp, path) {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        // Another push made it first: use theirs.
        Err(_) if path.join("HEAD").exists() => Ok(()),
        Err(source) => Err(RepoError::Rename {
            path: path.to_path_buf(),
            source,
        }),
    });
    if temp.exists() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn modes_below(root: &Path, out: &mut Vec<(PathBuf, u32)>) {
        let m = std::fs::symlink_metadata(root).unwrap();
        out.push((root.to_path_buf(), m.mode() & 0o7777));
        if m.is_dir() {
            for e in std::fs::read_dir(root).unwrap() {
                modes_below(&e.unwrap().path(), out);
            }
        }
    }

    #[test]
    fn a_new_repository_is_private_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let repos = dir.path().join("repos");
        std::fs::create_dir(&repos).unwrap();
        std::fs::set_permissions(&repos, std::fs::Permissions::from_mode(0o777)).unwrap();
        let repo = repos.join("hello.git");
        ensure_bare(&repo).unwrap();
        let mut modes = vec![];
        modes_below(&repos, &mut modes);
        for (p, mode) in &modes {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(*mode, want, "{} is {mode:o}", p.display());
        }
        assert!(gix::open(&repo).is_ok());
        // Only the repository: no temporary directory left behind.
        let names: Vec<_> = std::fs::read_dir(&repos)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("hello.git")]);
        // Again: nothing changes, no error.
        ensure_bare(&repo).unwrap();
    }

    #[test]
    fn concurrent_first_pushes_share_one_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repos/app.git");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let repo = repo.clone();
                std::thread::spawn(move || ensure_bare(&repo))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert!(gix::open(&repo).is_ok());
        assert_eq!(
            std::fs::read_dir(dir.path().join("repos")).unwrap().count(),
            1
        );
    }
}
