//! The `byteport` binary's library: configuration, the state store, host
//! checks (`doctor`) and the CLI commands that tie the crates together.
//!
//! This crate wires; it does not implement the git protocol, the manifest
//! language, builds or VMs — those live in `gitd`, `manifest-spec`,
//! `builder` and `runtime`.
#![deny(missing_docs)]

pub mod admin;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod doctor;
pub mod driver;
pub mod git_glue;
