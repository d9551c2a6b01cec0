//! `runtime`: BytePort's microVM engine — its own VMM on KVM, the guest init,
//! the runtime drivers and the supervisor.
//!
//! It must not parse manifests or know about git; it runs artifacts.
#![deny(missing_docs)]

pub mod cli;
pub mod drivers;
pub mod supervisor;
pub mod vmm;
