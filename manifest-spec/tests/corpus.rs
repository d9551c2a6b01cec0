//! Golden corpus: `tests/corpus/valid/*.byteport` must parse into the
//! normalized JSON stored next to them (`.json`); `tests/corpus/invalid/*.byteport`
//! must fail with exactly the rendered diagnostics in `.expected`.
//!
//! Regenerate the golden files after an intended change with
//! `BLESS=1 cargo test -p manifest-spec --test corpus`, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "byteport"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus {kind} is nearly empty: {files:?}");
    files
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v != "0")
}

/// Compares `actual` with the golden file, or writes it under BLESS.
/// Returns a description of the mismatch, if any.
fn golden(path: &Path, actual: &str) -> Option<String> {
    if bless() {
        fs::write(path, actual).unwrap();
        return None;
    }
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(e) => Some(format!(
            "{}: {e} (run with BLESS=1 to create it)\n--- actual\n{actual}",
            path.display()
        )),
    }
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn valid_manifests_parse_to_their_golden_json() {
    let mut failures = Vec::new();
    for path in corpus("valid") {
        let bytes = fs::read(&path).unwrap();
        match manifest_spec::parse(&bytes, &name(&path)) {
            Ok(m) => {
                let json = serde_json::to_string_pretty(&m).unwrap() + "\n";
                failures.extend(golden(&path.with_extension("json"), &json));
            }
            Err(e) => failures.push(format!("{} should parse:\n{e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_manifests_fail_with_their_golden_diagnostics() {
    let mut failures = Vec::new();
    for path in corpus("invalid") {
        let bytes = fs::read(&path).unwrap();
        match manifest_spec::parse(&bytes, &name(&path)) {
            Ok(m) => failures.push(format!("{} should fail, parsed as {m:?}", path.display())),
            Err(e) => {
                assert!(!e.is_empty());
                for d in e.iter() {
                    assert!(d.line >= 1 && d.col >= 1, "{d:?}");
                }
                failures.extend(golden(&path.with_extension("expected"), &e.to_string()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_golden_file_has_its_manifest() {
    for kind in ["valid", "invalid"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(kind);
        for entry in fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension()
                .is_some_and(|x| x == "json" || x == "expected")
            {
                assert!(
                    p.with_extension("byteport").exists(),
                    "stale golden file {}",
                    p.display()
                );
            }
        }
    }
}
