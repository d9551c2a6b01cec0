//! The `Byteport` manifest format: a pest grammar, a typed model, validation
//! and human-readable diagnostics.
//!
//! This crate owns the language only. It must not touch the filesystem (the
//! caller reads the file and hands over its bytes), run builds, or know about
//! git. `SPEC.md` next to this crate documents every directive.
//!
//! Flow of data: bytes → `source` checks (size cap, UTF-8, control
//! characters) → the pest grammar (`byteport.pest`, never fails on a line it
//! does not know: it keeps it for diagnostics) → lowering (values,
//! duplicates, unknown keywords, whole-manifest rules, defaults) →
//! [`Manifest`] or [`Diagnostics`].
//!
//! ```
//! let src = b"app hello\nfrom busybox\nweb {\n  run busybox httpd -f -p 8080\n  port 8080\n}\n";
//! let manifest = manifest_spec::parse(src, "Byteport").unwrap();
//! assert_eq!(manifest.summary(), "hello: Byteport manifest OK (from busybox, 1 vCPU, 256M)");
//!
//! let err = manifest_spec::parse(b"app hello\nfrom busybox\nvm {\n  memroy 1G\n}\n", "Byteport").unwrap_err();
//! assert!(err.to_string().contains("did you mean `memory`?"));
//! ```
#![deny(missing_docs)]

mod diagnostics;
mod grammar;
mod keywords;
mod lower;
mod model;
mod source;
mod starter;
mod values;

pub mod limits;

pub use diagnostics::{Diagnostic, Diagnostics};
pub use model::{
    format_size, Base, BuildStep, Database, Description, HealthCheck, Manifest, Network, Portfolio,
    Publish, Release, Screenshot, Secret, User, VmResources, Volume, WebProcess, Worker,
};
pub use starter::starter_manifest;

/// The manifest's file name at the repository root.
pub const MANIFEST_FILE_NAME: &str = "Byteport";

/// Parses and validates a manifest.
///
/// `source` is the file's raw bytes (any size, any content: hostile input
/// gets diagnostics, never a panic); `origin` is the name shown in
/// diagnostics, usually the file's path. On success the manifest is
/// normalized (sizes in bytes, durations in milliseconds, defaults filled
/// in); on failure every problem found is returned, in source order.
pub fn parse(source: &[u8], origin: &str) -> Result<Manifest, Diagnostics> {
    let src = source::Source::new(source, origin).map_err(Diagnostics::new)?;
    let tree = grammar::parse(&src).map_err(|d| Diagnostics::new(vec![d]))?;
    lower::lower(&src, tree).map_err(Diagnostics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_file_name_is_byteport() {
        assert_eq!(MANIFEST_FILE_NAME, "Byteport");
    }

    #[test]
    fn errors_carry_the_origin_and_render_fully() {
        let e = parse(
            b"app x\nfrom busybox\nweb {\n  port 80\n}\n",
            "repo/Byteport",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        let d = e.iter().next().unwrap();
        assert_eq!((d.file.as_str(), d.line, d.col), ("repo/Byteport", 3, 1));
        assert_eq!(
            e.to_string(),
            "repo/Byteport:3:1: error: `web` block needs `run`\n  |\n3 | web {\n  | ^^^\n  = hint: add `run COMMAND` inside the `web` block\n"
        );
        let as_error: &dyn std::error::Error = &e;
        assert!(as_error.to_string().contains("needs `run`"));
    }
}
