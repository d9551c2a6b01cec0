//! Building binaries for use inside a test VM: static programs (glibc with
//! `+crt-static`, the only target these machines have) in their own target
//! directory, test executables of a package, and the workspace's ordinary
//! (dynamic) binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What [`static_build`] compiles.
#[derive(Debug, Clone, Copy)]
pub enum Artifact<'a> {
    /// A `[[bin]]` target.
    Bin(&'a str),
    /// An example (`examples/<name>.rs`).
    Example(&'a str),
}

/// The workspace root (this crate lives at `<workspace>/tests/testvm`).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("testvm lives at <workspace>/tests/testvm")
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn cargo(args: &[&str], static_flags: bool) -> Result<Output, String> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace()).args(args);
    if static_flags {
        // Its own target directory, so the static flags never invalidate the
        // normal build, and later runs are incremental.
        cmd.env("CARGO_TARGET_DIR", target_dir().join("static"))
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            // Would override RUSTFLAGS if the caller's environment has it.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("CARGO_PROFILE_DEV_DEBUG", "0");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running cargo {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

/// Compiles `artifact` of workspace package `package` as a static binary
/// (dev profile without debug info) into `<target>/static` and returns its path.
pub fn static_build(package: &str, artifact: Artifact<'_>) -> Result<PathBuf, String> {
    let (flag, name, sub) = match artifact {
        Artifact::Bin(n) => ("--bin", n, ""),
        Artifact::Example(n) => ("--example", n, "examples/"),
    };
    cargo(
        &[
            "build", "--locked", "-p", package, flag, name, "--target", TARGET,
        ],
        true,
    )?;
    let bin = target_dir()
        .join("static")
        .join(TARGET)
        .join("debug")
        .join(sub)
        .join(name);
    if !bin.is_file() {
        return Err(format!("{} missing after the build", bin.display()));
    }
    Ok(bin)
}

/// Compiles binaries `bins` of `package` statically with the release profile
/// (a VMM running inside an emulated level 1 wants the speed) and returns the
/// directory holding them.
pub fn static_release_bins(package: &str, bins: &[&str]) -> Result<PathBuf, String> {
    let mut args = vec!["build", "--locked", "-p", package, "--release"];
    for b in bins {
        args.extend(["--bin", b]);
    }
    args.extend(["--target", TARGET]);
    cargo(&args, true)?;
    Ok(target_dir().join("static").join(TARGET).join("release"))
}

/// Compiles integration test `test` of `package` as a static executable (so
/// it can run inside a test VM) and returns its path.
pub fn static_test_binary(package: &str, test: &str) -> Result<PathBuf, String> {
    let out = cargo(
        &[
            "test",
            "--locked",
            "-p",
            package,
            "--no-run",
            "--message-format=json",
            "--test",
            test,
            "--target",
            TARGET,
        ],
        true,
    )?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == test)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo did not report the `{test}` test executable"))
}

/// Builds binary `bin` of `package` the ordinary way (dynamic, dev profile,
/// the normal target directory) and returns its path — e.g. the guest init,
/// `("guest-init", "byteport-init")`, whose libraries the runtime copies
/// into the initramfs itself.
pub fn workspace_bin(package: &str, bin: &str) -> Result<PathBuf, String> {
    cargo(&["build", "--locked", "-p", package, "--bin", bin], false)?;
    let path = target_dir().join("debug").join(bin);
    if !path.is_file() {
        return Err(format!("{} missing after the build", path.display()));
    }
    Ok(path)
}

/// The full path of `tool` on PATH, if it is there.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}
