//! `runtime`: runs BytePort artifacts as microVMs — the drivers (`qemu`:
//! QEMU's microvm machine; `kvm`: BytePort's own VMM, the `byteport-vmm`
//! binary of the `vmm` crate, run as a child process), the initramfs with
//! BytePort's guest init, booting an app ([`boot`]) and checking its health
//! ([`health`]).
//!
//! Every VM process is confined ([`jail`]: own uid, mount namespace,
//! cgroup; QEMU's seccomp filter or the VMM's), cannot outlive its daemon
//! ([`process`]: parent-death signal; [`leftovers`]: reaped at the next
//! start), reaches nothing but its egress proxy ([`egress`]) and its
//! managed database ([`database`]), and is read
//! within budgets ([`guest_link`]). An app's persistent volumes
//! ([`volume`]) are attached to one VM at a time.
//!
//! It must not parse manifests or know about git; it runs artifacts. It does
//! not link the VMM: the daemon never runs KVM device code in its own process.
#![deny(missing_docs)]

pub mod boot;
pub mod database;
pub mod drivers;
pub mod egress;
mod fsutil;
pub mod guest_link;
pub mod health;
pub mod initramfs;
pub mod jail;
pub mod leftovers;
pub mod one_off;
pub mod process;
pub mod volume;

pub use boot::{boot, AppSpec, BootOptions, Driver, RunningApp, Tty};
pub use database::{database_addr, DATABASE_PORT};
pub use egress::EgressEndpoint;
pub use leftovers::{reap_leftovers, LeftoverReport};
pub use volume::{Volume, VolumeError};
