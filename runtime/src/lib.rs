//! `runtime`: runs BytePort artifacts as microVMs — the drivers (`qemu`:
//! QEMU's microvm machine; `kvm`: BytePort's own VMM, the `byteport-vmm`
//! binary of the `vmm` crate, run as a child process), the initramfs with
//! BytePort's guest init, booting an app ([`boot`]) and checking its health
//! ([`health`]).
//!
//! It must not parse manifests or know about git; it runs artifacts. It does
//! not link the VMM: the daemon never runs KVM device code in its own process.
#![deny(missing_docs)]

pub mod boot;
pub mod drivers;
pub mod health;
pub mod initramfs;
