//! Base layers: `scratch` (empty), `busybox` (busybox-static + applet links),
//! `debian:<suite>` (mmdebstrap minbase + the manifest's packages). Each is
//! built once per (base, sorted packages) into a cache directory, atomically,
//! under a file lock, and used (as an overlay's lower layer) by every build
//! that asks for it. Debian bases are built in mmdebstrap's reproducible
//! mode (`SOURCE_DATE_EPOCH`).

use crate::error::{BuildError, IoContext, Result};
use crate::image::tail;
use crate::log::LogSink;
use crate::plan::BaseSpec;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `/etc/passwd` line of the unprivileged user the app runs as.
pub const APP_USER_PASSWD: &str = "app:x:1000:1000:BytePort app:/app:/sbin/nologin\n";

/// A base layer ready to copy.
#[derive(Debug, Clone)]
pub struct Base {
    /// Directory holding the base's root filesystem.
    pub rootfs: PathBuf,
    /// Key identifying (base, packages).
    pub key: String,
    /// Whether it came from the cache.
    pub cache_hit: bool,
}

/// Cache key of a base with its packages (sorted by the caller).
pub fn key(base: &BaseSpec, packages: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(format!("byteport-base-v3\n{base}\n{}", packages.join("\n")));
    let slug: String = base
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{slug}-{}", &hex::encode(h.finalize())[..16])
}

/// Return the cached base, building it first if needed. `busybox` is the
/// static busybox binary (from `setup`), needed for the busybox base.
pub fn ensure(
    cache: &Path,
    base: &BaseSpec,
    packages: &[String],
    busybox: Option<&Path>,
    log: &dyn LogSink,
) -> Result<Base> {
    if !packages.is_empty() && !matches!(base, BaseSpec::Debian { .. }) {
        return Err(BuildError::UnknownBase {
            base: base.to_string(),
            reason: format!(
                "`packages` ({}) need a `debian:<suite>` base",
                packages.join(" ")
            ),
        });
    }
    std::fs::create_dir_all(cache).ctx("creating base cache", cache)?;
    crate::artifact::sweep_stale(cache, ".tmp-", std::time::Duration::from_secs(24 * 3600));
    let key = key(base, packages);
    let dir = cache.join(&key);
    let rootfs = dir.join("rootfs");
    let _lock = lock(&cache.join(format!("{key}.lock")))?;
    if rootfs.is_dir() {
        return Ok(Base {
            rootfs,
            key,
            cache_hit: true,
        });
    }
    log.line(&format!(
        "-----> Building base {base}{} (cached for later builds)",
        if packages.is_empty() {
            String::new()
        } else {
            format!(" + {}", packages.join(" "))
        }
    ));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{key}-"))
        .tempdir_in(cache)
        .ctx("creating temp dir", cache)?;
    let tmp_root = tmp.path().join("rootfs");
    match base {
        BaseSpec::Scratch => std::fs::create_dir(&tmp_root).ctx("creating", &tmp_root)?,
        BaseSpec::Busybox => {
            let bb = busybox.ok_or_else(|| BuildError::UnknownBase {
                base: "busybox".into(),
                reason: "busybox-static is not set up (run `byteport setup`)".into(),
            })?;
            busybox_base(&tmp_root, bb)?
        }
        BaseSpec::Debian { suite } => debian_base(cache, &tmp_root, suite, packages, log)?,
    }
    crate::image::normalize_times(&tmp_root)?;
    std::fs::rename(tmp.path(), &dir).ctx("moving base into the cache", &dir)?;
    let _ = tmp.keep();
    Ok(Base {
        rootfs,
        key,
        cache_hit: false,
    })
}

fn busybox_base(root: &Path, busybox: &Path) -> Result<()> {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev", "run",
        "var",
    ] {
        std::fs::create_dir_all(root.join(d)).ctx("creating", &root.join(d))?;
    }
    let target = root.join("bin/busybox");
    std::fs::copy(busybox, &target).ctx("copying busybox", busybox)?;
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .ctx("running busybox --list-full", busybox)?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: "busybox".into(),
            context: "listing applets".into(),
            detail: String::from_utf8_lossy(&out.stderr).into(),
        });
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet.contains("..") || applet == "bin/busybox" {
            continue;
        }
        let link = root.join(applet);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).ctx("creating", parent)?;
        }
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("/bin/busybox", &link).ctx("linking applet", &link)?;
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\n{APP_USER_PASSWD}"),
    )
    .ctx("writing", &root.join("etc/passwd"))?;
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n")
        .ctx("writing", &root.join("etc/group"))?;
    Ok(())
}

fn debian_base(
    cache: &Path,
    root: &Path,
    suite: &str,
    packages: &[String],
    log: &dyn LogSink,
) -> Result<()> {
    let base = format!("debian:{suite}");
    if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(BuildError::UnknownBase {
            base,
            reason: "a suite name is letters, digits and dashes (e.g. bookworm)".into(),
        });
    }
    for p in packages {
        if p.is_empty()
            || p.starts_with('-')
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.:=_".contains(c))
        {
            return Err(BuildError::UnknownPackage {
                package: p.clone(),
                base,
            });
        }
    }
    check_packages(cache, suite, packages, log)?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--format=directory"])
        .arg("--aptopt=Acquire::Retries \"3\"")
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
        ])
        .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright");
    if !packages.is_empty() {
        cmd.arg(format!("--include={}", packages.join(",")));
    }
    cmd.arg(suite).arg(root).arg("http://deb.debian.org/debian");
    // mmdebstrap's reproducible mode: no build-time timestamps, machine-id,
    // ldconfig aux-cache or logs; two runs against the same mirror state
    // give the same tree.
    cmd.env("SOURCE_DATE_EPOCH", crate::image::EPOCH.to_string());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().ctx(
        "running mmdebstrap (install the mmdebstrap package)",
        Path::new("mmdebstrap"),
    )?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut all = String::new();
    std::thread::scope(|s| {
        let t = s.spawn(move || {
            stdout
                .map(|o| {
                    BufReader::new(o)
                        .lines()
                        .map_while(|l| l.ok())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        });
        if let Some(err) = stderr {
            for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                log.line(&format!("[base] {line}"));
                all.push_str(&line);
                all.push('\n');
            }
        }
        for line in t.join().unwrap_or_default() {
            all.push_str(&line);
            all.push('\n');
        }
    });
    let status = child
        .wait()
        .ctx("waiting for mmdebstrap", Path::new("mmdebstrap"))?;
    if !status.success() {
        if let Some(pkg) = unknown_package(&all) {
            return Err(BuildError::UnknownPackage { package: pkg, base });
        }
        if all.contains("Release")
            && (all.contains("does not have a Release file") || all.contains("404"))
        {
            return Err(BuildError::UnknownBase {
                base,
                reason: format!("the Debian archive has no suite `{suite}`"),
            });
        }
        return Err(BuildError::BaseFailed {
            base,
            detail: tail(&all),
        });
    }
    let passwd = root.join("etc/passwd");
    let mut p = std::fs::read_to_string(&passwd).ctx("reading", &passwd)?;
    if !p.lines().any(|l| l.starts_with("app:")) {
        p.push_str(APP_USER_PASSWD);
        std::fs::write(&passwd, p).ctx("writing", &passwd)?;
        let group = root.join("etc/group");
        let mut g = std::fs::read_to_string(&group).ctx("reading", &group)?;
        g.push_str("app:x:1000:\n");
        std::fs::write(&group, g).ctx("writing", &group)?;
    }
    Ok(())
}

/// Take an exclusive `flock` on `path` (created if missing); released on drop.
fn lock(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::create(path).ctx("creating lock", path)?;
    // SAFETY: flock on a file descriptor we own, valid for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(BuildError::Io {
            context: "locking".into(),
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

/// Debian's archive keyring (signs the index the package check downloads).
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Name every package that is not in `suite`, in seconds, before a long
/// mmdebstrap: an apt index of the suite is kept under
/// `<cache>/apt-index-<suite>` and refreshed daily. If the index cannot be
/// fetched (no keyring, offline) the check is skipped with a log line and
/// mmdebstrap's own error is parsed instead.
fn check_packages(cache: &Path, suite: &str, packages: &[String], log: &dyn LogSink) -> Result<()> {
    if packages.is_empty() || !Path::new(DEBIAN_KEYRING).is_file() {
        return Ok(());
    }
    let dir = cache.join(format!("apt-index-{suite}"));
    let empty = dir.join("empty");
    for d in [
        dir.join("lists/partial"),
        dir.join("cache/archives/partial"),
        empty.clone(),
    ] {
        std::fs::create_dir_all(&d).ctx("creating apt index dir", &d)?;
    }
    let _lock = lock(&dir.join("lock"))?;
    let sources = dir.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian {suite} main\n"),
    )
    .ctx("writing", &sources)?;
    let status = dir.join("status");
    std::fs::write(&status, "").ctx("writing", &status)?;
    let opts: Vec<String> = [
        ("Dir::Etc::SourceList", sources.as_path()),
        ("Dir::Etc::SourceParts", empty.as_path()),
        ("Dir::Etc::Parts", empty.as_path()),
        ("Dir::Etc::PreferencesParts", empty.as_path()),
        ("Dir::Etc::Preferences", &empty.join("none")),
        ("Dir::State::Lists", &dir.join("lists")),
        ("Dir::State::status", status.as_path()),
        ("Dir::Cache", &dir.join("cache")),
    ]
    .iter()
    .flat_map(|(k, v)| ["-o".to_string(), format!("{k}={}", v.display())])
    .chain(["-o".to_string(), "Debug::NoLocking=true".to_string()])
    .collect();
    let stamp = dir.join("updated");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|a| a.as_secs() < 24 * 3600);
    if !fresh {
        let out = Command::new("apt-get")
            .args(&opts)
            .args(["-q", "update"])
            .output()
            .ctx("running apt-get update", Path::new("apt-get"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || text.contains("Err:") {
            if text.contains("does not have a Release file") || text.contains("404") {
                return Err(BuildError::UnknownBase {
                    base: format!("debian:{suite}"),
                    reason: format!("the Debian archive has no suite `{suite}`"),
                });
            }
            log.line(&format!(
                "[base] package check skipped (apt index unavailable): {}",
                tail(&text).replace('\n', " | ")
            ));
            return Ok(());
        }
        std::fs::write(&stamp, "").ctx("writing", &stamp)?;
    }
    let out = Command::new("apt-cache")
        .args(&opts)
        .args(["--all-names", "pkgnames"])
        .output()
        .ctx("running apt-cache", Path::new("apt-cache"))?;
    let known: std::collections::HashSet<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or("")
        .lines()
        .collect();
    if !out.status.success() || known.is_empty() {
        return Ok(());
    }
    for p in packages {
        let name = p.split(['=', ':']).next().unwrap_or(p);
        if !known.contains(name) {
            return Err(BuildError::UnknownPackage {
                package: p.clone(),
                base: format!("debian:{suite}"),
            });
        }
    }
    Ok(())
}

/// Find the package apt could not locate in its output.
pub fn unknown_package(output: &str) -> Option<String> {
    for line in output.lines() {
        for marker in ["Unable to locate package ", "Package '"] {
            if let Some(i) = line.find(marker) {
                let rest = &line[i + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\'')
                    .collect();
                if !name.is_empty()
                    && (marker.starts_with("Unable")
                        || rest.contains("has no installation candidate"))
                {
                    return Some(name);
                }
            }
        }
    }
    None
}

/// Copy a base's tree into a fresh build directory (`cp -a`, which keeps
/// owners, modes, links, hard links and device nodes).
pub fn copy_into(base: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", base.display()))
        .arg(dest)
        .output()
        .ctx("running cp", Path::new("cp"))?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            tool: "cp".into(),
            context: format!("copying base {}", base.display()),
            detail: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_base_and_packages() {
        let d = BaseSpec::Debian {
            suite: "bookworm".into(),
        };
        assert_ne!(key(&d, &[]), key(&d, &["python3".into()]));
        assert_ne!(key(&BaseSpec::Busybox, &[]), key(&BaseSpec::Scratch, &[]));
        assert!(key(&d, &[]).starts_with("debian-bookworm-"));
    }

    #[test]
    fn finds_missing_package_in_apt_output() {
        assert_eq!(
            unknown_package("E: Unable to locate package nosuchpkg\n").as_deref(),
            Some("nosuchpkg")
        );
        assert_eq!(
            unknown_package("E: Package 'foo' has no installation candidate").as_deref(),
            Some("foo")
        );
        assert_eq!(unknown_package("all fine"), None);
    }

    #[test]
    fn scratch_base_is_cached_and_packages_need_debian() {
        let d = tempfile::tempdir().unwrap();
        let log = crate::log::NullSink;
        let first = ensure(d.path(), &BaseSpec::Scratch, &[], None, &log).unwrap();
        assert!(!first.cache_hit && first.rootfs.is_dir());
        assert!(
            ensure(d.path(), &BaseSpec::Scratch, &[], None, &log)
                .unwrap()
                .cache_hit
        );
        let err = ensure(d.path(), &BaseSpec::Busybox, &["curl".into()], None, &log).unwrap_err();
        assert!(err.to_string().contains("debian"), "{err}");
        let err = ensure(
            d.path(),
            &BaseSpec::Debian {
                suite: "../x".into(),
            },
            &[],
            None,
            &log,
        )
        .unwrap_err();
        assert!(matches!(err, BuildError::UnknownBase { .. }), "{err}");
    }
}
