//! Lines of code per language with tokei, on blobs (no files on disk).

use std::collections::BTreeMap;

use tokei::{Config, LanguageType};

use super::LanguageShare;

/// Data and prose formats that say nothing about what a project is written
/// in (GitHub's language bar leaves them out too).
const NOT_CODE: &[LanguageType] = &[
    LanguageType::Json,
    LanguageType::Markdown,
    LanguageType::Text,
    LanguageType::Toml,
    LanguageType::Yaml,
    LanguageType::Svg,
    LanguageType::Xml,
    LanguageType::Jupyter,
];

/// Directories whose contents are someone else's code.
pub fn is_vendored_dir(name: &str) -> bool {
    matches!(
        name,
        "node_modules"
            | "vendor"
            | "third_party"
            | "dist"
            | "build"
            | "target"
            | ".git"
            | "__pycache__"
            | ".venv"
            | "venv"
    )
}

/// The language of a file, from its name, or for files without an
/// extension from a `#!` line. Never touches the filesystem.
pub fn language_of(name: &str, head: &[u8]) -> Option<LanguageType> {
    if name.ends_with(".lock") || name == "package-lock.json" {
        return None;
    }
    let config = Config::default();
    let by_name = if name.contains('.') {
        // A path under a directory that cannot exist, so tokei's shebang
        // fallback never opens a file on the host.
        LanguageType::from_path(format!("/nonexistent-byteport-facts/{name}"), &config)
    } else {
        LanguageType::from_path(format!("/nonexistent-byteport-facts/{name}"), &config)
            .or_else(|| shebang(head))
    };
    by_name.filter(|l| !NOT_CODE.contains(l))
}

fn shebang(head: &[u8]) -> Option<LanguageType> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let mut prog = words.next()?.rsplit('/').next()?.to_string();
    if prog == "env" {
        prog = words.find(|w| !w.starts_with('-'))?.to_string();
    }
    let prog = prog.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(match prog {
        "python" => LanguageType::Python,
        "node" | "nodejs" => LanguageType::JavaScript,
        "sh" | "dash" | "ash" => LanguageType::Sh,
        "bash" => LanguageType::Bash,
        "ruby" => LanguageType::Ruby,
        "perl" => LanguageType::Perl,
        _ => return None,
    })
}

/// Adds up lines of code.
#[derive(Default)]
pub struct Tally {
    lines: BTreeMap<LanguageType, u64>,
}

impl Tally {
    /// Counts one blob.
    pub fn add(&mut self, language: LanguageType, bytes: &[u8]) {
        let stats = language.parse_from_slice(bytes, &Config::default());
        let mut add = |l: LanguageType, n: usize| {
            if n > 0 && !NOT_CODE.contains(&l) {
                *self.lines.entry(l).or_insert(0) += n as u64;
            }
        };
        add(language, stats.code);
        // Embedded languages (e.g. CSS and JS inside HTML).
        for (l, s) in &stats.blobs {
            add(*l, s.code);
        }
    }

    /// Shares, most lines first (ties by name); languages under 0.5 % are
    /// folded into "Other".
    pub fn shares(&self) -> Vec<LanguageShare> {
        let total: u64 = self.lines.values().sum();
        if total == 0 {
            return Vec::new();
        }
        let mut rows: Vec<(String, u64)> = self
            .lines
            .iter()
            .map(|(l, n)| (l.name().to_string(), *n))
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut out = Vec::new();
        let mut other = 0u64;
        for (name, lines) in rows {
            if lines * 200 < total || out.len() >= 8 {
                other += lines;
            } else {
                out.push(LanguageShare {
                    name,
                    lines,
                    permille: 0,
                });
            }
        }
        if other > 0 {
            out.push(LanguageShare {
                name: "Other".into(),
                lines: other,
                permille: 0,
            });
        }
        for row in &mut out {
            row.permille = ((row.lines * 1000 + total / 2) / total) as u32;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shebangs_and_data_files() {
        assert_eq!(language_of("app.py", b""), Some(LanguageType::Python));
        assert_eq!(
            language_of("server.js", b""),
            Some(LanguageType::JavaScript)
        );
        assert_eq!(
            language_of("run", b"#!/usr/bin/env python3\nprint(1)\n"),
            Some(LanguageType::Python)
        );
        assert_eq!(
            language_of("heartbeat", b"#!/bin/sh\n"),
            Some(LanguageType::Sh)
        );
        assert_eq!(language_of("package.json", b"{}"), None);
        assert_eq!(language_of("README.md", b""), None);
        assert_eq!(language_of("Cargo.lock", b""), None);
        assert_eq!(language_of("blob", b"\x00\x01"), None);
    }

    #[test]
    fn shares_add_to_about_a_thousand() {
        let mut t = Tally::default();
        t.add(
            LanguageType::Python,
            b"import os\n\ndef f():\n    return 1\n# c\n",
        );
        t.add(
            LanguageType::Html,
            b"<html>\n<body>\n<p>x</p>\n</body>\n</html>\n",
        );
        let s = t.shares();
        assert_eq!(s[0].name, "HTML");
        assert_eq!(s.iter().map(|r| r.permille).sum::<u32>(), 1000);
    }
}
