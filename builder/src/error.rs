//! The builder's error type: every failure a user can cause, with the context
//! needed to fix it.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can make a build (or `setup`) fail.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The repository has no `Byteport` manifest at the root of the tree.
    #[error("no `{file}` manifest at the root of {origin}")]
    ManifestMissing {
        /// Manifest file name looked for.
        file: &'static str,
        /// Where it was looked for (directory or `repo@commit`).
        origin: String,
    },
    /// The manifest did not parse or validate; `rendered` shows file:line:col and a caret.
    #[error("invalid manifest:\n{rendered}")]
    Manifest {
        /// The diagnostics as rendered by `manifest-spec`.
        rendered: String,
    },
    /// Reading the repository or commit with gix failed.
    #[error("git: {context}")]
    Git {
        /// What was being read.
        context: String,
        /// The gix error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The base image is not one the builder knows how to make.
    #[error("unknown base `{base}`: {reason}")]
    UnknownBase {
        /// The base as written in the manifest.
        base: String,
        /// Why it is unknown.
        reason: String,
    },
    /// A package named in `packages` does not exist in the base's archive.
    #[error("package `{package}` does not exist in {base}")]
    UnknownPackage {
        /// The missing package.
        package: String,
        /// The base it was looked up in.
        base: String,
    },
    /// Making a base layer failed for another reason.
    #[error("building base {base} failed: {detail}")]
    BaseFailed {
        /// The base being built.
        base: String,
        /// The tail of the tool's output.
        detail: String,
    },
    /// A `run` step exited unsuccessfully.
    #[error("build step {number} `{command}` failed with {status}; last lines of its output:\n{}", last_lines.join("\n"))]
    StepFailed {
        /// 1-based number of the step in the manifest's `build` block.
        number: usize,
        /// The command as written.
        command: String,
        /// `exit code N` or `signal N`.
        status: String,
        /// Up to the last 50 lines of output.
        last_lines: Vec<String>,
    },
    /// The build was cancelled (a `deploys cancel`, a deadline): the running
    /// step, if any, was killed with its whole process tree.
    #[error("build cancelled{}; its processes were killed", step.map(|n| format!(" during step {n}")).unwrap_or_default())]
    Cancelled {
        /// The step that was running, if one was.
        step: Option<usize>,
    },
    /// A `run` step ran past its wall-clock limit and was killed with its whole process tree.
    #[error("build step {number} `{command}` timed out after {timeout:?}; it and all its processes were killed; last lines:\n{}", last_lines.join("\n"))]
    StepTimeout {
        /// 1-based step number.
        number: usize,
        /// The command as written.
        command: String,
        /// The limit that was exceeded.
        timeout: Duration,
        /// Up to the last 50 lines of output.
        last_lines: Vec<String>,
    },
    /// The kernel killed a `run` step's processes at its cgroup memory limit.
    #[error("build step {number} `{command}` ran out of memory: the kernel killed it at the step memory limit of {} MiB ({hierarchy}); build steps get the vm block's `memory` but at least 1 GiB, so raise `memory` or make the step use less; last lines:\n{}", limit_bytes >> 20, last_lines.join("\n"))]
    StepOutOfMemory {
        /// 1-based step number.
        number: usize,
        /// The command as written.
        command: String,
        /// The memory limit in bytes, as the kernel applied it.
        limit_bytes: u64,
        /// `cgroup v2` or `cgroup v1`.
        hierarchy: &'static str,
        /// Up to the last 50 lines of output.
        last_lines: Vec<String>,
    },
    /// The CA bundle build steps are told to trust cannot be used.
    #[error("CA bundle for build steps {path}: {reason} (set BYTEPORT_BUILD_CA to `host`, `none` or a PEM file)")]
    CaBundle {
        /// The configured bundle.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `run` step needs `/bin/sh` in the rootfs and the base has none.
    #[error("build step {number} `{command}` needs /bin/sh, but base `{base}` has no shell (use `from busybox` or `from debian:<suite>`)")]
    NoShell {
        /// 1-based step number.
        number: usize,
        /// The command as written.
        command: String,
        /// The base in use.
        base: String,
    },
    /// Setting up the isolated environment of a step failed.
    #[error("isolating build step {number}: {context}")]
    Isolation {
        /// 1-based step number.
        number: usize,
        /// What failed.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No uid/gid range can be given to the app's build steps.
    #[error("cannot give build steps an unprivileged id range: {reason}")]
    IdPool {
        /// What is wrong (pool exhausted, inconsistent /etc/subuid).
        reason: String,
    },
    /// The finished root filesystem does not fit in the manifest's `disk`.
    #[error("rootfs needs {needed} bytes but the manifest's disk is {disk} bytes; raise `disk` in the vm block or make the app smaller")]
    RootfsTooLarge {
        /// Bytes the image needs.
        needed: u64,
        /// The manifest's cap.
        disk: u64,
    },
    /// A file in the repository alone is larger than the disk (checked before reading it).
    #[error("file `{path}` is {size} bytes, larger than the manifest's disk of {disk} bytes")]
    FileTooLarge {
        /// Path in the repository.
        path: String,
        /// Its size.
        size: u64,
        /// The manifest's cap.
        disk: u64,
    },
    /// A symlink in the repository points outside the tree.
    #[error("symlink `{path}` points outside the repository tree (to `{target}`)")]
    SymlinkEscape {
        /// Path of the link in the repository.
        path: String,
        /// Its target.
        target: String,
    },
    /// A build step needs a secret the caller did not supply.
    #[error("secret `{name}` is needed at build time but has no value (set it with `byteport config:set`)")]
    MissingSecret {
        /// The secret's name.
        name: String,
    },
    /// A `copy` step names a path that is not in the tree, or an unsafe destination.
    #[error("copy step {number}: {reason}")]
    BadCopy {
        /// 1-based step number.
        number: usize,
        /// What is wrong.
        reason: String,
    },
    /// An external tool (mkfs.ext4, mmdebstrap, apt-get, ...) failed.
    #[error("{tool} failed ({context}): {detail}")]
    Tool {
        /// The program.
        tool: String,
        /// What it was doing.
        context: String,
        /// Its status and output tail.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {path}")]
    Io {
        /// What was being done.
        context: String,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for the builder.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Attach a path and a description to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Map an io error into [`BuildError::Io`].
    fn ctx(self, context: &str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: &str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| BuildError::Io {
            context: context.to_string(),
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Wrap a gix error with context.
pub(crate) fn git_err(
    context: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> BuildError {
    BuildError::Git {
        context: context.into(),
        source: Box::new(e),
    }
}
