//! Shared test harness pieces for BytePort's cross-crate tests.
#![allow(dead_code)]

pub mod assets;
pub mod browser;
pub mod daemon;
pub mod postgres;
