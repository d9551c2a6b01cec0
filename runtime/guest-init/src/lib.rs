//! BytePort's guest init: PID 1 inside every app microVM (binary
//! `byteport-init`). The library part is the configuration the host writes
//! for it (`/byteport/init.json`), shared with the runtime drivers that
//! assemble the initramfs.
#![deny(missing_docs)]

pub mod config;
