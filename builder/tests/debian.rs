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
