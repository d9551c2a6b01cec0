//! Helpers shared by the integration tests (and the rebuild benchmark):
//! git repositories made with the `git` CLI, builds with the test defaults,
//! a persistent cache outside the clone, debugfs inspection, leftovers.
#![allow(dead_code)]

use builder::{BuildError, BuildOutcome, BuildPlan, BuildRequest, MemorySink, Source};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Cache shared across test runs (bases, busybox, kernel), outside the clone.
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

/// Run `git` in `dir` with a fixed identity; panics with its stderr on failure.
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

/// A git repository (work tree + `.git`) in a temp directory.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A repository whose first commit (on `main`) holds `files`
    /// (path, content, mode; mode 0 = symlink whose content is the target).
    pub fn with_files(files: &[(&str, &str, u32)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), files);
        Repo::commit_all(dir, "init")
    }

    /// A repository holding a copy of `examples/<name>`, committed.
    pub fn example(name: &str) -> Repo {
        let src = examples_dir().join(name);
        assert!(
            src.join("Byteport").is_file(),
            "{} must exist (the example apps)",
            src.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(copied.success(), "copying {}", src.display());
        Repo::commit_all(dir, "example")
    }

    fn commit_all(dir: tempfile::TempDir, message: &str) -> Repo {
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", message]);
        Repo { dir }
    }

    /// The work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The commit id of `HEAD`.
    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"])
    }

    /// Build source: this repository at `HEAD`.
    pub fn source(&self) -> Source {
        self.source_at("HEAD")
    }

    /// Build source: this repository at `rev`.
    pub fn source_at(&self, rev: &str) -> Source {
        Source::Git {
            repo: self.path().to_path_buf(),
            rev: rev.into(),
        }
    }

    /// Write `files` and commit everything.
    pub fn commit(&self, files: &[(&str, &str, u32)], message: &str) {
        write_files(self.path(), files);
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-q", "-m", message]);
    }
}

/// The workspace's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Names of the examples with a `Byteport` manifest, sorted.
pub fn example_names() -> Vec<String> {
    let dir = examples_dir();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} must exist (the example apps): {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Byteport").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no example under {}", dir.display());
    found
}

/// Write `files` (see [`Repo::with_files`]) under `root`.
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

/// A request with the test defaults: bases from the shared test cache, a
/// 120 s step timeout, the host's CA bundle (this network inspects TLS).
pub fn request<'a>(home: &Path, source: Source, log: &'a MemorySink) -> BuildRequest<'a> {
    let mut req = BuildRequest::new(home, source, log);
    req.base_cache = Some(test_cache().join("bases"));
    req.step_timeout = Duration::from_secs(120);
    req.ca_trust = builder::CaTrust::Host;
    req
}

/// What a test build returns: the outcome and every log line.
pub type Built = (Result<BuildOutcome, BuildError>, Vec<String>);

/// Build `plan` (or the source's own manifest when `None`) with the test
/// defaults, after `tweak` adjusts the request.
pub fn build_with(
    home: &Path,
    source: Source,
    plan: Option<BuildPlan>,
    tweak: impl FnOnce(&mut BuildRequest<'_>),
) -> Built {
    let log = MemorySink::default();
    let mut req = request(home, source, &log);
    tweak(&mut req);
    let r = match plan {
        Some(plan) => builder::build_plan(&req, plan),
        None => builder::build(&req),
    };
    (r, log.lines())
}

/// Build `plan` with the test defaults.
pub fn build(home: &Path, source: Source, plan: BuildPlan) -> Built {
    build_with(home, source, Some(plan), |_| {})
}

/// Build the source's own `Byteport` with the test defaults.
pub fn build_manifest(home: &Path, source: Source) -> Built {
    build_with(home, source, None, |_| {})
}

/// The outcome, or a panic showing the error and the build log.
pub fn ok(built: Built) -> (BuildOutcome, Vec<String>) {
    match built {
        (Ok(out), log) => (out, log),
        (Err(e), log) => panic!("build failed: {e}\n{}", log.join("\n")),
    }
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

/// Whether `path` exists in the image.
pub fn exists_in_image(image: &Path, path: &str) -> bool {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(image)
        .output()
        .expect("running debugfs");
    !String::from_utf8_lossy(&out.stderr).contains("not found")
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
