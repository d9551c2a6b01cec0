//! The `Byteport` manifest format: a pest grammar, a typed model, validation
//! and human-readable diagnostics.
//!
//! This crate owns the language only. It must not touch the filesystem beyond
//! what a caller hands it, run builds, or know about git.
#![deny(missing_docs)]
