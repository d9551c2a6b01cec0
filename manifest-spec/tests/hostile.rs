//! Hostile input: huge, binary, deeply nested, random. Every case must end
//! in diagnostics (never a panic, never a manifest), with a clear message.

use manifest_spec::{limits, parse};
use proptest::prelude::*;

fn first_message(src: &[u8]) -> String {
    let e = parse(src, "Byteport").expect_err("hostile input must be rejected");
    assert!(!e.is_empty());
    let text = e.to_string();
    assert!(text.starts_with("Byteport:"), "{text}");
    e.iter().next().unwrap().message.clone()
}

#[test]
fn ten_megabytes_are_rejected_by_size_before_parsing() {
    let mut src = b"app big\nfrom busybox\n".to_vec();
    src.resize(10 << 20, b'#');
    let msg = first_message(&src);
    assert!(msg.contains("the limit is 1048576 bytes"), "{msg}");
}

#[test]
fn input_just_under_the_cap_is_parsed_in_full() {
    // A valid manifest padded with comments to just under 1 MiB still parses.
    let mut src = b"app big\nfrom busybox\nworker {\n  run true\n}\n".to_vec();
    while src.len() < limits::MAX_MANIFEST_BYTES - 100 {
        src.extend_from_slice(b"# padding padding padding padding padding padding\n");
    }
    assert!(parse(&src, "Byteport").is_ok());
}

#[test]
fn many_bad_lines_report_a_bounded_number_of_errors() {
    // 200 KB keeps the unoptimized test quick; benches/parse.rs times 1 MiB.
    let mut src = Vec::new();
    while src.len() < 200_000 {
        src.extend_from_slice(b"memroy 1G\n");
    }
    let e = parse(&src, "Byteport").unwrap_err();
    assert_eq!(e.len(), limits::MAX_DIAGNOSTICS + 1);
    assert!(e
        .iter()
        .last()
        .unwrap()
        .message
        .starts_with("too many errors"));
}

#[test]
fn ten_thousand_nested_braces_get_a_clear_error() {
    let one_line = "{".repeat(10_000);
    assert!(first_message(one_line.as_bytes()).contains("expected a directive"));
    let closed = format!("{}{}", "{\n".repeat(10_000), "}\n".repeat(10_000));
    assert!(first_message(closed.as_bytes()).contains("expected a directive"));
    let blocks: String = (0..10_000).map(|i| format!("b{i} {{\n")).collect();
    assert!(first_message(blocks.as_bytes()).contains("unknown block `b0`"));
    // Nested inside a real block: the first inner header opens a skipped
    // block (blocks do not nest), and the surplus braces are unmatched.
    let inner = format!(
        "app n\nfrom busybox\nvm {{\n{}{}",
        "x {\n".repeat(10_000),
        "}\n".repeat(10_000)
    );
    let e = parse(inner.as_bytes(), "Byteport").unwrap_err();
    let first = e.iter().next().unwrap();
    assert_eq!(first.message, "unknown block `x` in the `vm` block");
    assert_eq!(
        first.hint.as_deref(),
        Some("blocks do not nest; close this block with `}` first")
    );
    assert!(e.iter().any(|d| d.message == "unmatched `}`"));
    assert!(e.len() <= limits::MAX_DIAGNOSTICS + 1);
}

#[test]
fn empty_and_non_utf8_input_get_clear_errors() {
    assert_eq!(first_message(b""), "manifest is empty");
    assert_eq!(first_message(b"\n \t\r\n"), "manifest is empty");
    assert!(first_message(b"app \xc3\x28x").contains("not valid UTF-8"));
    assert!(first_message(&[0xff; 64]).contains("not valid UTF-8"));
    assert!(first_message(b"app x\0").contains("control character U+0000"));
}

/// The language's own tokens: soups of them are the most likely way to reach
/// odd corners of the grammar.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "app",
        "from",
        "packages",
        "build",
        "env",
        "secret",
        "vm",
        "web",
        "worker",
        "domains",
        "portfolio",
        "copy",
        "workdir",
        "run",
        "cpus",
        "memory",
        "disk",
        "port",
        "health",
        "every",
        "timeout",
        "title",
        "tags",
        "screenshot",
        "wait",
        "description",
        "publish",
        "network",
        "user",
        "volume",
        "database",
        "release",
        "instances",
        "root",
        "postgres",
        "data",
        "/data",
        "/proc",
        "/app/instance",
        "16M",
        "on",
        "off",
        "{",
        "}",
        "\n",
        "\n",
        "\n",
        "\r\n",
        " ",
        "\t",
        "=",
        "#",
        "\"",
        "\\",
        "\"x\\q\"",
        "\"\\u{1F600}\"",
        "GET",
        "/healthz",
        "8080",
        "0",
        "99999",
        "256M",
        "1G",
        "5s",
        "2ms",
        "debian:bookworm",
        "busybox",
        "scratch",
        "A_B",
        "hello",
        ".",
        "/app",
        "auto",
        "review",
        "build",
        "é",
        "x.example.com",
    ])
}

/// Lines of 0-6 tokens, separated by spaces.
fn token_soup() -> impl Strategy<Value = String> {
    let line = prop::collection::vec(token(), 0..6).prop_map(|v| v.join(" "));
    prop::collection::vec(line, 0..30).prop_map(|v| v.join("\n"))
}

const DRAFT: &str = include_str!("corpus/valid/draft.byteport");

/// The product draft with one span deleted and a token inserted.
fn mutated_draft() -> impl Strategy<Value = String> {
    (0..DRAFT.len(), 0usize..40, token()).prop_map(|(at, len, tok)| {
        let mut at = at;
        while !DRAFT.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + len).min(DRAFT.len());
        while !DRAFT.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{tok}{}", &DRAFT[..at], &DRAFT[end..])
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes, "Byteport").map(|m| m.summary()).map_err(|e| e.to_string());
    }

    #[test]
    fn token_soups_never_panic_and_errors_point_inside_the_input(src in token_soup()) {
        match parse(src.as_bytes(), "Byteport") {
            Ok(m) => {
                // Whatever parses must survive a JSON round trip.
                let json = serde_json::to_string(&m).unwrap();
                let back: manifest_spec::Manifest = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(back, m);
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                let lines = src.split('\n').count().max(1);
                for d in e.iter() {
                    prop_assert!(d.line >= 1 && d.line <= lines, "{:?} in {:?}", d, src);
                    prop_assert!(d.col >= 1);
                }
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn mutated_manifests_never_panic_and_point_inside_the_input(src in mutated_draft()) {
        if let Err(e) = parse(src.as_bytes(), "Byteport") {
            let lines = src.split('\n').count();
            for d in e.iter() {
                prop_assert!(d.line >= 1 && d.line <= lines, "{:?} in {:?}", d, src);
                prop_assert!(d.col >= 1 && d.col <= d.source_line.chars().count() + 1, "{:?}", d);
            }
            let _ = e.to_string();
        }
    }

    #[test]
    fn volume_lines_with_random_values_parse_or_are_explained_on_their_line(
        name in "[a-zA-Z0-9_-]{0,40}",
        path in prop::sample::select(vec![
            "/data", "/app/instance", "/", "/proc", "/proc/1", "/sys", "/dev/x", "/tmp",
            "/usr", "/etc/x", "data", "/a//b", "/a/..", "/x/", "/app", "/app/x",
            "/var/lib/pg", "/\u{e9}", "/a b",
        ]),
        size in 0u64..5000,
        unit in prop::sample::select(vec!["K", "M", "G", "", "T", "MB"]),
        instances in 0u32..20,
    ) {
        let src = format!(
            "app p\nfrom busybox\nvolume {name} \"{path}\" {size}{unit}\nweb {{\n  run ./s\n  port 80\n  instances {instances}\n}}\n"
        );
        match parse(src.as_bytes(), "Byteport") {
            Ok(m) => {
                prop_assert_eq!(m.volumes.len(), 1);
                let v = &m.volumes[0];
                prop_assert!(v.size_bytes >= 16 << 20 && v.size_bytes <= 1 << 40);
                prop_assert!(v.path.starts_with('/') && v.path.len() > 1);
                prop_assert!(!v.path.starts_with("/proc") && !v.path.starts_with("/app"));
                prop_assert_eq!(m.web.unwrap().instances, 1);
            }
            Err(e) => {
                for d in e.iter() {
                    prop_assert!(d.line == 3 || d.line == 7, "{}", e);
                }
            }
        }
    }

    #[test]
    fn valid_manifests_with_random_values_parse_or_explain(
        cpus in 0u32..40,
        mem in 0u64..100_000,
        unit in prop::sample::select(vec!["K", "M", "G", "", "MB"]),
        port in 0u32..70_000,
        every in 0u64..1000,
    ) {
        let src = format!(
            "app p\nfrom busybox\nvm {{\n  cpus {cpus}\n  memory {mem}{unit}\n}}\nweb {{\n  run ./s\n  port {port}\n  health /h every {every}s\n}}\n"
        );
        match parse(src.as_bytes(), "Byteport") {
            Ok(m) => {
                prop_assert!((1..=32).contains(&m.vm.cpus));
                prop_assert!(m.vm.memory_bytes >= 32 << 20);
                prop_assert!((1..=65535).contains(&port));
            }
            Err(e) => prop_assert!(e.iter().all(|d| d.line >= 4 && d.line <= 10), "{}", e),
        }
    }
}
