//! The persistence seam: the platform's state store implements
//! [`PortfolioStore`] (SQLite/PostgreSQL via sqlx, owned by the `byteport`
//! binary); this crate never opens a database itself.

use std::future::Future;

use serde::{Deserialize, Serialize};

use super::{ReviewState, Version};

/// Store failures, in words the review flow passes on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A version with this (app, number) exists, or a state change found
    /// another state than expected (someone else changed it first).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed.
    #[error("portfolio store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One state change of one version; applied only if the version is
/// still in `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The version number.
    pub number: u32,
    /// The state it must be in now.
    pub from: ReviewState,
    /// The state it moves to.
    pub to: ReviewState,
    /// Who decided (`None` for automatic changes such as superseding).
    pub by: Option<String>,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// Exactly what the review flow needs from a store. All methods are
/// atomic on their own; `transition` applies all of its changes or none.
pub trait PortfolioStore: Send + Sync {
    /// Adds a version. Fails with [`StoreError::Conflict`] when
    /// (`version.app`, `version.number`) exists.
    fn insert_version(
        &self,
        version: &Version,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// All versions of `app`, oldest first (empty for an unknown app).
    fn versions(&self, app: &str) -> impl Future<Output = Result<Vec<Version>, StoreError>> + Send;

    /// Apps with at least one version, sorted by name.
    fn apps(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Applies `changes` to `app`'s versions in one transaction: sets each
    /// `state`, and `reviewed_by`/`reviewed_at_ms` when the change has a
    /// `by` (superseding keeps the original review record). Fails with
    /// [`StoreError::Conflict`] (changing nothing) when a version is
    /// missing or not in its `from` state.
    fn transition(
        &self,
        app: &str,
        changes: &[StateChange],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
