//! `PortfolioStore` on a real SQLite database (sqlx), as the platform's
//! store will implement it: one row per version, the version as JSON, the
//! state in its own column so transitions are compare-and-set.

use portfolio::review::{PortfolioStore, ReviewState, StateChange, StoreError, Version};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

pub struct SqliteStore {
    pool: SqlitePool,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl SqliteStore {
    pub async fn open(path: &std::path::Path) -> Self {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS portfolio_versions (
                app TEXT NOT NULL,
                number BIGINT NOT NULL,
                state TEXT NOT NULL,
                reviewed_by TEXT,
                reviewed_at BIGINT,
                body TEXT NOT NULL,
                PRIMARY KEY (app, number))",
        )
        .execute(&pool)
        .await
        .unwrap();
        SqliteStore { pool }
    }
}

impl PortfolioStore for SqliteStore {
    async fn insert_version(&self, v: &Version) -> Result<(), StoreError> {
        let body = serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let r = sqlx::query(
            "INSERT INTO portfolio_versions (app, number, state, reviewed_by, reviewed_at, body) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&v.app)
        .bind(i64::from(v.number))
        .bind(v.state.as_str())
        .bind(&v.reviewed_by)
        .bind(v.reviewed_at_ms)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "{} version {} exists",
                v.app, v.number
            )));
        }
        Ok(())
    }

    async fn versions(&self, app: &str) -> Result<Vec<Version>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, reviewed_by, reviewed_at, body FROM portfolio_versions WHERE app = ? ORDER BY number",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|r| {
                let mut v: Version = serde_json::from_str(&r.get::<String, _>(3))
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                v.state = ReviewState::parse(&r.get::<String, _>(0))
                    .ok_or_else(|| StoreError::Conflict("unknown state".into()))?;
                v.reviewed_by = r.get(1);
                v.reviewed_at_ms = r.get(2);
                Ok(v)
            })
            .collect()
    }

    async fn apps(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT app FROM portfolio_versions ORDER BY app")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    async fn transition(&self, app: &str, changes: &[StateChange]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for c in changes {
            let r = sqlx::query(
                "UPDATE portfolio_versions SET state = ?, reviewed_by = COALESCE(?, reviewed_by), reviewed_at = CASE WHEN ? IS NULL THEN reviewed_at ELSE ? END WHERE app = ? AND number = ? AND state = ?",
            )
            .bind(c.to.as_str())
            .bind(&c.by)
            .bind(&c.by)
            .bind(c.at_ms)
            .bind(app)
            .bind(i64::from(c.number))
            .bind(c.from.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if r.rows_affected() != 1 {
                // Dropping the transaction rolls back the earlier changes.
                return Err(StoreError::Conflict(format!(
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
