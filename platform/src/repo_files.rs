//! Reads single files out of a pushed commit straight from the object
//! database (no checkout), e.g. the `Byteport` manifest for the deploy hook.

use std::path::Path;

/// Why a file could not be read from a commit.
#[derive(Debug, thiserror::Error)]
pub enum RepoFileError {
    /// The repository could not be opened.
    #[error("cannot open repository {path}: {message}")]
    Open {
        /// The repository path.
        path: String,
        /// gix's error.
        message: String,
    },
    /// The commit id is not a commit in this repository.
    #[error("{rev} is not a commit in this repository: {message}")]
    Commit {
        /// The revision asked for.
        rev: String,
        /// gix's error.
        message: String,
    },
    /// No such file at the root of the commit's tree.
    #[error("the commit has no `{name}` file at the repository root")]
    Missing {
        /// The file name.
        name: String,
    },
    /// The entry is not a regular file (a directory, symlink or submodule).
    #[error("`{name}` at the repository root is not a regular file")]
    NotAFile {
        /// The file name.
        name: String,
    },
    /// The blob is larger than the caller allows.
    #[error("`{name}` is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// The file name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The object database is damaged.
    #[error("cannot read `{name}` from the object database: {message}")]
    Read {
        /// The file name.
        name: String,
        /// gix's error.
        message: String,
    },
}

/// Reads the root-level file `name` from commit `rev` of the bare or
/// non-bare repository at `repo`, refusing blobs over `limit` bytes.
pub fn read_root_file(
    repo: &Path,
    rev: &str,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, RepoFileError> {
    let repo = gix::open(repo).map_err(|e| RepoFileError::Open {
        path: repo.display().to_string(),
        message: e.to_string(),
    })?;
    let commit_err = |message: String| RepoFileError::Commit {
        rev: rev.to_string(),
        message,
    };
    let id = gix::ObjectId::from_hex(rev.as_bytes()).map_err(|e| commit_err(e.to_string()))?;
    let commit = repo
        .find_object(id)
        .map_err(|e| commit_err(e.to_string()))?
        .try_into_commit()
        .map_err(|e| commit_err(e.to_string()))?;
    let tree = commit.tree().map_err(|e| commit_err(e.to_string()))?;
    let entry = tree
        .find_entry(name)
        .ok_or_else(|| RepoFileError::Missing { name: name.into() })?;
    if !entry.mode().is_blob() {
        return Err(RepoFileError::NotAFile { name: name.into() });
    }
    let read_err = |message: String| RepoFileError::Read {
        name: name.into(),
        message,
    };
    let header = repo
        .find_header(entry.object_id())
        .map_err(|e| read_err(e.to_string()))?;
    if header.size() > limit {
        return Err(RepoFileError::TooLarge {
            name: name.into(),
            size: header.size(),
            limit,
        });
    }
    let blob = repo
        .find_object(entry.object_id())
        .map_err(|e| read_err(e.to_string()))?;
    Ok(blob.detach().data)
}

/// The author (`Name <email>`) and the first line of the message of
/// commit `rev`, each capped at 200 characters (for deploy lists).
pub fn commit_info(repo: &Path, rev: &str) -> Result<(String, String), RepoFileError> {
    let repo_h = gix::open(repo).map_err(|e| RepoFileError::Open {
        path: repo.display().to_string(),
        message: e.to_string(),
    })?;
    let commit_err = |message: String| RepoFileError::Commit {
        rev: rev.to_string(),
        message,
    };
    let id = gix::ObjectId::from_hex(rev.as_bytes()).map_err(|e| commit_err(e.to_string()))?;
    let commit = repo_h
        .find_object(id)
        .map_err(|e| commit_err(e.to_string()))?
        .try_into_commit()
        .map_err(|e| commit_err(e.to_string()))?;
    let author = commit.author().map_err(|e| commit_err(e.to_string()))?;
    let who = format!("{} <{}>", author.name, author.email);
    let message = commit.message_raw_sloppy().to_string();
    let first = message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let cap = |s: String| s.chars().take(200).collect::<String>();
    Ok((cap(who), cap(first)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use testvm::git::git_ok as git;

    #[test]
    fn reads_root_files_from_a_commit_and_refuses_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        git(p, &["init", "-q"]);
        std::fs::write(p.join("Byteport"), "app hello\n").unwrap();
        std::fs::create_dir(p.join("dir")).unwrap();
        std::fs::write(p.join("dir/x"), "x").unwrap();
        std::fs::write(p.join("big"), vec![b'a'; 5000]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
        git(p, &["add", "-A"]);
        git(p, &["commit", "-qm", "one"]);
        let head = git(p, &["rev-parse", "HEAD"]);
        assert_eq!(
            read_root_file(p, &head, "Byteport", 1000).unwrap(),
            b"app hello\n"
        );
        assert!(matches!(
            read_root_file(p, &head, "nope", 1000),
            Err(RepoFileError::Missing { .. })
        ));
        assert!(matches!(
            read_root_file(p, &head, "dir", 1000),
            Err(RepoFileError::NotAFile { .. })
        ));
        assert!(matches!(
            read_root_file(p, &head, "link", 1000),
            Err(RepoFileError::NotAFile { .. })
        ));
        assert!(matches!(
            read_root_file(p, &head, "big", 1000),
            Err(RepoFileError::TooLarge { size: 5000, .. })
        ));
        let tree = git(p, &["rev-parse", "HEAD^{tree}"]);
        assert!(matches!(
            read_root_file(p, &tree, "Byteport", 1000),
            Err(RepoFileError::Commit { .. })
        ));
        assert!(matches!(
            read_root_file(p, "zz", "Byteport", 1000),
            Err(RepoFileError::Commit { .. })
        ));
        assert!(matches!(
            read_root_file(&p.join("dir"), &head, "Byteport", 1000),
            Err(RepoFileError::Open { .. })
        ));
    }
}
