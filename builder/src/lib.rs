//! `builder`: turns a pushed commit and its `Byteport` manifest into a
//! bootable, content-addressed artifact (ext4 rootfs + JSON descriptor), and
//! provides `setup` of the assets it and the runtime need (guest kernel,
//! busybox-static).
//!
//! It must not boot VMs or route traffic; that is `runtime`'s job. It never
//! runs the `git` binary and never puts `.git` in an image.
//!
//! The pipeline, in the order data flows:
//! 1. [`source`]: the commit's tree (gix) or a directory, checked for
//!    oversized files and escaping symlinks before anything is read whole;
//! 2. [`manifest`] → [`plan`]: what to build;
//! 3. [`base`]: the cached base layer (scratch, busybox, debian + packages);
//! 4. [`isolate`] (+ [`ids`], [`cgroup`], [`cache`], [`trust`]): `run`
//!    steps unprivileged in their own namespaces (root only of the app's
//!    user namespace, seccomp, the internet only through [`egress`]),
//!    limited, with package caches mounted from outside the image and the
//!    configured CA certificates;
//! 5. [`image`]: a reproducible ext4 image;
//! 6. [`artifact`]: descriptor and content-addressed store.
//!
//! ```no_run
//! use builder::{build, BuildRequest, Source, StderrSink};
//! let req = BuildRequest::new("/var/lib/byteport", Source::Dir("./myapp".into()), &StderrSink);
//! let out = build(&req)?;
//! println!("{} {}", out.digest, out.rootfs_path.display());
//! # Ok::<(), builder::BuildError>(())
//! ```
#![deny(missing_docs)]

pub mod artifact;
pub mod base;
mod build;
pub mod cache;
pub mod cgroup;
pub mod cli;
pub mod error;
pub mod identity;
pub mod ids;
pub mod image;
pub mod isolate;
pub mod log;
pub mod manifest;
pub mod overlay;
pub mod ownership;
pub mod plan;
pub mod setup;
pub mod source;
mod steps;
pub mod trust;

pub use artifact::Descriptor;
pub use build::{build, build_plan, BuildOutcome, BuildRequest, Source, DEFAULT_STEP_TIMEOUT};
pub use cgroup::Limits;
pub use egress;
pub use error::{BuildError, Result};
pub use log::{LogSink, MemorySink, NullSink, StderrSink};
pub use plan::{BaseSpec, BuildPlan, Network, RunAs, Step, Volume};
pub use setup::{ensure_assets, Assets, SetupOptions};
pub use trust::CaTrust;
