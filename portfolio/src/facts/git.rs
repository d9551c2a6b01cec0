//! Facts from a bare repository and a commit id: a bounded walk of the
//! commit's tree and of its history, straight from the object database.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::path::Path;

use super::{frameworks, languages, readme, Facts, History, Limits, ManifestFacts};

/// Why no facts could be read at all (limits and odd files only make notes).
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The repository could not be opened.
    #[error("opening repository {path}: {message}")]
    Open {
        /// The repository path.
        path: String,
        /// gix's error.
        message: String,
    },
    /// The commit is missing or not a commit.
    #[error("commit {commit} in {path}: {message}")]
    Commit {
        /// The commit id as given.
        commit: String,
        /// The repository path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// An object the tree names could not be read (a corrupt repository).
    #[error("reading {what} of commit {commit}: {message}")]
    Object {
        /// What was being read.
        what: String,
        /// The commit.
        commit: String,
        /// gix's error.
        message: String,
    },
}

/// Reads the facts of `commit` (a full hex id) in the bare repository at
/// `repo_path`, for the app `app`. Blocking: run it off the async runtime.
/// The returned facts have no page, live URL or repository URL yet.
pub fn gather(
    app: &str,
    repo_path: &Path,
    commit: &str,
    limits: &Limits,
) -> Result<Facts, FactsError> {
    let repo = gix::open(repo_path).map_err(|e| FactsError::Open {
        path: repo_path.display().to_string(),
        message: e.to_string(),
    })?;
    let commit_err = |message: String| FactsError::Commit {
        commit: commit.to_string(),
        path: repo_path.display().to_string(),
        message,
    };
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| commit_err(format!("not a full commit id: {e}")))?;
    let head = repo
        .find_commit(id)
        .map_err(|e| commit_err(e.to_string()))?;
    let tree = head
        .tree()
        .map_err(|e| commit_err(format!("reading its tree: {e}")))?;

    let mut facts = Facts {
        app: app.to_string(),
        commit: id.to_string(),
        manifest: ManifestFacts {
            title: app.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    walk_tree(&repo, tree.id, limits, &mut facts)?;
    facts.history = history(&repo, &head, limits, &mut facts.notes);
    Ok(facts)
}

fn object_err(what: &str, commit: &str, e: impl std::fmt::Display) -> FactsError {
    FactsError::Object {
        what: what.to_string(),
        commit: commit.to_string(),
        message: e.to_string(),
    }
}

/// Breadth-first over the tree: root files first (manifest, README), then
/// everything below for languages and dependency files, within the limits.
fn walk_tree(
    repo: &gix::Repository,
    root: gix::ObjectId,
    limits: &Limits,
    facts: &mut Facts,
) -> Result<(), FactsError> {
    let commit = facts.commit.clone();
    let mut queue = VecDeque::from([(root, String::new(), 0usize)]);
    let mut visited = 0usize;
    let mut read_bytes = 0u64;
    let mut tally = languages::Tally::default();
    let mut found_frameworks = BTreeSet::new();
    let mut readme_candidates: Vec<(u8, String, gix::ObjectId)> = Vec::new();
    let mut entries_capped = false;
    let mut depth_capped = false;
    let mut bytes_capped = false;
    let mut big_files = 0u64;

    while let Some((tree_id, prefix, depth)) = queue.pop_front() {
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| object_err(&format!("tree {prefix:?}"), &commit, e))?;
        for entry in tree.iter() {
            let entry = entry.map_err(|e| object_err(&format!("tree {prefix:?}"), &commit, e))?;
            visited += 1;
            if visited > limits.max_entries {
                entries_capped = true;
                break;
            }
            let name = String::from_utf8_lossy(entry.filename()).into_owned();
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let mode = entry.mode();
            let oid = entry.oid().to_owned();
            if mode.is_tree() {
                if languages::is_vendored_dir(&name) {
                    continue;
                }
                if depth + 1 > limits.max_depth {
                    depth_capped = true;
                    continue;
                }
                queue.push_back((oid, path, depth + 1));
                continue;
            }
            if !mode.is_blob() {
                continue; // symlinks and submodules
            }
            if depth == 0 {
                if let Some(rank) = readme::readme_rank(&name) {
                    readme_candidates.push((rank, name.clone(), oid));
                }
                if name == manifest_spec::MANIFEST_FILE_NAME {
                    read_manifest(repo, oid, limits, facts, &commit)?;
                }
            }
            let size = repo
                .find_header(oid)
                .map_err(|e| object_err(&path, &commit, e))?
                .size();
            if frameworks::is_dependency_file(&name) && size <= limits.max_text_file_bytes {
                let blob = repo
                    .find_blob(oid)
                    .map_err(|e| object_err(&path, &commit, e))?;
                if let Ok(text) = std::str::from_utf8(&blob.data) {
                    frameworks::from_file(&name, text, &mut found_frameworks);
                }
            }
            let Some(language) = languages::language_of(&name, &[]).or_else(|| {
                // Extension-less files: look at the first line for `#!`.
                if name.contains('.') || size > limits.max_blob_bytes {
                    return None;
                }
                let blob = repo.find_blob(oid).ok()?;
                languages::language_of(&name, &blob.data[..blob.data.len().min(128)])
            }) else {
                continue;
            };
            if size > limits.max_blob_bytes {
                big_files += 1;
                continue;
            }
            if read_bytes + size > limits.max_total_bytes {
                bytes_capped = true;
                continue;
            }
            read_bytes += size;
            let blob = repo
                .find_blob(oid)
                .map_err(|e| object_err(&path, &commit, e))?;
            if blob.data.contains(&0) {
                continue; // binary despite its name
            }
            tally.add(language, &blob.data);
        }
        if entries_capped {
            break;
        }
    }

    readme_candidates.sort();
    if let Some((_, name, oid)) = readme_candidates.first() {
        let size = repo
            .find_header(*oid)
            .map_err(|e| object_err(name, &commit, e))?
            .size();
        let blob = repo
            .find_blob(*oid)
            .map_err(|e| object_err(name, &commit, e))?;
        let cut = &blob.data[..blob.data.len().min(limits.max_text_file_bytes as usize)];
        if size > limits.max_text_file_bytes {
            facts.notes.push(format!(
                "{name} is {size} bytes; only its first {} were read",
                limits.max_text_file_bytes
            ));
        }
        facts.readme = readme::extract(name, cut);
        if facts.readme.is_none() {
            facts
                .notes
                .push(format!("{name} looks binary and was skipped"));
        }
    }
    facts.languages = tally.shares();
    facts.frameworks = found_frameworks.into_iter().collect();
    if entries_capped {
        facts.notes.push(format!(
            "the tree has more than {} entries; languages count the first {}",
            limits.max_entries, limits.max_entries
        ));
    }
    if depth_capped {
        facts.notes.push(format!(
            "directories deeper than {} levels were not counted",
            limits.max_depth
        ));
    }
    if bytes_capped {
        facts.notes.push(format!(
            "languages count the first {} MiB of source",
            limits.max_total_bytes / (1024 * 1024)
        ));
    }
    if big_files > 0 {
        facts.notes.push(format!(
            "{big_files} source file(s) over {} KiB were not counted",
            limits.max_blob_bytes / 1024
        ));
    }
    Ok(())
}

fn read_manifest(
    repo: &gix::Repository,
    oid: gix::ObjectId,
    limits: &Limits,
    facts: &mut Facts,
    commit: &str,
) -> Result<(), FactsError> {
    let size = repo
        .find_header(oid)
        .map_err(|e| object_err("Byteport", commit, e))?
        .size();
    if size > limits.max_text_file_bytes {
        facts
            .notes
            .push("the Byteport manifest is too large to read".into());
        return Ok(());
    }
    let blob = repo
        .find_blob(oid)
        .map_err(|e| object_err("Byteport", commit, e))?;
    match manifest_spec::parse(&blob.data, "Byteport") {
        Ok(m) => facts.manifest = ManifestFacts::from_manifest(&m),
        Err(d) => facts.notes.push(format!(
            "the Byteport manifest does not parse ({} problem(s)); title and tags default",
            d.len()
        )),
    }
    Ok(())
}

fn history(
    repo: &gix::Repository,
    head: &gix::Commit<'_>,
    limits: &Limits,
    notes: &mut Vec<String>,
) -> History {
    let mut h = History {
        last_commit: head.time().map(|t| t.seconds).unwrap_or(0),
        first_commit: i64::MAX,
        ..Default::default()
    };
    let mut authors = HashSet::new();
    let walk = match repo.rev_walk([head.id]).all() {
        Ok(w) => w,
        Err(e) => {
            notes.push(format!("the history could not be walked: {e}"));
            h.first_commit = h.last_commit;
            return h;
        }
    };
    for info in walk {
        let Ok(info) = info else {
            notes.push("the history has missing commits (shallow push?); counts stop there".into());
            break;
        };
        if h.commits as usize >= limits.max_commits {
            h.truncated = true;
            notes.push(format!(
                "history counted up to {} commits",
                limits.max_commits
            ));
            break;
        }
        h.commits += 1;
        if let Ok(c) = info.object() {
            if let Ok(sig) = c.author() {
                authors.insert(sig.email.to_ascii_lowercase());
                if let Ok(t) = sig.time() {
                    h.first_commit = h.first_commit.min(t.seconds);
                }
            }
        }
    }
    if h.first_commit == i64::MAX {
        h.first_commit = h.last_commit;
    }
    h.authors = authors.len() as u64;
    h
}
