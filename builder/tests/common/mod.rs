//! Helpers shared by the integration tests: git repositories made with the
//! `git` CLI, a persistent cache outside the clone, debugfs inspection.
#![allow(dead_code)]

use builder::{BuildError, BuildOutcome, BuildPlan, BuildRequest, MemorySink, Source};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Cache shared across test runs (bases, busybox), outside the clone.
pub fn test_cache() -> PathBuf {
    let dir = std::env::var_os("BYTEPORT_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/byteport-test"));
    std::fs::create_dir_all(&dir).expect("creating the test cache");
    dir
}

/// A fresh BytePort home with busybox-static already in place (fetched once into the test cache).
pub fn home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let bb = builder::setup::ensure_busybox(&test_cache().join("home"), false)
        .expect("fetching busybox-static (needs apt)");
    let dest = home.path().join("assets/busybox");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(bb, dest.join("busybox")).unwrap();
    home
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Make a git repository with `files` (path, content, mode; mode 0 = symlink whose content is the target), commit, return (dir, commit id).
pub fn git_repo(files: &[(&str, &str, u32)]) -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    git(d.path(), &["init", "-q", "-b", "main"]);
    write_files(d.path(), files);
    git(d.path(), &["add", "-A"]);
    git(d.path(), &["commit", "-q", "-m", "init"]);
    let head = git(d.path(), &["rev-parse", "HEAD"]);
    (d, head)
}

pub fn write_files(root: &Path, files: &[(&str, &str, u32)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, content, mode) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        if *mode == 0 {
            std::os::unix::fs::symlink(content, &p).unwrap();
        } else {
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

pub fn request<'a>(home: &Path, source: Source, log: &'a MemorySink) -> BuildRequest<'a> {
    let mut req = BuildRequest::new(home, source, log);
    req.base_cache = Some(test_cache().join("bases"));
    req.step_timeout = Duration::from_secs(120);
    req
}

pub fn build(
    home: &Path,
    source: Source,
    plan: BuildPlan,
) -> (Result<BuildOutcome, BuildError>, Vec<String>) {
    let log = MemorySink::default();
    let req = request(home, source, &log);
    let r = builder::build_plan(&req, plan);
    (r, log.lines())
}

/// Run a debugfs request against an image and return its stdout.
pub fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .expect("running debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Entries left in the artifact store besides the index (must be none after a failure).
pub fn store_leftovers(home: &Path) -> Vec<String> {
    match std::fs::read_dir(home.join("artifacts")) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "by-input")
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pids of processes whose command line contains `needle` (NUL-separated argv joined by spaces).
pub fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// Mounts (host namespace) whose mount point contains `needle`.
pub fn mounts_matching(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}
