//! Which CA certificates `run` steps trust for TLS (package registries,
//! `curl`, `git`).
//!
//! Default: **the host's bundle** (`host`). BytePort is self-hosted: the
//! builder runs on the owner's machine, whose trust store already reflects
//! the owner's network — including a TLS-inspecting proxy, where a step that
//! trusts only the image's own certificates cannot install anything. The
//! bundle holds public certificates only, is bind-mounted read-only over the
//! image's `/etc/ssl/certs/ca-certificates.crt` for the duration of each
//! step (when the image has `/etc/ssl/certs`), and never becomes part of the
//! image, so artifacts stay reproducible and portable. `docker build` does
//! not do this (it builds anywhere, for anyone); `none` gives that behaviour.
//!
//! Chosen per builder (not per app, since it describes the host's network):
//! `BYTEPORT_BUILD_CA` = `host` | `none` | a PEM file, or
//! `byteport build --build-ca`, or [`crate::BuildRequest::ca_trust`].

use crate::error::{BuildError, Result};
use std::path::{Path, PathBuf};

/// The host CA bundle (Debian/Ubuntu's `ca-certificates`).
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Environment variable that sets the default [`CaTrust`].
pub const CA_TRUST_ENV: &str = "BYTEPORT_BUILD_CA";

/// What `run` steps trust beyond the image's own certificates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CaTrust {
    /// The host's bundle ([`HOST_CA_BUNDLE`]), when the host has one (default).
    #[default]
    Host,
    /// Only the image's own certificates, like `docker build`.
    None,
    /// This PEM bundle (e.g. a corporate root plus the public roots).
    File(PathBuf),
}

impl CaTrust {
    /// From [`CA_TRUST_ENV`] (unset or empty: [`CaTrust::Host`]).
    pub fn from_env() -> CaTrust {
        std::env::var(CA_TRUST_ENV)
            .map(|v| CaTrust::parse(&v))
            .unwrap_or_default()
    }

    /// `host`, `none`, or a path (anything else).
    pub fn parse(value: &str) -> CaTrust {
        match value.trim() {
            "" | "host" => CaTrust::Host,
            "none" => CaTrust::None,
            path => CaTrust::File(PathBuf::from(path)),
        }
    }

    /// The bundle to bind into steps, checked: `None` when nothing is to be
    /// trusted (or `host` on a host without a bundle).
    pub fn bundle(&self) -> Result<Option<PathBuf>> {
        match self {
            CaTrust::Host => Ok(Some(PathBuf::from(HOST_CA_BUNDLE)).filter(|p| p.is_file())),
            CaTrust::None => Ok(None),
            CaTrust::File(path) => check_pem(path).map(Some),
        }
    }

    /// The build log's line about it (for the resolved `bundle`).
    pub fn describe(&self, bundle: Option<&Path>) -> String {
        match (self, bundle) {
            (CaTrust::None, _) => format!(
                "Build steps trust only the image's own CA certificates ({CA_TRUST_ENV}=none)"
            ),
            (_, Some(b)) => format!(
                "Build steps trust {} {} (read-only during steps, not in the image; {CA_TRUST_ENV}=none to trust only the image's own)",
                if *self == CaTrust::Host { "this host's CA bundle" } else { "the CA bundle" },
                // The configured file, not the readable copy steps may get.
                match self {
                    CaTrust::File(p) => p.display(),
                    _ => b.display(),
                }
            ),
            (_, None) => format!(
                "Build steps trust only the image's own CA certificates (this host has no {HOST_CA_BUNDLE})"
            ),
        }
    }
}

impl std::str::FromStr for CaTrust {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(CaTrust::parse(s))
    }
}

impl std::fmt::Display for CaTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaTrust::Host => f.write_str("host"),
            CaTrust::None => f.write_str("none"),
            CaTrust::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `bundle` itself when every user may read it, else a world-readable copy
/// in `work` (the build's private directory). Steps run as an
/// unprivileged uid and cannot read a root-only file (a bundle made with
/// `umask 077`); certificates are public, so a readable copy is fine.
pub fn readable_by_steps(bundle: &Path, work: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| BuildError::CaBundle {
        path: bundle.to_path_buf(),
        reason: e.to_string(),
    };
    let mode = std::fs::metadata(bundle).map_err(io)?.permissions().mode();
    if mode & 0o004 != 0 {
        return Ok(bundle.to_path_buf());
    }
    let copy = work.join("ca-bundle.pem");
    std::fs::copy(bundle, &copy).map_err(io)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    Ok(copy)
}

/// Largest bundle accepted (Debian's is ~200 KiB).
const MAX_BUNDLE: u64 = 16 << 20;

fn check_pem(path: &Path) -> Result<PathBuf> {
    let bad = |reason: String| BuildError::CaBundle {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_BUNDLE {
        return Err(bad(format!(
            "{} bytes, more than a CA bundle can be ({MAX_BUNDLE})",
            meta.len()
        )));
    }
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !text
        .windows(27)
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(bad(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    std::fs::canonicalize(path).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print_back() {
        assert_eq!(CaTrust::parse(""), CaTrust::Host);
        assert_eq!(CaTrust::parse(" host "), CaTrust::Host);
        assert_eq!(CaTrust::parse("none"), CaTrust::None);
        assert_eq!(
            CaTrust::parse("/etc/corp.pem"),
            CaTrust::File("/etc/corp.pem".into())
        );
        for v in ["host", "none", "/x/y.pem"] {
            assert_eq!(CaTrust::parse(v).to_string(), v);
        }
    }

    #[test]
    fn a_bundle_file_must_exist_and_hold_a_certificate() {
        let d = tempfile::tempdir().unwrap();
        let missing = CaTrust::File(d.path().join("nope.pem"))
            .bundle()
            .unwrap_err();
        assert!(missing.to_string().contains("nope.pem"), "{missing}");
        assert!(missing.to_string().contains(CA_TRUST_ENV), "{missing}");
        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = CaTrust::File(junk).bundle().unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        assert!(CaTrust::File(d.path().to_path_buf()).bundle().is_err());
        let good = d.path().join("good.pem");
        std::fs::write(
            &good,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(
            CaTrust::File(good.clone()).bundle().unwrap(),
            Some(good.clone())
        );
        assert_eq!(CaTrust::None.bundle().unwrap(), None);
        // A root-only bundle is copied world-readable for the steps.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
        let work = tempfile::tempdir().unwrap();
        let copy = readable_by_steps(&good, work.path()).unwrap();
        assert_ne!(copy, good);
        assert_eq!(
            std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_steps(&good, work.path()).unwrap(), good);
    }
}
