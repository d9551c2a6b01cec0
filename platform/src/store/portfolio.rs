//! Portfolio entries: the reviewed-before-published page per app.

use serde::Serialize;
use sqlx::Row;

use super::{now_ms, q, Store, StoreError};

/// Review state of a portfolio entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortfolioStatus {
    /// Drafted, waiting for the owner.
    Draft,
    /// Approved and on the site.
    Published,
    /// The owner turned it down.
    Rejected,
}

impl PortfolioStatus {
    fn as_str(self) -> &'static str {
        match self {
            PortfolioStatus::Draft => "draft",
            PortfolioStatus::Published => "published",
            PortfolioStatus::Rejected => "rejected",
        }
    }
    fn parse(s: &str) -> PortfolioStatus {
        match s {
            "published" => PortfolioStatus::Published,
            "rejected" => PortfolioStatus::Rejected,
            _ => PortfolioStatus::Draft,
        }
    }
}

/// An app's portfolio page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PortfolioEntry {
    /// The app.
    pub app: String,
    /// Review state.
    pub status: PortfolioStatus,
    /// Page title.
    pub title: String,
    /// Description (drafted, then edited by the owner).
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Screenshot file, if taken.
    pub screenshot_path: Option<String>,
    /// The deploy the draft was made from.
    pub deploy_number: Option<i64>,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// When it was published, Unix ms.
    pub published_at: Option<i64>,
}

impl Store {
    /// Saves a draft for `app` (replacing any earlier draft or page).
    pub async fn save_portfolio_draft(
        &self,
        app: &str,
        title: &str,
        description: &str,
        tags: &[String],
        screenshot_path: Option<&str>,
        deploy_number: Option<i64>,
    ) -> Result<(), StoreError> {
        self.require_app(app).await?;
        let mut tx = self
            .begin_write()
            .await
            .map_err(q("saving a portfolio draft"))?;
        sqlx::query("DELETE FROM portfolio_entries WHERE app = $1")
            .bind(app)
            .execute(&mut *tx)
            .await
            .map_err(q("saving a portfolio draft"))?;
        sqlx::query(
            "INSERT INTO portfolio_entries (app, status, title, description, tags, screenshot_path, deploy_number, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app)
        .bind(PortfolioStatus::Draft.as_str())
        .bind(title)
        .bind(description)
        .bind(tags.join(" "))
        .bind(screenshot_path.map(String::from))
        .bind(deploy_number)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(q("saving a portfolio draft"))?;
        tx.commit().await.map_err(q("saving a portfolio draft"))?;
        Ok(())
    }

    /// Publishes or rejects the entry.
    pub async fn review_portfolio(&self, app: &str, approve: bool) -> Result<(), StoreError> {
        let (status, published) = if approve {
            (PortfolioStatus::Published, Some(now_ms()))
        } else {
            (PortfolioStatus::Rejected, None)
        };
        let r = sqlx::query(
            "UPDATE portfolio_entries SET status = $1, published_at = $2, updated_at = $3 WHERE app = $4",
        )
        .bind(status.as_str())
        .bind(published)
        .bind(now_ms())
        .bind(app)
        .execute(&self.pool)
        .await
        .map_err(q("reviewing a portfolio entry"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "portfolio entry",
                name: app.into(),
            });
        }
        Ok(())
    }

    /// The entry for `app`, if any.
    pub async fn portfolio_entry(&self, app: &str) -> Result<Option<PortfolioEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT app, status, title, description, tags, screenshot_path, deploy_number, updated_at, published_at FROM portfolio_entries WHERE app = $1",
        )
        .bind(app)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a portfolio entry"))?;
        Ok(row.map(|r| PortfolioEntry {
            app: r.get(0),
            status: PortfolioStatus::parse(&r.get::<String, _>(1)),
            title: r.get(2),
            description: r.get(3),
            tags: r
                .get::<String, _>(4)
                .split_whitespace()
                .map(String::from)
                .collect(),
            screenshot_path: r.get(5),
            deploy_number: r.get(6),
            updated_at: r.get(7),
            published_at: r.get(8),
        }))
    }
}
