//! Hard limits of the manifest language. Input beyond them gets a
//! diagnostic, never unbounded work. SPEC.md lists them too.

/// Largest manifest accepted, in bytes (1 MiB).
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Most diagnostics reported in one run; the rest are summarized.
pub const MAX_DIAGNOSTICS: usize = 50;
/// Blocks never nest: a block holds only lines, so the nesting depth of a
/// valid manifest is 1 and the grammar has no recursion at all.
pub const MAX_NESTING_DEPTH: usize = 1;
/// Most Debian packages.
pub const MAX_PACKAGES: usize = 512;
/// Most build steps.
pub const MAX_BUILD_STEPS: usize = 256;
/// Most `env` variables.
pub const MAX_ENV_VARS: usize = 256;
/// Most worker processes.
pub const MAX_WORKERS: usize = 16;
/// Most custom domains.
pub const MAX_DOMAINS: usize = 32;
/// Longest command line, in characters.
pub const MAX_COMMAND_CHARS: usize = 4096;
/// Most portfolio tags.
pub const MAX_TAGS: usize = 10;
/// Longest portfolio tag, in characters.
pub const MAX_TAG_LEN: usize = 32;
/// Longest portfolio title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest portfolio description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most volumes of one app.
pub const MAX_VOLUMES: usize = 8;
/// Longest volume name, in characters.
pub const MAX_VOLUME_NAME: usize = 32;
/// Longest volume mount path, in bytes.
pub const MAX_VOLUME_PATH: usize = 255;
/// Smallest volume (16 MiB: an ext4 journal and some room).
pub const MIN_VOLUME_BYTES: u64 = 16 << 20;
/// Largest volume (1 TiB, as the largest `disk`).
pub const MAX_VOLUME_BYTES: u64 = 1 << 40;
/// Most instances of the web process.
pub const MAX_INSTANCES: u32 = 16;
