//! Test assets that are downloaded once and cached outside the clone,
//! keyed by version: the Debian cloud kernel and busybox (through the
//! builder's real `setup`), and the path of the built guest init.

use std::path::PathBuf;

/// Cache root: `$BYTEPORT_TEST_CACHE`, default `/var/cache/byteport-test`.
pub fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("BYTEPORT_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/byteport-test"));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create test cache {}: {e}", dir.display()));
    dir
}

/// The guest kernel and busybox, via `builder::setup` into the cache.
pub fn guest_assets() -> builder::Assets {
    let home = cache_dir().join("home");
    builder::ensure_assets(&builder::SetupOptions {
        home,
        kernel: None,
        kernel_modules: None,
        progress: false,
    })
    .unwrap_or_else(|e| {
        panic!("fetching the guest kernel/busybox failed (needs apt-get and Debian's mirror): {e}")
    })
}

/// `byteport-init` (the guest-init package's binary), built if needed.
pub fn init_binary() -> PathBuf {
    testvm::build::workspace_bin("guest-init", "byteport-init")
        .unwrap_or_else(|e| panic!("cannot build byteport-init for the tests: {e}"))
}

/// `qemu-system-x86_64`, or a loud failure with the fix.
pub fn qemu() -> PathBuf {
    byteport::doctor::which("qemu-system-x86_64")
        .expect("qemu-system-x86_64 is missing: apt-get install qemu-system-x86 (.ci/run does)")
}
