//! Real builds of small git repositories on the busybox and scratch bases,
//! inspected with debugfs.

mod common;

use builder::{BaseSpec, BuildError, BuildPlan, Source, Step};
use common::*;

fn app_plan() -> BuildPlan {
    let mut plan = BuildPlan::new("hello", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Copy { from: ".".into(), to: "/app".into() },
        Step::Workdir { path: "/app".into() },
        Step::Run { command: "echo built in $(pwd) as $(id -u) > built.txt; echo GREETING=$GREETING; echo to-stderr >&2".into() },
    ];
    plan.env.insert("GREETING".into(), "hi".into());
    plan.web = Some(builder::plan::Process {
        name: "web".into(),
        run: "httpd -f -p 8080 -h /app".into(),
    });
    plan.port = Some(8080);
    plan.health = Some(builder::plan::Health {
        method: "GET".into(),
        path: "/".into(),
        interval_ms: 5000,
        timeout_ms: 2000,
    });
    plan.workers = vec![builder::plan::Process {
        name: "jobs".into(),
        run: "sh jobs.sh".into(),
    }];
    plan
}

const FILES: &[(&str, &str, u32)] = &[
    ("index.html", "<h1>hello</h1>\n", 0o644),
    ("bin/start.sh", "#!/bin/sh\nexec httpd -f\n", 0o755),
    ("data/nested/deep.txt", "deep\n", 0o600),
    ("current", "data/nested/deep.txt", 0),
    ("data/up", "../index.html", 0),
];

#[test]
fn busybox_app_from_a_commit_has_files_modes_links_and_a_descriptor_and_rebuilds_from_cache() {
    let home = home();
    let repo = Repo::with_files(FILES);
    let head = repo.head();
    let src = repo.source_at("main");
    let (out, log) = ok(build(home.path(), src.clone(), app_plan()));
    assert!(!out.cache_hit);
    assert!(log.iter().any(|l| l == "[step 3] GREETING=hi"), "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("overlay unavailable")),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l == "[step 3] to-stderr"), "{log:#?}");

    let img = &out.rootfs_path;
    let ls = debugfs(img, "ls -l /app");
    for name in ["index.html", "bin", "data", "current", "built.txt"] {
        assert!(ls.contains(name), "{name} missing in /app:\n{ls}");
    }
    assert!(!ls.contains(".git"), "{ls}");
    assert!(debugfs(img, "stat /app/bin/start.sh").contains("Mode:  0755"));
    // git keeps only the executable bit: 0600 in the work tree is 0644 in the commit
    assert!(debugfs(img, "stat /app/data/nested/deep.txt").contains("Mode:  0644"));
    let link = debugfs(img, "stat /app/current");
    assert!(
        link.contains("Type: symlink") && link.contains("data/nested/deep.txt"),
        "{link}"
    );
    assert!(debugfs(img, "stat /app/data/up").contains("../index.html"));
    assert_eq!(debugfs(img, "cat /app/built.txt"), "built in /app as 0\n");
    assert!(debugfs(img, "stat /bin/sh").contains("Type: symlink"));
    assert!(
        debugfs(img, "stat /app/index.html").contains("mtime: 0x12cea600"),
        "fixed mtime"
    );

    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out.descriptor_path).unwrap()).unwrap();
    assert_eq!(desc["app"], "hello");
    assert_eq!(desc["port"], 8080);
    assert_eq!(desc["workdir"], "/app");
    assert_eq!(desc["env"]["GREETING"], "hi");
    assert_eq!(desc["processes"][0]["kind"], "web");
    assert_eq!(desc["processes"][1]["name"], "jobs");
    assert_eq!(desc["health"]["path"], "/");
    assert_eq!(desc["user"]["uid"], 1000);
    assert!(desc["cmdline"].as_str().unwrap().contains("root=/dev/vda"));
    assert_eq!(
        desc["rootfs"]["size"],
        std::fs::metadata(img).unwrap().len()
    );
    assert!(out
        .descriptor_path
        .starts_with(home.path().join("artifacts").join(&out.digest)));

    // Same input: nothing rebuilt, same digest.
    let (again, _) = ok(build(home.path(), repo.source_at(&head), app_plan()));
    assert!(again.cache_hit);
    assert_eq!(again.digest, out.digest);

    // Rebuilt from scratch (new home, same base cache): byte-identical artifact.
    let other = common::home();
    let (fresh, _) = ok(build(other.path(), src, app_plan()));
    assert!(!fresh.cache_hit);
    assert_eq!(fresh.digest, out.digest, "reproducible digest");

    // One changed file: new digest.
    repo.commit(&[("index.html", "<h1>changed</h1>\n", 0o644)], "change");
    let (changed, _) = ok(build(home.path(), repo.source(), app_plan()));
    assert!(!changed.cache_hit);
    assert_ne!(changed.digest, out.digest);
    assert_eq!(
        debugfs(&changed.rootfs_path, "cat /app/index.html"),
        "<h1>changed</h1>\n"
    );
}

#[test]
fn steps_are_isolated_from_the_host() {
    let home = home();
    let marker = format!("byteport-host-marker-{}", std::process::id());
    let host_marker = std::env::temp_dir().join(&marker);
    std::fs::write(&host_marker, "x").unwrap();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("iso", BaseSpec::Busybox);
    plan.steps = vec![Step::Run {
        command: format!(
            "echo pid=$$ > /out; hostname >> /out; ls /proc | grep -c '^[0-9]' >> /out; \
             test -e /tmp/{marker} && echo host-visible >> /out; ls /dev >> /out; echo done >> /out"
        ),
    }];
    let (out, log) = ok(build(home.path(), repo.source(), plan));
    let seen = debugfs(&out.rootfs_path, "cat /out");
    std::fs::remove_file(host_marker).unwrap();
    assert!(seen.starts_with("pid=1\nbyteport-build\n"), "{seen}");
    assert!(!seen.contains("host-visible"), "{seen}");
    assert!(
        seen.contains("null") && seen.contains("urandom") && seen.ends_with("done\n"),
        "{seen}"
    );
    // the step's /dev and /proc were mounts of its own namespace: empty in the image
    assert!(!debugfs(&out.rootfs_path, "ls /dev").contains("null"));
    assert!(
        log.iter()
            .any(|l| l.contains("cgroup v1") || l.contains("cgroup v2"))
            || std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    );
}

#[test]
fn a_failing_step_reports_number_command_code_and_output_and_leaves_nothing() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("fail", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Copy {
            from: ".".into(),
            to: "/app".into(),
        },
        Step::Run {
            command: "true".into(),
        },
        Step::Run {
            command: "for i in $(seq 1 80); do echo line $i; done; exit 3".into(),
        },
    ];
    let (out, _) = build(home.path(), repo.source(), plan);
    match out {
        Err(BuildError::StepFailed {
            number,
            command,
            status,
            last_lines,
        }) => {
            assert_eq!(number, 3);
            assert!(command.contains("exit 3"));
            assert_eq!(status, "exit code 3");
            assert_eq!(last_lines.len(), 50);
            assert_eq!(last_lines.last().unwrap(), "line 80");
        }
        other => panic!("expected StepFailed, got {other:?}"),
    }
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
    assert!(mounts_matching(".tmp-build-").is_empty());
}

#[test]
fn a_step_past_its_timeout_is_killed_with_its_whole_tree() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("slow", BaseSpec::Busybox);
    plan.steps = vec![Step::Run {
        command: "echo started; (sleep 4242 &); sleep 4243 & sleep 4244".into(),
    }];
    let start = std::time::Instant::now();
    let (out, _) = build_with(home.path(), repo.source(), Some(plan), |req| {
        req.step_timeout = std::time::Duration::from_secs(2)
    });
    match out {
        Err(BuildError::StepTimeout {
            number: 1,
            last_lines,
            ..
        }) => assert_eq!(last_lines, vec!["started"]),
        other => panic!("expected StepTimeout, got {other:?}"),
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    for n in ["sleep 4242", "sleep 4243", "sleep 4244"] {
        assert_eq!(processes_matching(n), Vec::<String>::new(), "stray process");
    }
    assert_eq!(store_leftovers(home.path()), Vec::<String>::new());
    assert_eq!(mounts_matching(".tmp-build-"), Vec::<String>::new());
}

#[test]
fn background_processes_of_a_successful_step_do_not_outlive_it() {
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("bg", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Run {
            command: "(setsid sleep 4245 > /dev/null 2>&1 &); echo spawned".into(),
        },
        Step::Run {
            command: "echo second".into(),
        },
    ];
    let (_, log) = ok(build(home.path(), repo.source(), plan));
    assert!(log.iter().any(|l| l == "[step 1] spawned"), "{log:#?}");
    assert_eq!(
        processes_matching("sleep 4245"),
        Vec::<String>::new(),
        "a daemonized step process survived"
    );
}

#[test]
fn run_steps_on_scratch_need_a_shell_and_scratch_images_hold_only_the_app() {
    let home = home();
    let src = tempfile::tempdir().unwrap();
    write_files(src.path(), &[("app/server", "binary", 0o755)]);
    let mut plan = BuildPlan::new("s", BaseSpec::Scratch);
    plan.steps = vec![Step::Copy {
        from: "app/server".into(),
        to: "/server".into(),
    }];
    let (out, _) = ok(build(
        home.path(),
        Source::Dir(src.path().to_path_buf()),
        plan.clone(),
    ));
    let ls = debugfs(&out.rootfs_path, "ls /");
    assert!(
        ls.contains("server") && !ls.contains("bin") && !ls.contains("app"),
        "{ls}"
    );
    plan.steps.push(Step::Run {
        command: "true".into(),
    });
    let (err, _) = build(home.path(), Source::Dir(src.path().to_path_buf()), plan);
    assert!(
        matches!(err, Err(BuildError::NoShell { number: 2, .. })),
        "{err:?}"
    );
}

#[test]
fn what_a_step_writes_as_root_is_owned_by_root_in_the_image() {
    // The step is root only of its user namespace (an unprivileged host
    // uid), yet the image must look as if root had built it.
    let home = home();
    let repo = Repo::with_files(&[("a", "a", 0o644)]);
    let mut plan = BuildPlan::new("owners", BaseSpec::Busybox);
    plan.steps = vec![
        Step::Copy {
            from: ".".into(),
            to: "/app".into(),
        },
        Step::Run {
            command:
                "set -e; echo x > /app/by-root; echo y > /app/by-app; chown 1000:1000 /app/by-app; \
                      mkdir -p /srv/data && chown 65534:65534 /srv/data; touch /app/a"
                    .into(),
        },
    ];
    let (out, _) = ok(build(home.path(), repo.source(), plan));
    let owner = |p: &str| {
        let s = debugfs(&out.rootfs_path, &format!("stat {p}"));
        let f: Vec<&str> = s.split_whitespace().collect();
        let at = |k: &str| f.iter().position(|w| *w == k).map(|i| f[i + 1].to_string());
        (
            at("User:").unwrap_or_default(),
            at("Group:").unwrap_or_default(),
        )
    };
    assert_eq!(owner("/app/by-root"), ("0".into(), "0".into()));
    assert_eq!(
        owner("/app/a"),
        ("0".into(), "0".into()),
        "copied, then touched"
    );
    assert_eq!(owner("/app/by-app"), ("1000".into(), "1000".into()));
    assert_eq!(owner("/srv/data"), ("65534".into(), "65534".into()));
    assert_eq!(
        owner("/bin/busybox"),
        ("0".into(), "0".into()),
        "base files untouched"
    );
}
