//! The app's files: the tree of a pushed commit (read with gix straight from
//! the object database, no checkout, no `.git`) or a plain directory, checked
//! (sizes, symlinks) before anything is read whole, then placed into the
//! rootfs per the manifest's `copy` steps.

mod place;

pub(crate) use place::dest_dir;

use crate::error::{git_err, BuildError, IoContext, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Largest symlink target accepted (bytes).
const MAX_LINK_TARGET: u64 = 4096;

/// What a tree entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File {
        /// Whether it has the executable bit.
        executable: bool,
    },
    /// A symbolic link with its target (copied as a link, never followed).
    Symlink {
        /// Link target as stored.
        target: String,
    },
    /// A directory.
    Dir,
}

#[derive(Debug, Clone)]
enum Origin {
    Git(gix::ObjectId),
    Disk(PathBuf),
}

/// One entry of the source tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `/`-separated path relative to the tree root.
    pub path: String,
    /// Its kind.
    pub kind: Kind,
    /// Size in bytes (files only, from the object header or `stat`).
    pub size: u64,
    origin: Origin,
}

/// The app's source files.
pub struct SourceTree {
    entries: BTreeMap<String, Entry>,
    repo: Option<gix::ThreadSafeRepository>,
    tree_id: Option<gix::ObjectId>,
    origin: String,
}

impl std::fmt::Debug for SourceTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTree")
            .field("origin", &self.origin)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl SourceTree {
    /// Read the tree of `rev` (a commit, branch, tag or any rev-spec) in the
    /// repository at `repo_path` (bare or not). Reads only object headers and
    /// symlink targets; file contents are read when placed.
    pub fn from_git(repo_path: &Path, rev: &str) -> Result<Self> {
        let origin = format!("{}@{}", repo_path.display(), rev);
        let repo = gix::open(repo_path)
            .map_err(|e| git_err(format!("opening repository {}", repo_path.display()), e))?;
        let id = repo
            .rev_parse_single(rev)
            .map_err(|e| git_err(format!("resolving `{rev}`"), e))?;
        let object = id
            .object()
            .map_err(|e| git_err(format!("reading `{rev}`"), e))?;
        let tree = object
            .peel_to_tree()
            .map_err(|e| git_err(format!("`{rev}` does not name a commit or tree"), e))?;
        let tree_id = tree.id;
        let mut recorder = gix::traverse::tree::Recorder::default();
        tree.traverse()
            .breadthfirst(&mut recorder)
            .map_err(|e| git_err(format!("walking the tree of `{rev}`"), e))?;
        let mut entries = BTreeMap::new();
        for rec in recorder.records {
            let path = rec.filepath.to_string();
            let (kind, size) = if rec.mode.is_tree() {
                (Kind::Dir, 0)
            } else if rec.mode.is_commit() {
                continue; // submodule: not part of this repository's content
            } else {
                let header = repo
                    .find_header(rec.oid)
                    .map_err(|e| git_err(format!("reading object of `{path}`"), e))?;
                if rec.mode.is_link() {
                    if header.size() > MAX_LINK_TARGET {
                        return Err(BuildError::SymlinkEscape {
                            path,
                            target: "<overlong target>".into(),
                        });
                    }
                    let blob = repo
                        .find_object(rec.oid)
                        .map_err(|e| git_err(format!("reading link `{path}`"), e))?;
                    let target = String::from_utf8_lossy(&blob.data).into_owned();
                    (Kind::Symlink { target }, 0)
                } else {
                    (
                        Kind::File {
                            executable: rec.mode.is_executable(),
                        },
                        header.size(),
                    )
                }
            };
            entries.insert(
                path.clone(),
                Entry {
                    path,
                    kind,
                    size,
                    origin: Origin::Git(rec.oid),
                },
            );
        }
        drop(tree);
        Ok(SourceTree {
            entries,
            repo: Some(repo.into_sync()),
            tree_id: Some(tree_id),
            origin,
        })
    }

    /// List a plain directory (its `.git`, if any, is left out). Only `stat`s
    /// and reads link targets; contents are read when hashed or placed.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut entries = BTreeMap::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((abs, rel)) = stack.pop() {
            for item in std::fs::read_dir(&abs).ctx("reading directory", &abs)? {
                let item = item.ctx("reading directory", &abs)?;
                let name = item.file_name().to_string_lossy().into_owned();
                if rel.is_empty() && name == ".git" {
                    continue;
                }
                let path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let p = item.path();
                let meta = std::fs::symlink_metadata(&p).ctx("reading metadata", &p)?;
                let ft = meta.file_type();
                let (kind, size) = if ft.is_symlink() {
                    let target = std::fs::read_link(&p).ctx("reading link", &p)?;
                    (
                        Kind::Symlink {
                            target: target.to_string_lossy().into_owned(),
                        },
                        0,
                    )
                } else if ft.is_dir() {
                    stack.push((p.clone(), path.clone()));
                    (Kind::Dir, 0)
                } else if ft.is_file() {
                    (
                        Kind::File {
                            executable: meta.mode() & 0o111 != 0,
                        },
                        meta.len(),
                    )
                } else {
                    continue; // sockets, fifos, devices are not app content
                };
                entries.insert(
                    path.clone(),
                    Entry {
                        path,
                        kind,
                        size,
                        origin: Origin::Disk(p),
                    },
                );
            }
        }
        Ok(SourceTree {
            entries,
            repo: None,
            tree_id: None,
            origin: dir.display().to_string(),
        })
    }

    /// Where the tree came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// All entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Total size of the regular files.
    pub fn total_file_bytes(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    /// Reject, before reading any content, files larger than `disk` and
    /// symlinks that point outside the tree.
    pub fn check(&self, disk: u64) -> Result<()> {
        for e in self.entries.values() {
            match &e.kind {
                Kind::File { .. } if e.size > disk => {
                    return Err(BuildError::FileTooLarge {
                        path: e.path.clone(),
                        size: e.size,
                        disk,
                    });
                }
                Kind::Symlink { target } if !link_stays_inside(&e.path, target) => {
                    return Err(BuildError::SymlinkEscape {
                        path: e.path.clone(),
                        target: target.clone(),
                    });
                }
                _ => {}
            }
        }
        let total = self.total_file_bytes();
        if total > disk {
            return Err(BuildError::RootfsTooLarge {
                needed: total,
                disk,
            });
        }
        Ok(())
    }

    /// The content of a regular file at `path`, if there is one.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.entries.get(path) {
            Some(
                e @ Entry {
                    kind: Kind::File { .. },
                    ..
                },
            ) => self.content(e, self.local_repo().as_ref()).map(Some),
            _ => Ok(None),
        }
    }

    /// A handle on the repository for the calling thread (the tree itself is
    /// shared across threads).
    fn local_repo(&self) -> Option<gix::Repository> {
        self.repo.as_ref().map(|r| r.to_thread_local())
    }

    fn content(&self, e: &Entry, repo: Option<&gix::Repository>) -> Result<Vec<u8>> {
        match (&e.origin, repo) {
            (Origin::Git(oid), Some(repo)) => {
                let obj = repo
                    .find_object(*oid)
                    .map_err(|err| git_err(format!("reading `{}`", e.path), err))?;
                Ok(obj.detach().data)
            }
            (Origin::Disk(p), _) => std::fs::read(p).ctx("reading", p),
            (Origin::Git(_), None) => Ok(Vec::new()),
        }
    }

    /// A digest identifying the content: the git tree id, or a SHA-256 over
    /// paths, kinds and contents of a directory (read file by file).
    pub fn identity(&self) -> Result<String> {
        if let Some(id) = self.tree_id {
            return Ok(format!("git-tree:{id}"));
        }
        let mut h = Sha256::new();
        for e in self.entries.values() {
            h.update(e.path.as_bytes());
            h.update([0]);
            match &e.kind {
                Kind::Dir => h.update(b"d"),
                Kind::Symlink { target } => {
                    h.update(b"l");
                    h.update(target.as_bytes());
                }
                Kind::File { executable } => {
                    h.update(if *executable { b"x" } else { b"f" });
                    if let Origin::Disk(p) = &e.origin {
                        let mut f = std::fs::File::open(p).ctx("opening", p)?;
                        let mut buf = vec![0u8; 1 << 16];
                        loop {
                            let n = f.read(&mut buf).ctx("reading", p)?;
                            if n == 0 {
                                break;
                            }
                            h.update(&buf[..n]);
                        }
                    }
                }
            }
            h.update([0]);
        }
        Ok(format!("dir-sha256:{}", hex::encode(h.finalize())))
    }
}

/// Whether a link at `link_path` (relative to the tree root) with `target`
/// resolves, lexically, to a path inside the tree.
pub fn link_stays_inside(link_path: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return false;
    }
    let mut depth: Vec<&str> = link_path.split('/').collect();
    depth.pop(); // the link's own name
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            other => depth.push(other),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn link_escape_rules() {
        assert!(link_stays_inside("a/l", "b"));
        assert!(link_stays_inside("a/l", "../c"));
        assert!(link_stays_inside("a/b/l", "../../c/./d"));
        assert!(!link_stays_inside("a/l", "../../c"));
        assert!(!link_stays_inside("l", ".."));
        assert!(!link_stays_inside("l", "/etc/passwd"));
        assert!(!link_stays_inside("l", ""));
    }

    #[test]
    fn dir_source_lists_checks_and_places() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("sub")).unwrap();
        std::fs::create_dir_all(src.path().join(".git")).unwrap();
        std::fs::write(src.path().join("sub/a.txt"), "hello").unwrap();
        std::fs::write(src.path().join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(
            src.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/a.txt", src.path().join("link")).unwrap();
        let tree = SourceTree::from_dir(src.path()).unwrap();
        let paths: Vec<_> = tree.entries().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["link", "run.sh", "sub", "sub/a.txt"]);
        tree.check(1 << 20).unwrap();
        assert!(matches!(
            tree.check(3),
            Err(BuildError::FileTooLarge { .. })
        ));
        let id1 = tree.identity().unwrap();

        let root = tempfile::tempdir().unwrap();
        assert_eq!(tree.place(".", "/app", root.path(), 1).unwrap(), 4);
        let app = root.path().join("app");
        assert_eq!(
            std::fs::read_to_string(app.join("sub/a.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::metadata(app.join("run.sh")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::metadata(app.join("sub/a.txt")).unwrap().mode() & 0o777,
            0o644
        );
        assert_eq!(
            std::fs::read_link(app.join("link")).unwrap(),
            Path::new("sub/a.txt")
        );
        assert!(!app.join(".git").exists());
        tree.place("sub/a.txt", "/etc/", root.path(), 2).unwrap();
        assert!(root.path().join("etc/a.txt").is_file());
        assert!(matches!(
            tree.place("nope", "/x", root.path(), 3),
            Err(BuildError::BadCopy { number: 3, .. })
        ));

        std::fs::write(src.path().join("sub/a.txt"), "changed").unwrap();
        assert_ne!(
            SourceTree::from_dir(src.path())
                .unwrap()
                .identity()
                .unwrap(),
            id1
        );
    }

    #[test]
    fn escaping_symlink_and_symlinked_destination_are_rejected() {
        let src = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../../etc/passwd", src.path().join("evil")).unwrap();
        let tree = SourceTree::from_dir(src.path()).unwrap();
        assert!(matches!(
            tree.check(1 << 20),
            Err(BuildError::SymlinkEscape { .. })
        ));

        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", root.path().join("app")).unwrap();
        let ok = tempfile::tempdir().unwrap();
        std::fs::write(ok.path().join("f"), "x").unwrap();
        let tree = SourceTree::from_dir(ok.path()).unwrap();
        let err = tree.place(".", "/app/x", root.path(), 1).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = tree.place(".", "/app", root.path(), 1).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
