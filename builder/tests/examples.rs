//! Build every app in the workspace's `examples/` from a git commit (the
//! example copied into a fresh repository), inspect the image with debugfs,
//! check that a second build is a cache hit, and that the build reproduces:
//! a fresh home (empty artifact store, empty build cache) gives the same
//! digest, and so does a build with a warm build cache. Debian bases land in
//! the test cache outside the clone, so only the first run pays for them.

mod common;

use common::*;
use std::time::Instant;

#[test]
fn every_example_builds_from_a_commit_rebuilds_from_cache_and_reproduces_in_fresh_homes() {
    let home = home();
    for name in example_names() {
        let repo = Repo::example(&name);
        let manifest = manifest_spec::parse(
            &std::fs::read(repo.path().join("Byteport")).unwrap(),
            "Byteport",
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Built as a push to a repository of the app's own name.
        let secrets = |req: &mut builder::BuildRequest<'_>| {
            req.app = Some(manifest.app.clone());
            for s in &manifest.secrets {
                req.secrets
                    .insert(s.name.clone(), format!("test-{}", s.name));
            }
        };

        let start = Instant::now();
        let (out, log) = ok(build_with(home.path(), repo.source(), None, secrets));
        let first = start.elapsed();
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
                assert!(
                    exists_in_image(&out.rootfs_path, to),
                    "{name}: {to} missing in the image"
                );
            }
        }
        for absent in [
            format!("{}/.git", d.workdir),
            "/root/.npm".into(),
            "/root/.cache".into(),
        ] {
            assert!(
                !exists_in_image(&out.rootfs_path, &absent),
                "{name}: {absent} must not be in the image"
            );
        }

        let (again, _) = ok(build_with(home.path(), repo.source(), None, secrets));
        assert!(
            again.cache_hit && again.digest == out.digest,
            "{name}: second build must be a cache hit"
        );

        // Reproducible: same inputs into a fresh home (the base cache is shared).
        let fresh = common::home();
        let start = Instant::now();
        let (other, other_log) = ok(build_with(fresh.path(), repo.source(), None, secrets));
        let second = start.elapsed();
        assert!(!other.cache_hit, "{name}");
        assert_eq!(
            other.digest, out.digest,
            "{name}: two builds of the same commit into fresh homes differ\nfirst:\n{}\nsecond:\n{}",
            log.join("\n"),
            other_log.join("\n")
        );

        // A warm build cache (what package managers downloaded last time)
        // speeds the build up but must not change the image.
        let cache = home.path().join("cache/build");
        let used: usize = std::fs::read_dir(cache.join(&manifest.app))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| walk_files(&e.path()))
                    .sum()
            })
            .unwrap_or(0);
        if used > 0 {
            let warm = common::home();
            let (w, _) = ok(build_with(warm.path(), repo.source(), None, |req| {
                secrets(req);
                req.build_cache = Some(cache.clone());
            }));
            assert_eq!(
                w.digest, out.digest,
                "{name}: a warm build cache changed the image"
            );
        }
        println!(
            "{name}: {} ({} MiB), first {:.1}s ({}), fresh home {:.1}s, build cache {used} files",
            &out.digest[..12],
            out.image_bytes >> 20,
            first.as_secs_f64(),
            out.phases
                .iter()
                .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
            second.as_secs_f64(),
        );
    }
}

/// Number of regular files under directory `dir` (0 when missing or not a directory).
fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
