//! `portfolio`: screenshots of live apps, LLM-drafted descriptions, the review
//! state and the static portfolio site renderer.
//!
//! Not started yet: this crate only reserves its place in the workspace.
#![deny(missing_docs)]
