//! `byteport manifest check|init`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use manifest_spec::MANIFEST_FILE_NAME;

use crate::cli::ManifestCommand;

/// Manifests larger than this are refused before reading them whole.
const MAX_READ: u64 = 16 << 20;

pub fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Check { path, json } => check(path, json),
        ManifestCommand::Init { dir, name, force } => init(dir, name, force),
    }
}

fn resolve(path: Option<PathBuf>) -> PathBuf {
    let p = path.unwrap_or_else(|| PathBuf::from("."));
    if p.is_dir() {
        p.join(MANIFEST_FILE_NAME)
    } else {
        p
    }
}

fn check(path: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let path = resolve(path);
    std::fs::metadata(&path).with_context(|| {
        format!(
            "no manifest at {} (create one with `byteport manifest init`)",
            path.display()
        )
    })?;
    // Read at most MAX_READ + 1 bytes so the parser can report "too large"
    // itself without us loading a huge file.
    let bytes = read_prefix(&path, MAX_READ + 1)?;
    let origin = path.display().to_string();
    match manifest_spec::parse(&bytes, &origin) {
        Ok(m) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                println!("{}", m.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&diags)?);
            } else {
                eprint!("{diags}");
                if !diags.to_string().ends_with('\n') {
                    eprintln!();
                }
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_prefix(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![];
    f.take(limit)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

/// Turns a directory name into a DNS label (`My_App` → `my-app`).
pub fn dns_safe(name: &str) -> String {
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    let out: String = out.chars().take(63).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "app".into()
    } else {
        out
    }
}

fn init(dir: Option<PathBuf>, name: Option<String>, force: bool) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no such directory {}", dir.display()))?;
    let target = dir.join(MANIFEST_FILE_NAME);
    if target.exists() && !force {
        anyhow::bail!(
            "{} already exists; check it with `byteport manifest check`, or pass --force to replace it",
            target.display()
        );
    }
    let app = match name {
        Some(n) => n,
        None => dns_safe(
            &dir.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        ),
    };
    let mut files = vec![];
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        files.push(entry?.file_name().to_string_lossy().to_string());
    }
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let text = manifest_spec::starter_manifest(&app, &refs);
    std::fs::write(&target, &text).with_context(|| format!("writing {}", target.display()))?;
    match manifest_spec::parse(text.as_bytes(), &target.display().to_string()) {
        Ok(m) => println!("wrote {}: {}", target.display(), m.summary()),
        Err(d) => anyhow::bail!("the starter manifest did not check (a BytePort bug):\n{d}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_safe_names() {
        assert_eq!(super::dns_safe("My_App"), "my-app");
        assert_eq!(super::dns_safe("--x--"), "x");
        assert_eq!(super::dns_safe("..."), "app");
        assert_eq!(super::dns_safe(&"a".repeat(80)).len(), 63);
    }
}
