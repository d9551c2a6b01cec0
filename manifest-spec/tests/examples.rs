//! Every `examples/*/Byteport` in the repository, and the first example of
//! SPEC.md, must pass `parse`.

use std::path::Path;

#[test]
fn every_example_manifest_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display())) {
        let dir = entry.unwrap().path();
        let file = dir.join(manifest_spec::MANIFEST_FILE_NAME);
        if !dir.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let m = manifest_spec::parse(&bytes, &file.display().to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(m.summary().contains("Byteport manifest OK"));
        seen.push(m.app);
    }
    seen.sort();
    for required in [
        "node-web",
        "python-flask",
        "static-site",
        "worker",
        "flask-tutorial",
    ] {
        assert!(
            seen.iter().any(|a| a == required),
            "missing example {required}: {seen:?}"
        );
    }
}

#[test]
fn the_spec_example_parses() {
    let spec = include_str!("../SPEC.md");
    let start = spec.find("```\n").expect("SPEC.md has a code block") + 4;
    let end = start + spec[start..].find("```").unwrap();
    let m = manifest_spec::parse(&spec.as_bytes()[start..end], "SPEC.md")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.app, "hello-flask");
    assert!(m
        .secrets
        .iter()
        .any(|s| s.name == "PIP_INDEX_TOKEN" && s.at_build));
    assert_eq!(m.domains, ["hello.example.com"]);
}
