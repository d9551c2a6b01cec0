//! Build every app in the workspace's `examples/` from a git commit (the
//! example copied into a fresh repository), inspect the image with debugfs,
//! and check that a second build is a cache hit. Debian bases land in the
//! test cache outside the clone, so only the first run pays for them.

mod common;

use builder::{BuildRequest, MemorySink, Source};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} must exist (the example apps): {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Byteport").is_file())
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no example with a Byteport manifest under {}",
        dir.display()
    );
    found
}

#[test]
fn every_example_builds_from_a_commit_and_rebuilds_from_cache() {
    let home = home();
    for example in examples() {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let repo = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", example.display()))
            .arg(repo.path())
            .status()
            .unwrap();
        assert!(copied.success());
        git(repo.path(), &["init", "-q", "-b", "main"]);
        git(repo.path(), &["add", "-A"]);
        git(repo.path(), &["commit", "-qm", "example"]);
        let manifest = manifest_spec::parse(
            &std::fs::read(example.join("Byteport")).unwrap(),
            "Byteport",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));

        let log = MemorySink::default();
        let req: BuildRequest<'_> = request(
            home.path(),
            Source::Git {
                repo: repo.path().to_path_buf(),
                rev: "main".into(),
            },
            &log,
        );
        let mut req = req;
        for s in &manifest.secrets {
            req.secrets
                .insert(s.name.clone(), format!("test-{}", s.name));
        }
        let out = builder::build(&req)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", log.lines().join("\n")));
        let d = &out.descriptor;
        assert_eq!(d.app, manifest.app, "{name}");
        assert_eq!(
            d.processes.len(),
            manifest.workers.len() + usize::from(manifest.web.is_some()),
            "{name}"
        );
        assert_eq!(d.port, manifest.web.as_ref().map(|w| w.port), "{name}");
        assert!(d.rootfs.size <= manifest.vm.disk_bytes, "{name}");
        for step in &manifest.build {
            if let manifest_spec::BuildStep::Copy { to, .. } = step {
                let stat = debugfs(&out.rootfs_path, &format!("stat {to}"));
                assert!(stat.contains("Type:"), "{name}: {to} missing in the image");
            }
        }
        let git_dir = Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {}/.git", d.workdir))
            .arg(&out.rootfs_path)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&git_dir.stderr).contains("not found"),
            "{name}: .git must not be in the image"
        );

        let again = builder::build(&req).unwrap();
        assert!(
            again.cache_hit && again.digest == out.digest,
            "{name}: second build must be a cache hit"
        );
        let phases: Vec<String> = out
            .phases
            .iter()
            .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
            .collect();
        println!(
            "{name}: {} ({} MiB), {:.1}s: {}",
            &out.digest[..12],
            out.image_bytes >> 20,
            out.total().as_secs_f64(),
            phases.join(", ")
        );
    }
}
