//! Test support for BytePort's crates: throwaway Linux VMs under QEMU (TCG on
//! these machines, which have no usable hardware virtualization), the inputs
//! they boot, and small helpers every test suite needs.
//!
//! - [`Vm`]: run a program inside a one-shot VM and read its serial markers
//!   (busybox initramfs, the caller's files, `TESTVM-EXIT=<status>`).
//! - [`nested`]: the nested test host — level 1 is QEMU TCG with emulated SVM,
//!   so BytePort's own VMM gets a real `/dev/kvm` inside it.
//! - [`kernel`]: the Debian cloud kernel, downloaded once into the test cache.
//! - [`build`]: static binaries and test executables for use inside a VM.
//! - [`rootfs`]: busybox ext4 images for app VMs.
//! - [`console`]: the one QEMU runner both of the above use.
//! - [`free_port`]: a loopback TCP port nobody listens on right now.
//! - [`git`]: the real `git` and `ssh-keygen` with a test identity.
//!
//! ```no_run
//! let probe = testvm::static_build("builder", testvm::Artifact::Example("limits_probe"))?;
//! let out = testvm::Vm::new("/path/to/vmlinuz")
//!     .file(&probe, "/probe")
//!     .cgroup2(true)
//!     .command("/probe")
//!     .run()?;
//! assert_eq!(out.exit, Some(0), "{}", out.log());
//! # Ok::<(), String>(())
//! ```
#![deny(missing_docs)]

pub mod build;
pub mod console;
pub mod git;
pub mod kernel;
pub mod nested;
pub mod rootfs;
mod vm;

pub use build::{static_build, Artifact};
pub use vm::{Output, Vm, APT, EXIT_MARKER};

use std::path::PathBuf;

/// A loopback TCP port that was free a moment ago (bound, then released).
/// Another process may take it in between; tests that cannot tolerate that
/// bind port 0 themselves.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
}

/// The test cache: `$BYTEPORT_TEST_CACHE`, default `/var/cache/byteport-test`
/// (downloads keyed by version live here, outside the clone).
pub fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("BYTEPORT_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/byteport-test"));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create the test cache {}: {e}", dir.display()));
    dir
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
