//! The app's directory belongs to the user its processes run as (issue 14:
//! flaskr's first form submission failed with "attempt to write a readonly
//! database" because the build ran as root and the app as uid 1000), and
//! the manifest's volumes, release command, database and instances reach the
//! artifact's descriptor.

mod common;

use common::*;

/// `(uid, gid)` of `path` in the image, from debugfs.
fn owner(image: &std::path::Path, path: &str) -> (u32, u32) {
    let stat = debugfs(image, &format!("stat {path}"));
    let field = |name: &str| -> u32 {
        let rest = stat
            .split(name)
            .nth(1)
            .unwrap_or_else(|| panic!("no {name} in the stat of {path}:\n{stat}"));
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (field("User:"), field("Group:"))
}

fn manifest(extra: &str) -> String {
    format!(
        "app owned
from busybox
{extra}
build {{
  copy site /srv/app
  copy tool.sh /usr/local/bin/tool
  workdir /srv/app
  run mkdir -p made/by/step && echo x > made/by/step/file && ln -s /etc/passwd made/link
}}
web {{
  run busybox httpd -f -p 8080 -h /srv/app
  port 8080
}}
"
    )
}

fn files(manifest: &str) -> Vec<(&str, &str, u32)> {
    vec![
        ("Byteport", manifest, 0o644),
        ("site/index.html", "<h1>hi</h1>\n", 0o644),
        ("site/sub/data.txt", "data\n", 0o644),
        ("tool.sh", "#!/bin/sh\necho tool\n", 0o755),
    ]
}

#[test]
fn the_app_directory_belongs_to_the_app_user_and_nothing_else_does() {
    let home = home();
    let m = manifest("");
    let repo = Repo::with_files(&files(&m));
    let (out, log) = ok(build_manifest(home.path(), repo.source()));
    let img = &out.rootfs_path;
    for path in [
        "/srv/app",
        "/srv/app/index.html",
        "/srv/app/sub",
        "/srv/app/sub/data.txt",
        "/srv/app/made/by/step/file",
        "/srv/app/made/link",
    ] {
        assert_eq!(owner(img, path), (1000, 1000), "{path}");
    }
    // Outside the app's directory everything stays root's: the parent, a
    // copied tool, the system, and the symlink's target.
    for path in [
        "/srv",
        "/usr/local/bin/tool",
        "/bin/busybox",
        "/etc/passwd",
        "/",
    ] {
        assert_eq!(owner(img, path), (0, 0), "{path}");
    }
    let d = &out.descriptor;
    assert_eq!(
        (d.user.name.as_str(), d.user.uid, d.user.gid),
        ("app", 1000, 1000)
    );
    assert!(
        log.iter()
            .any(|l| l.contains("/srv/app belongs to `app` (uid 1000)")
                && l.contains("gone on the next deploy")),
        "{}",
        log.join("\n")
    );
    // Descriptors of apps without the new settings do not mention them.
    let json = String::from_utf8(d.to_json()).unwrap();
    for key in ["volumes", "release", "database", "instances"] {
        assert!(!json.contains(key), "{key} in {json}");
    }
}

#[test]
fn with_user_root_the_app_directory_stays_roots() {
    let home = home();
    let m = manifest("user root");
    let repo = Repo::with_files(&files(&m));
    let (out, log) = ok(build_manifest(home.path(), repo.source()));
    for path in [
        "/srv/app",
        "/srv/app/index.html",
        "/srv/app/made/by/step/file",
    ] {
        assert_eq!(owner(&out.rootfs_path, path), (0, 0), "{path}");
    }
    let u = &out.descriptor.user;
    assert_eq!((u.name.as_str(), u.uid, u.gid), ("root", 0, 0));
    assert!(log.iter().any(|l| l.contains("run as root (`user root`)")));

    // The same files as `app` give another artifact (and the input key
    // tells them apart: no stale cache hit).
    let (as_app, _) = ok(build_manifest(
        home.path(),
        Repo::with_files(&files(&manifest(""))).source(),
    ));
    assert!(!as_app.cache_hit);
    assert_ne!(as_app.digest, out.digest);
}

#[test]
fn volumes_release_database_and_instances_reach_the_descriptor() {
    let home = home();
    let m = manifest(
        "volume data /srv/app/data 64M\nvolume cache /var/cache/app 1G\ndatabase postgres\nrelease {\n  run ./migrate --all\n}",
    );
    let repo = Repo::with_files(&files(&m));
    let (out, _) = ok(build_manifest(home.path(), repo.source()));
    let d = &out.descriptor;
    let vols: Vec<(&str, &str, u64)> = d
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.path.as_str(), v.size_bytes))
        .collect();
    assert_eq!(
        vols,
        [
            ("data", "/srv/app/data", 64 << 20),
            ("cache", "/var/cache/app", 1 << 30)
        ]
    );
    assert_eq!(d.release.as_ref().unwrap().run, "./migrate --all");
    assert_eq!(d.database.as_ref().unwrap().engine, "postgres");
    assert_eq!(d.processes[0].instances, 1);
    let json = String::from_utf8(d.to_json()).unwrap();
    assert!(
        json.contains("\"volumes\"") && json.contains("\"engine\": \"postgres\""),
        "{json}"
    );
    let back: builder::Descriptor = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, d);

    let scaled = "app scaled\nfrom busybox\nweb {\n  run busybox httpd -f -p 8080\n  port 8080\n  instances 3\n}\n";
    let (out, _) = ok(build_manifest(
        home.path(),
        Repo::with_files(&[("Byteport", scaled, 0o644)]).source(),
    ));
    assert_eq!(out.descriptor.processes[0].instances, 3);
    assert!(String::from_utf8(out.descriptor.to_json())
        .unwrap()
        .contains("\"instances\": 3"));
}
