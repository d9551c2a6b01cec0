//! The log index: which file holds which app's log stream for a deploy.
//! The log lines themselves live in files under `$BYTEPORT_HOME/logs/`.

use serde::Serialize;
use sqlx::Row;

use super::{now_ms, q, Store, StoreError};

/// One indexed log file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogSegment {
    /// The app.
    pub app: String,
    /// The deploy the log belongs to.
    pub deploy_number: i64,
    /// `build`, `app`, `router`, ...
    pub stream: String,
    /// The file holding the lines.
    pub path: String,
    /// Size so far.
    pub bytes: i64,
    /// First line's time, Unix ms.
    pub first_at: i64,
    /// Last line's time, Unix ms.
    pub last_at: i64,
}

impl Store {
    /// Registers a log file, or updates its size and last time.
    pub async fn index_log(
        &self,
        app: &str,
        deploy_number: i64,
        stream: &str,
        path: &str,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE log_segments SET bytes = $1, last_at = $2, path = $3 WHERE app = $4 AND deploy_number = $5 AND stream = $6",
        )
        .bind(bytes)
        .bind(now)
        .bind(path)
        .bind(app)
        .bind(deploy_number)
        .bind(stream)
        .execute(&self.pool)
        .await
        .map_err(q("indexing a log"))?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO log_segments (app, deploy_number, stream, path, bytes, first_at, last_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(app)
            .bind(deploy_number)
            .bind(stream)
            .bind(path)
            .bind(bytes)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(q("indexing a log"))?;
        }
        Ok(())
    }

    /// An app's log files, newest deploy first.
    pub async fn log_segments(&self, app: &str) -> Result<Vec<LogSegment>, StoreError> {
        let rows = sqlx::query(
            "SELECT app, deploy_number, stream, path, bytes, first_at, last_at FROM log_segments WHERE app = $1 ORDER BY deploy_number DESC, stream",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing logs"))?;
        Ok(rows
            .iter()
            .map(|r| LogSegment {
                app: r.get(0),
                deploy_number: r.get(1),
                stream: r.get(2),
                path: r.get(3),
                bytes: r.get(4),
                first_at: r.get(5),
                last_at: r.get(6),
            })
            .collect())
    }
}
