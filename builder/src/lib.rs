//! `builder`: turns a pushed commit and its `Byteport` manifest into a
//! bootable, content-addressed artifact (ext4 rootfs + descriptor).
//!
//! It must not boot VMs or route traffic; that is `runtime`'s job.
#![deny(missing_docs)]
