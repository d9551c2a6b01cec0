//! clap arguments and run functions for `byteport setup` and `byteport
//! build`, so the binary wires each with one line.

use crate::build::{build, BuildOutcome, BuildRequest, Source, DEFAULT_STEP_TIMEOUT};
use crate::error::Result;
use crate::log::StderrSink;
use crate::setup::{ensure_assets, SetupOptions};
use crate::trust::{CaTrust, CA_TRUST_ENV};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `byteport setup [--kernel PATH [--modules DIR]]`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetupArgs {
    /// Register this kernel image (bzImage or vmlinux) instead of Debian's cloud kernel.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Modules directory of `--kernel` (`lib/modules/<version>`).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// `byteport build DIR [--commit REV] [--json]`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// The app's directory (a git repository when `--commit` is given).
    pub dir: PathBuf,
    /// Build this commit (branch, tag, hash) of DIR's repository instead of its files on disk.
    #[arg(long, value_name = "REV")]
    pub commit: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// Wall-clock limit of each `run` step, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_STEP_TIMEOUT.as_secs())]
    pub step_timeout: u64,
    /// CA certificates `run` steps trust: `host` (this machine's bundle, the
    /// default), `none` (only the image's own, like `docker build`), or a PEM file.
    #[arg(long, value_name = "host|none|FILE", env = CA_TRUST_ENV)]
    pub build_ca: Option<CaTrust>,
}

/// Run `setup` and print what is in place.
pub fn run_setup(home: &Path, args: &SetupArgs) -> Result<()> {
    let assets = ensure_assets(&SetupOptions {
        home: home.to_path_buf(),
        kernel: args.kernel.clone(),
        kernel_modules: args.modules.clone(),
        progress: !args.quiet,
    })?;
    println!(
        "kernel   {} ({})  {}",
        assets.kernel.version,
        assets.kernel.source,
        assets.kernel.image.display()
    );
    if let Some(m) = &assets.kernel.modules_dir {
        println!("modules  {}", m.display());
    }
    println!("busybox  {}", assets.busybox.display());
    Ok(())
}

/// Run a local build, printing the log to stderr and the outcome to stdout.
pub fn run_build(home: &Path, args: &BuildArgs) -> Result<BuildOutcome> {
    let source = match &args.commit {
        Some(rev) => Source::Git {
            repo: args.dir.clone(),
            rev: rev.clone(),
        },
        None => Source::Dir(args.dir.clone()),
    };
    let mut req = BuildRequest::new(home, source, &StderrSink);
    req.step_timeout = Duration::from_secs(args.step_timeout);
    if let Some(trust) = &args.build_ca {
        req.ca_trust = trust.clone();
    }
    let out = build(&req)?;
    if args.json {
        println!("{}", outcome_json(&out));
    } else {
        print!("{}", outcome_text(&out));
    }
    Ok(out)
}

/// The outcome as a JSON value (`--json`).
pub fn outcome_json(out: &BuildOutcome) -> serde_json::Value {
    let phases: serde_json::Map<String, serde_json::Value> = out
        .phases
        .iter()
        .map(|(n, d)| (n.to_string(), serde_json::json!(d.as_secs_f64())))
        .collect();
    serde_json::json!({
        "digest": out.digest,
        "rootfs": out.rootfs_path,
        "descriptor": out.descriptor_path,
        "cache_hit": out.cache_hit,
        "source_bytes": out.source_bytes,
        "image_bytes": out.image_bytes,
        "phases_seconds": phases,
        "total_seconds": out.total().as_secs_f64(),
    })
}

/// The outcome as human-readable lines.
pub fn outcome_text(out: &BuildOutcome) -> String {
    let mut s = format!(
        "digest      {}\nrootfs      {}\ndescriptor  {}\nsizes       source {} B, image {} B\ncache hit   {}\n",
        out.digest,
        out.rootfs_path.display(),
        out.descriptor_path.display(),
        out.source_bytes,
        out.image_bytes,
        out.cache_hit
    );
    for (name, d) in &out.phases {
        s.push_str(&format!("  {name:<8} {:>8.3}s\n", d.as_secs_f64()));
    }
    s.push_str(&format!(
        "  {:<8} {:>8.3}s\n",
        "total",
        out.total().as_secs_f64()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        build: BuildArgs,
    }

    #[test]
    fn build_ca_flag_selects_the_trust_and_defaults_to_the_environment() {
        let cli = Cli::try_parse_from(["b", "dir", "--build-ca", "none"]).unwrap();
        assert_eq!(cli.build.build_ca, Some(CaTrust::None));
        let cli = Cli::try_parse_from(["b", "dir", "--build-ca", "/etc/corp.pem"]).unwrap();
        assert_eq!(
            cli.build.build_ca,
            Some(CaTrust::File("/etc/corp.pem".into()))
        );
        // Without the flag the request keeps BuildRequest::new's choice:
        // $BYTEPORT_BUILD_CA, else the host's bundle.
        let req = BuildRequest::new("/h", Source::Dir("d".into()), &crate::NullSink);
        assert_eq!(req.ca_trust, CaTrust::from_env());
        if std::env::var_os(CA_TRUST_ENV).is_none() {
            assert_eq!(req.ca_trust, CaTrust::Host);
        }
    }
}
