//! Builds driven by the repository's own `Byteport` manifest (manifest-spec).

mod common;

use builder::{BuildError, Source};
use common::*;

const MANIFEST: &str = "app hello-busybox
from busybox

build {
  copy site /srv/www
  copy start.sh /usr/local/bin/start
  workdir /srv/www
  run echo \"built with $GREETING and token ${DEPLOY_TOKEN:-none}\" > built.txt
}

env {
  GREETING = \"hello from a microVM\"
}
secret DEPLOY_TOKEN build
secret API_KEY

vm {
  cpus 1
  memory 128M
  disk 64M
}

web {
  run busybox httpd -f -p 8080 -h /srv/www
  port 8080
  health GET / every 5s timeout 2s
}

worker {
  run sh /usr/local/bin/start
}
";

fn build_with_secrets(home: &std::path::Path, source: Source, secrets: &[(&str, &str)]) -> Built {
    build_with(home, source, None, |req| {
        for (k, v) in secrets {
            req.secrets.insert(k.to_string(), v.to_string());
        }
    })
}

#[test]
fn a_pushed_commit_is_built_per_its_manifest() {
    let home = home();
    let repo = Repo::with_files(&[
        ("Byteport", MANIFEST, 0o644),
        ("site/index.html", "<h1>hi</h1>\n", 0o644),
        (
            "start.sh",
            "#!/bin/sh\nwhile true; do sleep 60; done\n",
            0o755,
        ),
    ]);
    let src = repo.source_at(&repo.head());
    let (out, _) = ok(build_with_secrets(
        home.path(),
        src.clone(),
        &[("DEPLOY_TOKEN", "t0k"), ("API_KEY", "k")],
    ));
    let img = &out.rootfs_path;
    assert_eq!(debugfs(img, "cat /srv/www/index.html"), "<h1>hi</h1>\n");
    assert_eq!(
        debugfs(img, "cat /srv/www/built.txt"),
        "built with hello from a microVM and token t0k\n"
    );
    assert!(debugfs(img, "stat /usr/local/bin/start").contains("Mode:  0755"));
    assert!(!debugfs(img, "ls /srv/www").contains("Byteport"));
    let d = &out.descriptor;
    assert_eq!(d.app, "hello-busybox");
    assert_eq!(d.port, Some(8080));
    assert_eq!(d.workdir, "/srv/www");
    assert_eq!(d.processes.len(), 2);
    assert_eq!(d.processes[0].run, "busybox httpd -f -p 8080 -h /srv/www");
    assert_eq!(d.secrets, vec!["DEPLOY_TOKEN", "API_KEY"]);
    assert_eq!(d.vm.disk_bytes, 64 << 20);
    assert!(d.rootfs.size <= 64 << 20);
    assert_eq!(d.health.as_ref().unwrap().interval_ms, 5000);

    let (again, _) = ok(build_with_secrets(
        home.path(),
        src,
        &[("DEPLOY_TOKEN", "t0k"), ("API_KEY", "other")],
    ));
    assert!(
        again.cache_hit,
        "runtime-only secret values do not affect the artifact"
    );
    assert_eq!(again.digest, out.digest);
}

#[test]
fn a_manifest_error_is_reported_with_line_and_column() {
    let home = home();
    let repo = Repo::with_files(&[(
        "Byteport",
        "app x\nfrom busybox\nvm {\n  memroy 1G\n}\n",
        0o644,
    )]);
    let (out, _) = build_manifest(home.path(), repo.source());
    match out {
        Err(e @ BuildError::Manifest { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("Byteport:4:3"), "{msg}");
            assert!(msg.contains("memory"), "{msg}");
        }
        other => panic!("expected a manifest error, got {other:?}"),
    }
    let repo = Repo::with_files(&[("README", "no manifest", 0o644)]);
    let (out, _) = build_manifest(home.path(), repo.source());
    assert!(
        matches!(out, Err(BuildError::ManifestMissing { .. })),
        "{out:?}"
    );
    let repo = Repo::with_files(&[("Byteport", "app x\nfrom alpine\n", 0o644)]);
    let (out, _) = build_manifest(home.path(), repo.source());
    assert!(
        matches!(&out, Err(BuildError::Manifest { rendered }) if rendered.contains(":2:")),
        "unknown base: {out:?}"
    );
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
}

#[test]
fn a_plain_directory_builds_like_byteport_build_dir() {
    let home = home();
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "Byteport",
                "app d\nfrom busybox\nbuild {\n  copy . /app\n}\nworker {\n  run sleep 1\n}\n",
                0o644,
            ),
            ("f.txt", "x", 0o644),
        ],
    );
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    let (out, _) = ok(build_manifest(
        home.path(),
        Source::Dir(dir.path().to_path_buf()),
    ));
    let ls = debugfs(&out.rootfs_path, "ls /app");
    assert!(ls.contains("f.txt") && !ls.contains(".git"), "{ls}");
    let text = builder::cli::outcome_text(&out);
    assert!(
        text.contains(&out.digest) && text.contains("image") && text.contains("total"),
        "{text}"
    );
    let (again, _) = build_manifest(home.path(), Source::Dir(dir.path().to_path_buf()));
    assert!(again.unwrap().cache_hit);
}
