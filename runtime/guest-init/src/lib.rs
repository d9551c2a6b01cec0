//! BytePort's guest init: PID 1 inside every app microVM (binary
//! `byteport-init`). The library part is what the host shares with it: the
//! configuration the host writes for it (`/byteport/init.json`) and the
//! record protocol it speaks back ([`records`]).
#![deny(missing_docs)]

pub mod config;
pub mod ext4;
pub mod records;
