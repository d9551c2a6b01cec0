//! `starter_manifest` output must itself pass `parse` for every kind of
//! repository, and pick the right base and command.

use manifest_spec::{parse, starter_manifest, Base, BuildStep};

fn parsed(name: &str, files: &[&str]) -> manifest_spec::Manifest {
    let text = starter_manifest(name, files);
    assert!(text.starts_with("# Byteport manifest for"), "{text}");
    parse(text.as_bytes(), "Byteport").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn node_repositories_get_debian_nodejs_and_npm_ci() {
    let m = parsed("shop", &["package.json", "package-lock.json", "server.js"]);
    assert_eq!(
        m.base,
        Base::Debian {
            suite: "bookworm".into()
        }
    );
    assert!(m.packages.contains(&"nodejs".to_string()));
    assert!(m.packages.contains(&"npm".to_string()));
    assert!(m
        .build
        .iter()
        .any(|s| matches!(s, BuildStep::Run { command, .. } if command == "npm ci --omit=dev")));
    let m = parsed("shop", &["package.json"]);
    assert!(m.build.iter().any(
        |s| matches!(s, BuildStep::Run { command, .. } if command.starts_with("npm install"))
    ));
}

#[test]
fn python_repositories_get_a_venv() {
    for files in [&["requirements.txt", "app.py"][..], &["pyproject.toml"][..]] {
        let m = parsed("api", files);
        assert!(
            m.packages.contains(&"python3-venv".to_string()),
            "{files:?}"
        );
        assert!(m.web.unwrap().run.starts_with("/app/.venv/bin/python"));
    }
}

#[test]
fn static_sites_get_busybox_httpd() {
    let m = parsed("site", &["index.html", "style.css"]);
    assert_eq!(m.base, Base::Busybox);
    assert_eq!(m.web.unwrap().run, "busybox httpd -f -p 8080 -h /app");
}

#[test]
fn anything_else_gets_a_generic_manifest() {
    let m = parsed("Weird Name!", &["main.go"]);
    assert_eq!(m.app, "weird-name");
    assert!(m.web.is_some());
    let m = parsed("", &[]);
    assert_eq!(m.app, "app");
}
