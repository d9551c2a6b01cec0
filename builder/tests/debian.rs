//! A real `debian:<suite>` base (mmdebstrap minbase + packages), cached in the
//! test cache outside the clone so only the first run pays for it.

mod common;

use builder::{BaseSpec, BuildError, BuildPlan, Step};
use common::*;

#[test]
fn debian_base_with_packages_runs_steps_and_is_reused() {
    let home = home();
    let repo = Repo::with_files(&[("app.sh", "#!/bin/sh\necho hi\n", 0o755)]);
    let mut plan = BuildPlan::new(
        "deb",
        BaseSpec::Debian {
            suite: "bookworm".into(),
        },
    );
    plan.packages = vec!["netbase".into()];
    plan.steps = vec![
        Step::Copy { from: ".".into(), to: "/app".into() },
        Step::Workdir { path: "/app".into() },
        Step::Run { command: "cat /etc/debian_version > version && dpkg-query -W -f='${Status}' netbase > netbase.status && id app".into() },
    ];
    let (out, log) = ok(build(home.path(), repo.source(), plan.clone()));
    assert!(debugfs(&out.rootfs_path, "cat /app/version").starts_with("12."));
    assert_eq!(
        debugfs(&out.rootfs_path, "cat /app/netbase.status"),
        "install ok installed"
    );
    assert!(log.iter().any(|l| l.contains("uid=1000(app)")), "{log:#?}");
    assert!(debugfs(&out.rootfs_path, "stat /usr/bin/dpkg").contains("Type: regular"));

    // A different app on the same base + packages reuses the cached base.
    let repo2 = Repo::with_files(&[("other", "x", 0o644)]);
    plan.app = "deb2".into();
    let (out2, log2) = ok(build(home.path(), repo2.source(), plan));
    assert!(out2.base_cache_hit, "{log2:#?}");
}

#[test]
fn a_package_that_does_not_exist_is_named() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new(
        "deb",
        BaseSpec::Debian {
            suite: "bookworm".into(),
        },
    );
    plan.packages = vec!["byteport-no-such-package".into()];
    let (out, _) = build(home.path(), repo.source(), plan);
    match out {
        Err(e @ BuildError::UnknownPackage { .. }) => {
            assert!(e.to_string().contains("`byteport-no-such-package`"), "{e}");
        }
        other => panic!("expected UnknownPackage, got {other:?}"),
    }
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
}

#[test]
fn an_unknown_debian_suite_is_an_unknown_base() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new(
        "deb",
        BaseSpec::Debian {
            suite: "byteport-nosuite".into(),
        },
    );
    plan.packages = vec!["netbase".into()];
    let (out, _) = build(home.path(), repo.source(), plan);
    match out {
        Err(e @ BuildError::UnknownBase { .. }) => {
            assert!(e.to_string().contains("byteport-nosuite"), "{e}")
        }
        other => panic!("expected UnknownBase, got {other:?}"),
    }
}

#[test]
fn apt_in_a_step_keeps_lists_and_archives_in_the_build_cache_and_the_image_reproduces() {
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new(
        "apt-step",
        BaseSpec::Debian {
            suite: "bookworm".into(),
        },
    );
    plan.packages = vec!["netbase".into()];
    plan.steps = vec![Step::Run {
        command:
            "apt-get update -q && apt-get install -y -q --no-install-recommends hello && hello"
                .into(),
    }];
    let first = home();
    let (out, log) = ok(build(first.path(), repo.source(), plan.clone()));
    assert!(
        log.iter().any(|l| l == "[step 1] Hello, world!"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("Removed files that record build times")
                && l.contains("/var/log/apt/history.log")),
        "{log:#?}"
    );
    let img = &out.rootfs_path;
    assert!(exists_in_image(img, "/usr/bin/hello"));
    assert!(
        !debugfs(img, "ls /var/lib/apt/lists").contains("Packages"),
        "apt lists stay out"
    );
    assert!(
        !debugfs(img, "ls /var/cache/apt/archives").contains(".deb"),
        "archives stay out"
    );
    assert!(!exists_in_image(img, "/var/log/apt/history.log"));
    assert!(!exists_in_image(img, "/var/log/dpkg.log"));
    let cache = first
        .path()
        .join("cache/build/_local/apt-step/debian-bookworm");
    let cached = |sub: &str, needle: &str| {
        std::fs::read_dir(cache.join(sub))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(needle))
    };
    assert!(
        cached("apt-cache/archives", "hello_"),
        "the .deb is in the build cache"
    );
    assert!(
        cached("apt-lists", "Packages"),
        "the lists are in the build cache"
    );

    // Same inputs, fresh home: the same image, byte for byte.
    let second = home();
    let (again, log2) = ok(build(second.path(), repo.source(), plan));
    assert_eq!(
        again.digest,
        out.digest,
        "apt in a step is not reproducible:\n{}\n---\n{}",
        log.join("\n"),
        log2.join("\n")
    );
}
