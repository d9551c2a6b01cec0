//! `gitd`: BytePort's in-process SSH git server (russh + gix).
//!
//! Owns SSH authentication, the git smart protocol (receive-pack and
//! upload-pack), the bare repository store and the push → deploy hook call.
//! It must not build or run apps itself: deploys go through the `DeployHook`
//! trait that the `byteport` binary provides.
#![deny(missing_docs)]
