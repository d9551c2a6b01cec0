//! Facts from real git repositories (made with the git CLI), hostile ones
//! included.

mod support;

use portfolio::facts::{gather, Limits, PublishPolicy};

const MANIFEST: &str = "app hello\nfrom debian:bookworm\nenv {\n  TOKEN = \"s3cret\"\n}\nweb {\n  run python3 app.py\n  port 8080\n}\nportfolio {\n  title \"Hello Flask\"\n  tags python flask\n  screenshot /about wait 2s\n  publish auto\n}\n";

#[test]
fn a_normal_project() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, head) = support::bare_repo(
        dir.path(),
        &[
            ("alice@example.invalid", 1_767_225_600, vec![
                ("Byteport", MANIFEST.as_bytes().to_vec()),
                ("README.md", b"# Hello Flask\n\n[![ci](https://x/b.svg)](https://x)\n\nA Flask app that says hello.\n\nIt runs in a microVM.\n".to_vec()),
                ("app.py", b"from flask import Flask\n\napp = Flask(__name__)\n\n# a comment\n@app.get('/')\ndef index():\n    return 'hi'\n".to_vec()),
                ("requirements.txt", b"Flask==3.0\n".to_vec()),
            ]),
            ("bob@example.invalid", 1_772_323_200, vec![
                ("templates/index.html", b"<html>\n<body>\n<h1>hi</h1>\n</body>\n</html>\n".to_vec()),
                ("bin/run", b"#!/usr/bin/env bash\necho run\n".to_vec()),
                ("node_modules/x/index.js", b"var vendored = 1;\n".to_vec()),
            ]),
            ("alice@example.invalid", 1_772_409_600, vec![("app.py", b"print('v3')\n".to_vec())]),
        ],
    );
    let f = gather("hello", &repo, &head, &Limits::default()).unwrap();
    assert_eq!(f.commit, head);
    assert_eq!(f.manifest.title, "Hello Flask");
    assert_eq!(f.manifest.tags, ["python", "flask"]);
    assert_eq!(f.manifest.publish, PublishPolicy::Auto);
    let shot = f.manifest.screenshot.as_ref().unwrap();
    assert_eq!((shot.path.as_str(), shot.wait_ms), ("/about", 2000));
    let readme = f.readme.as_ref().unwrap();
    assert_eq!(readme.title.as_deref(), Some("Hello Flask"));
    assert_eq!(
        readme.paragraphs,
        ["A Flask app that says hello.", "It runs in a microVM."]
    );
    let langs: Vec<(&str, u64)> = f
        .languages
        .iter()
        .map(|l| (l.name.as_str(), l.lines))
        .collect();
    assert_eq!(
        langs,
        [("HTML", 5), ("BASH", 1), ("Python", 1)],
        "vendored JS not counted"
    );
    assert_eq!(f.frameworks, ["Flask"]);
    assert_eq!((f.history.commits, f.history.authors), (3, 2));
    assert_eq!(
        (f.history.first_commit, f.history.last_commit),
        (1_767_225_600, 1_772_409_600)
    );
    assert!(
        !serde_json::to_string(&f).unwrap().contains("s3cret"),
        "env values never enter the facts"
    );
    assert!(f.notes.is_empty(), "{:?}", f.notes);
}

#[test]
fn hostile_repositories_cost_bounded_work_and_leave_notes() {
    let dir = tempfile::tempdir().unwrap();
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect::<String>() + "deep.py";
    let big = "x = 1\n".repeat(200_000); // 1.2 MB of Python
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("README.md", b"\x00\x01binary readme\xff".to_vec()),
        ("Byteport", b"app \xff\xfe broken\n".to_vec()),
        ("big.py", big.into_bytes()),
        ("bad.py", b"print('\xff\xfe invalid utf-8')\n".to_vec()),
        ("package.json", b"{ not json".to_vec()),
    ];
    files.push((deep.as_str(), b"print('deep')\n".to_vec()));
    let many: Vec<String> = (0..300).map(|i| format!("many/f{i}.txt")).collect();
    for m in &many {
        files.push((m.as_str(), b"x\n".to_vec()));
    }
    let (repo, head) =
        support::bare_repo(dir.path(), &[("eve@example.invalid", 1_767_225_600, files)]);
    let limits = Limits {
        max_entries: 200,
        max_depth: 24,
        max_blob_bytes: 512 * 1024,
        ..Limits::default()
    };
    let f = gather("evil", &repo, &head, &limits).unwrap();
    assert_eq!(
        f.manifest.title, "evil",
        "a broken manifest falls back to the app name"
    );
    assert!(f.readme.is_none());
    let notes = f.notes.join("\n");
    for expected in [
        "README.md looks binary",
        "does not parse",
        "more than 200 entries",
        "over 512 KiB",
    ] {
        assert!(
            notes.contains(expected),
            "missing note {expected:?} in:\n{notes}"
        );
    }
    // The invalid-UTF-8 file still counts as Python.
    assert_eq!(f.languages[0].name, "Python");

    let f = gather(
        "evil",
        &repo,
        &head,
        &Limits {
            max_depth: 5,
            ..Limits::default()
        },
    )
    .unwrap();
    assert!(
        f.notes.iter().any(|n| n.contains("deeper than 5 levels")),
        "{:?}",
        f.notes
    );
}

#[test]
fn bad_inputs_are_errors_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let e = gather(
        "x",
        &dir.path().join("missing.git"),
        &"0".repeat(40),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing.git"), "{e}");
    let (repo, _) = support::bare_repo(dir.path(), &[("a@b", 1, vec![("a.txt", b"a".to_vec())])]);
    let e = gather("x", &repo, &"1".repeat(40), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains(&"1".repeat(40)), "{e}");
    let e = gather("x", &repo, "main", &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("not a full commit id"), "{e}");
}
