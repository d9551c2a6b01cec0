//! `byteport setup`: the assets builds and VMs need, fetched once and cached
//! under `$BYTEPORT_HOME` — the Debian cloud kernel (vmlinuz, modules, config,
//! keyed by version) and busybox-static — via `apt-get download` +
//! `dpkg-deb -x`, with progress. A warm cache does no network work.
//! `--kernel PATH` registers a user-supplied kernel instead.

use crate::error::{BuildError, IoContext, Result};
use crate::image::tail;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Debian metapackage that points at the current cloud kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// What `setup` should do.
#[derive(Debug, Clone, Default)]
pub struct SetupOptions {
    /// `$BYTEPORT_HOME`.
    pub home: PathBuf,
    /// A user-supplied kernel image (bzImage or vmlinux) to register instead of Debian's.
    pub kernel: Option<PathBuf>,
    /// Its modules directory (`lib/modules/<version>`), if any.
    pub kernel_modules: Option<PathBuf>,
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// The guest kernel the artifacts refer to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Kernel version (`6.1.0-28-cloud-amd64`) or `user-<hash>`.
    pub version: String,
    /// Path of the kernel image.
    pub image: PathBuf,
    /// Modules directory, if any.
    pub modules_dir: Option<PathBuf>,
    /// Kernel config, if known.
    pub config: Option<PathBuf>,
    /// `debian` or `user`.
    pub source: String,
}

/// Everything `setup` provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    /// The default guest kernel.
    pub kernel: KernelInfo,
    /// The static busybox binary.
    pub busybox: PathBuf,
}

fn kernels_dir(home: &Path) -> PathBuf {
    home.join("kernels")
}

fn busybox_file(home: &Path) -> PathBuf {
    home.join("assets/busybox/busybox")
}

/// The registered kernel, if `setup` ran (no network, no side effects).
pub fn current_kernel(home: &Path) -> Option<KernelInfo> {
    let data = std::fs::read(kernels_dir(home).join("default.json")).ok()?;
    let k: KernelInfo = serde_json::from_slice(&data).ok()?;
    k.image.is_file().then_some(k)
}

/// Fetch or register what is missing, then return the assets.
pub fn ensure_assets(opts: &SetupOptions) -> Result<Assets> {
    let busybox = ensure_busybox(&opts.home, opts.progress)?;
    let kernel = match &opts.kernel {
        Some(image) => register_kernel(&opts.home, image, opts.kernel_modules.as_deref())?,
        None => match current_kernel(&opts.home) {
            Some(k) => {
                spinner(opts.progress, "kernel")
                    .finish_with_message(format!("kernel {} (cached)", k.version));
                k
            }
            None => fetch_debian_kernel(&opts.home, opts.progress)?,
        },
    };
    Ok(Assets { kernel, busybox })
}

/// Return the cached busybox-static binary, downloading it if missing.
pub fn ensure_busybox(home: &Path, progress: bool) -> Result<PathBuf> {
    let target = busybox_file(home);
    if target.is_file() {
        spinner(progress, "busybox").finish_with_message("busybox-static (cached)");
        return Ok(target);
    }
    let pb = spinner(progress, "busybox");
    pb.set_message("downloading busybox-static (apt-get download)");
    let work = tempfile::tempdir().ctx("creating temp dir", Path::new("/tmp"))?;
    let deb = apt_download(work.path(), "busybox-static")?;
    pb.set_message("extracting busybox-static");
    let tree = extract(work.path(), &deb)?;
    let bin = tree.join("bin/busybox");
    let dir = target.parent().unwrap_or(home);
    std::fs::create_dir_all(dir).ctx("creating", dir)?;
    let tmp = dir.join(".busybox.tmp");
    std::fs::copy(&bin, &tmp).ctx("copying busybox from the package", &bin)?;
    std::fs::rename(&tmp, &target).ctx("installing busybox", &target)?;
    pb.finish_with_message(format!(
        "busybox-static from {}",
        deb.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    Ok(target)
}

fn fetch_debian_kernel(home: &Path, progress: bool) -> Result<KernelInfo> {
    let pb = spinner(progress, "kernel");
    pb.set_message(format!("resolving {KERNEL_METAPACKAGE}"));
    let out = run(
        "apt-cache",
        Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]),
    )?;
    let package = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(|p| p.trim().to_string())
        .ok_or_else(|| BuildError::Tool {
            tool: "apt-cache".into(),
            context: format!("resolving {KERNEL_METAPACKAGE}"),
            detail: "no linux-image dependency found (run `apt-get update`)".into(),
        })?;
    pb.set_message(format!("downloading {package} (apt-get download)"));
    let work = tempfile::tempdir().ctx("creating temp dir", Path::new("/tmp"))?;
    let deb = apt_download(work.path(), &package)?;
    pb.set_message(format!("extracting {package}"));
    let tree = extract(work.path(), &deb)?;
    let boot = tree.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .ctx("reading", &boot)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vmlinuz-"))
        .ok_or_else(|| BuildError::Tool {
            tool: "dpkg-deb".into(),
            context: package.clone(),
            detail: "no boot/vmlinuz-* in the package".into(),
        })?;
    let version = vmlinuz.trim_start_matches("vmlinuz-").to_string();
    let kdir = kernels_dir(home);
    let dest = kdir.join(&version);
    let staging = kdir.join(format!(".tmp-{version}"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).ctx("creating", &staging)?;
    std::fs::rename(boot.join(&vmlinuz), staging.join("vmlinuz")).ctx("moving vmlinuz", &boot)?;
    let _ = std::fs::rename(
        boot.join(format!("config-{version}")),
        staging.join("config"),
    );
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| tree.join(m).join(&version))
        .find(|p| p.is_dir());
    if let Some(m) = &modules {
        std::fs::rename(m, staging.join("modules")).ctx("moving modules", m)?;
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest).ctx("installing kernel", &dest)?;
    let info = KernelInfo {
        version: version.clone(),
        image: dest.join("vmlinuz"),
        modules_dir: modules.map(|_| dest.join("modules")),
        config: dest.join("config").is_file().then(|| dest.join("config")),
        source: "debian".into(),
    };
    write_default(home, &info)?;
    pb.finish_with_message(format!("kernel {version} from {package}"));
    Ok(info)
}

/// Register a user-supplied kernel (and modules dir) as the default, keyed by
/// a hash of the image.
pub fn register_kernel(home: &Path, image: &Path, modules: Option<&Path>) -> Result<KernelInfo> {
    let data = std::fs::read(image).ctx("reading kernel image", image)?;
    if data.len() < 1024 {
        return Err(BuildError::Tool {
            tool: "setup".into(),
            context: format!("registering {}", image.display()),
            detail: "file is too small to be a kernel".into(),
        });
    }
    use sha2::Digest;
    let version = format!("user-{}", &hex::encode(sha2::Sha256::digest(&data))[..16]);
    let dest = kernels_dir(home).join(&version);
    std::fs::create_dir_all(&dest).ctx("creating", &dest)?;
    std::fs::write(dest.join("vmlinuz"), &data).ctx("copying kernel", &dest)?;
    let modules_dir = match modules {
        Some(m) => {
            let target = dest.join("modules");
            let _ = std::fs::remove_dir_all(&target);
            run("cp", Command::new("cp").arg("-a").arg(m).arg(&target))?;
            Some(target)
        }
        None => None,
    };
    let info = KernelInfo {
        version,
        image: dest.join("vmlinuz"),
        modules_dir,
        config: None,
        source: "user".into(),
    };
    write_default(home, &info)?;
    Ok(info)
}

fn write_default(home: &Path, info: &KernelInfo) -> Result<()> {
    let path = kernels_dir(home).join("default.json");
    let tmp = kernels_dir(home).join(".default.json.tmp");
    let json = serde_json::to_vec_pretty(info).unwrap_or_default();
    std::fs::write(&tmp, json).ctx("writing", &tmp)?;
    std::fs::rename(&tmp, &path).ctx("writing", &path)
}

fn apt_download(dir: &Path, package: &str) -> Result<PathBuf> {
    run(
        "apt-get",
        Command::new("apt-get")
            .current_dir(dir)
            .args(["download", "-q", package]),
    )?;
    std::fs::read_dir(dir)
        .ctx("reading", dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| BuildError::Tool {
            tool: "apt-get".into(),
            context: format!("download {package}"),
            detail: "no .deb was written".into(),
        })
}

fn extract(dir: &Path, deb: &Path) -> Result<PathBuf> {
    let tree = dir.join("tree");
    run(
        "dpkg-deb",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree),
    )?;
    Ok(tree)
}

fn run(tool: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .ctx(&format!("running {tool}"), Path::new(tool))?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: tool.into(),
            context: format!("{cmd:?}"),
            detail: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spinner(enabled: bool, prefix: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix:>8} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_prefix(prefix.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_kernel_is_registered_and_found_without_network() {
        let home = tempfile::tempdir().unwrap();
        assert!(current_kernel(home.path()).is_none());
        let k = home.path().join("bzImage");
        std::fs::write(&k, vec![7u8; 4096]).unwrap();
        let mods = home.path().join("mods");
        std::fs::create_dir_all(mods.join("kernel")).unwrap();
        std::fs::write(mods.join("modules.dep"), "").unwrap();
        let info = register_kernel(home.path(), &k, Some(&mods)).unwrap();
        assert_eq!(info.source, "user");
        assert!(info
            .modules_dir
            .as_ref()
            .unwrap()
            .join("modules.dep")
            .is_file());
        assert_eq!(current_kernel(home.path()), Some(info));
        let tiny = home.path().join("tiny");
        std::fs::write(&tiny, b"x").unwrap();
        assert!(register_kernel(home.path(), &tiny, None).is_err());
    }
}
