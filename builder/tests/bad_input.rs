//! Bad repositories get a clear error before anything heavy happens, and a
//! failed build leaves no artifact behind.

mod common;

use builder::{BaseSpec, BuildError, BuildPlan, Source, Step};
use common::*;

fn copy_all(base: BaseSpec) -> BuildPlan {
    let mut plan = BuildPlan::new("bad", base);
    plan.steps = vec![Step::Copy {
        from: ".".into(),
        to: "/app".into(),
    }];
    plan
}

#[test]
fn a_symlink_out_of_the_tree_is_rejected() {
    let home = home();
    let repo = Repo::with_files(&[("ok", "x", 0o644), ("sub/evil", "../../../etc/shadow", 0)]);
    let (out, _) = build(home.path(), repo.source(), copy_all(BaseSpec::Scratch));
    match out {
        Err(BuildError::SymlinkEscape { path, target }) => {
            assert_eq!(path, "sub/evil");
            assert_eq!(target, "../../../etc/shadow");
        }
        other => panic!("expected SymlinkEscape, got {other:?}"),
    }
    let repo = Repo::with_files(&[("abs", "/etc/passwd", 0)]);
    let (out, _) = build(home.path(), repo.source(), copy_all(BaseSpec::Scratch));
    assert!(
        matches!(out, Err(BuildError::SymlinkEscape { .. })),
        "{out:?}"
    );
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
}

#[test]
fn a_2_gb_file_is_rejected_against_the_disk_cap_without_being_read() {
    let home = home();
    let repo = Repo::with_files(&[("small", "x", 0o644)]);
    let big = std::fs::File::create(repo.path().join("big.bin")).unwrap();
    big.set_len(2 << 30).unwrap();
    drop(big);
    git(repo.path(), &["add", "big.bin"]);
    git(repo.path(), &["commit", "-qm", "big"]);
    let mut plan = copy_all(BaseSpec::Scratch);
    plan.disk_bytes = 1 << 30;
    let start = std::time::Instant::now();
    let (out, _) = build(home.path(), repo.source(), plan);
    match out {
        Err(BuildError::FileTooLarge { path, size, disk }) => {
            assert_eq!((path.as_str(), size, disk), ("big.bin", 2 << 30, 1 << 30));
        }
        other => panic!("expected FileTooLarge, got {other:?}"),
    }
    // Reading and inflating 2 GiB would take far longer than a header lookup.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
}

#[test]
fn a_rootfs_bigger_than_disk_is_rejected_with_both_sizes() {
    let home = home();
    let src = tempfile::tempdir().unwrap();
    // 3 files of 12 MiB of incompressible-ish data: each fits, the image does not.
    for i in 0..3 {
        let data: Vec<u8> = (0..12u32 << 20)
            .map(|x| (x.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(src.path().join(format!("f{i}")), data).unwrap();
    }
    let mut plan = copy_all(BaseSpec::Scratch);
    plan.disk_bytes = 40 << 20;
    let (out, _) = build(home.path(), Source::Dir(src.path().to_path_buf()), plan);
    match out {
        Err(e @ BuildError::RootfsTooLarge { .. }) => {
            assert!(e.to_string().contains("disk is 41943040 bytes"), "{e}")
        }
        other => panic!("expected RootfsTooLarge, got {other:?}"),
    }
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
}

#[test]
fn copy_of_a_missing_path_and_a_missing_build_secret_are_errors() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("bad", BaseSpec::Scratch);
    plan.steps = vec![Step::Copy {
        from: "nope/".into(),
        to: "/app".into(),
    }];
    let src = repo.source();
    let (out, _) = build(home.path(), src.clone(), plan);
    assert!(
        matches!(out, Err(BuildError::BadCopy { number: 1, .. })),
        "{out:?}"
    );
    let mut plan = copy_all(BaseSpec::Scratch);
    plan.build_secrets = vec!["NPM_TOKEN".into()];
    let (out, _) = build(home.path(), src.clone(), plan);
    assert!(
        matches!(out, Err(BuildError::MissingSecret { ref name }) if name == "NPM_TOKEN"),
        "{out:?}"
    );
    let (out, _) = build(
        home.path(),
        repo.source_at("no-such-branch"),
        copy_all(BaseSpec::Scratch),
    );
    assert!(matches!(out, Err(BuildError::Git { .. })), "{out:?}");
}

#[test]
fn build_secrets_reach_steps_only_when_asked_for() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let src = repo.source();
    let mut plan = BuildPlan::new("sec", BaseSpec::Busybox);
    plan.steps = vec![Step::Run {
        command: "echo \"token=${TOKEN:-unset} other=${OTHER:-unset}\"".into(),
    }];
    plan.build_secrets = vec!["TOKEN".into()];
    plan.runtime_secrets = vec!["TOKEN".into(), "OTHER".into()];
    let (out, log) = ok(build_with(home.path(), src, Some(plan), |req| {
        req.secrets.insert("TOKEN".into(), "s3cret".into());
        req.secrets.insert("OTHER".into(), "runtime-only".into());
    }));
    assert!(
        log.iter().any(|l| l == "[step 1] token=s3cret other=unset"),
        "{log:#?}"
    );
    let desc = std::fs::read_to_string(&out.descriptor_path).unwrap();
    assert!(
        !desc.contains("s3cret") && !desc.contains("runtime-only"),
        "secret values never enter the artifact"
    );
}
