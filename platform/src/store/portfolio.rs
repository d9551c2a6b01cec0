//! The portfolio's persistence: [`portfolio::review::PortfolioStore`] on
//! the state store (one row per version, the version as JSON, its review
//! state in its own column so transitions are compare-and-set), and small
//! JSON settings documents (the site's profile, the publish target).

use portfolio::review::{
    PortfolioStore, ReviewState, StateChange, StoreError as ReviewStoreError, Version,
};
use sqlx::Row;

use super::{is_unique_violation, now_ms, q, Store, StoreError};

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> ReviewStoreError {
    ReviewStoreError::Backend(Box::new(e))
}

impl PortfolioStore for Store {
    async fn insert_version(&self, v: &Version) -> Result<(), ReviewStoreError> {
        let body = serde_json::to_string(v).map_err(backend)?;
        let r = sqlx::query(
            "INSERT INTO portfolio_versions (app, number, state, reviewed_by, reviewed_at, created_at, body) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&v.app)
        .bind(i64::from(v.number))
        .bind(v.state.as_str())
        .bind(v.reviewed_by.clone())
        .bind(v.reviewed_at_ms)
        .bind(v.created_at_ms)
        .bind(body)
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(ReviewStoreError::Conflict(format!(
                "{} version {} exists",
                v.app, v.number
            ))),
            Err(e) => Err(backend(e)),
        }
    }

    async fn versions(&self, app: &str) -> Result<Vec<Version>, ReviewStoreError> {
        let rows = sqlx::query(
            "SELECT state, reviewed_by, reviewed_at, body FROM portfolio_versions WHERE app = $1 ORDER BY number",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let mut v: Version =
                    serde_json::from_str(&r.get::<String, _>(3)).map_err(backend)?;
                v.state = ReviewState::parse(&r.get::<String, _>(0)).ok_or_else(|| {
                    ReviewStoreError::Conflict(format!("{app}: unknown review state"))
                })?;
                v.reviewed_by = r.get(1);
                v.reviewed_at_ms = r.get(2);
                Ok(v)
            })
            .collect()
    }

    async fn apps(&self) -> Result<Vec<String>, ReviewStoreError> {
        let rows = sqlx::query("SELECT DISTINCT app FROM portfolio_versions ORDER BY app")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn transition(&self, app: &str, changes: &[StateChange]) -> Result<(), ReviewStoreError> {
        let mut tx = self.begin_write().await.map_err(backend)?;
        for c in changes {
            let r = match &c.by {
                Some(by) => sqlx::query(
                    "UPDATE portfolio_versions SET state = $1, reviewed_by = $2, reviewed_at = $3 WHERE app = $4 AND number = $5 AND state = $6",
                )
                .bind(c.to.as_str())
                .bind(by.clone())
                .bind(c.at_ms)
                .bind(app)
                .bind(i64::from(c.number))
                .bind(c.from.as_str()),
                None => sqlx::query(
                    "UPDATE portfolio_versions SET state = $1 WHERE app = $2 AND number = $3 AND state = $4",
                )
                .bind(c.to.as_str())
                .bind(app)
                .bind(i64::from(c.number))
                .bind(c.from.as_str()),
            }
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if r.rows_affected() != 1 {
                // Dropping the transaction rolls back the earlier changes.
                return Err(ReviewStoreError::Conflict(format!(
                    "{app} version {} is not {} any more",
                    c.number,
                    c.from.as_str()
                )));
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
}

impl Store {
    /// A settings document (`None`: never set).
    pub async fn setting<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a setting"))?;
        row.map(|r| {
            serde_json::from_str(&r.get::<String, _>(0))
                .map_err(|e| StoreError::Invalid(format!("setting {name} is unreadable: {e}")))
        })
        .transpose()
    }

    /// Deletes a settings document (nothing if there is none).
    pub async fn delete_setting(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("deleting a setting"))?;
        Ok(())
    }

    /// Writes a settings document.
    pub async fn set_setting<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(value)
            .map_err(|e| StoreError::Invalid(format!("setting {name}: {e}")))?;
        let mut tx = self.begin_write().await.map_err(q("writing a setting"))?;
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("writing a setting"))?;
        sqlx::query("INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(text)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(q("writing a setting"))?;
        tx.commit().await.map_err(q("writing a setting"))?;
        Ok(())
    }
}
