//! Apps, their owners and collaborators, and who may access them.

use serde::Serialize;
use sqlx::Row;

use super::{is_unique_violation, now_ms, q, validate_dns_label, Store, StoreError};

/// An app.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct App {
    /// The app's name (a DNS label; also its host name).
    pub name: String,
    /// The user who created it.
    pub owner: String,
    /// Users besides the owner who may push and fetch.
    pub collaborators: Vec<String>,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Its owner stopped it (`byteport stop`): it stays down until started.
    pub stopped: bool,
}

impl Store {
    /// Creates an app owned by `owner`.
    pub async fn create_app(&self, name: &str, owner: &str) -> Result<App, StoreError> {
        validate_dns_label("app", name)?;
        let now = now_ms();
        sqlx::query("INSERT INTO apps (name, owner, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(owner)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists {
                        kind: "app",
                        name: name.into(),
                    }
                } else if matches!(&e, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
                    StoreError::NotFound {
                        kind: "user",
                        name: owner.into(),
                    }
                } else {
                    StoreError::Query {
                        context: "creating an app",
                        source: e,
                    }
                }
            })?;
        Ok(App {
            name: name.into(),
            owner: owner.into(),
            collaborators: vec![],
            created_at: now,
            stopped: false,
        })
    }

    /// Looks an app up.
    pub async fn app(&self, name: &str) -> Result<Option<App>, StoreError> {
        let row =
            sqlx::query("SELECT name, owner, created_at, desired_state FROM apps WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("looking up an app"))?;
        let Some(row) = row else { return Ok(None) };
        let collaborators = self.collaborators(name).await?;
        Ok(Some(App {
            name: row.get(0),
            owner: row.get(1),
            collaborators,
            created_at: row.get(2),
            stopped: row.get::<String, _>(3) == "stopped",
        }))
    }

    /// Records whether `app` should run (`byteport start`) or stay stopped
    /// (`byteport stop`), so that a restart of `byteport up` honours it.
    pub async fn set_app_stopped(&self, app: &str, stopped: bool) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE apps SET desired_state = $1 WHERE name = $2")
            .bind(if stopped { "stopped" } else { "running" })
            .bind(app)
            .execute(&self.pool)
            .await
            .map_err(q("recording an app's desired state"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "app",
                name: app.into(),
            });
        }
        Ok(())
    }

    /// Like [`Store::app`], but a missing app is an error.
    pub async fn require_app(&self, name: &str) -> Result<App, StoreError> {
        self.app(name).await?.ok_or_else(|| StoreError::NotFound {
            kind: "app",
            name: name.into(),
        })
    }

    async fn collaborators(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_name FROM app_collaborators WHERE app = $1 ORDER BY user_name",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing collaborators"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Apps visible to `user` (owned or shared), or all apps for `None`.
    pub async fn list_apps(&self, user: Option<&str>) -> Result<Vec<App>, StoreError> {
        let rows = match user {
            None => sqlx::query("SELECT name FROM apps ORDER BY name")
                .fetch_all(&self.pool)
                .await,
            Some(u) => sqlx::query(
                "SELECT name FROM apps WHERE owner = $1 OR name IN (SELECT app FROM app_collaborators WHERE user_name = $1) ORDER BY name",
            )
            .bind(u)
            .fetch_all(&self.pool)
            .await,
        }
        .map_err(q("listing apps"))?;
        let mut apps = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            if let Some(app) = self.app(&name).await? {
                apps.push(app);
            }
        }
        Ok(apps)
    }

    /// Adds `user` as a collaborator on `app`.
    pub async fn share_app(&self, app: &str, user: &str) -> Result<(), StoreError> {
        let a = self.require_app(app).await?;
        if self.user(user).await?.is_none() {
            return Err(StoreError::NotFound {
                kind: "user",
                name: user.into(),
            });
        }
        if a.owner == user || a.collaborators.iter().any(|c| c == user) {
            return Ok(());
        }
        sqlx::query("INSERT INTO app_collaborators (app, user_name, added_at) VALUES ($1, $2, $3)")
            .bind(app)
            .bind(user)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("sharing an app"))?;
        Ok(())
    }

    /// Removes a collaborator.
    pub async fn unshare_app(&self, app: &str, user: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM app_collaborators WHERE app = $1 AND user_name = $2")
            .bind(app)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("unsharing an app"))?;
        Ok(())
    }

    /// May `user` push to and fetch from `app`? (Owner or collaborator.)
    pub async fn can_access(&self, user: &str, app: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM apps WHERE name = $1 AND (owner = $2 OR EXISTS (SELECT 1 FROM app_collaborators c WHERE c.app = $1 AND c.user_name = $2))",
        )
        .bind(app)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("checking access"))?;
        Ok(row.is_some())
    }

    /// Deletes an app and everything recorded about it.
    pub async fn delete_app(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await.map_err(q("deleting an app"))?;
        // Explicit child deletes: SQLite only cascades with foreign_keys on.
        for table in [
            "app_collaborators",
            "deploys",
            "config_vars",
            "secrets",
            "portfolio_versions",
            "domains",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE app = $1"
            )))
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("deleting an app"))?;
        }
        let r = sqlx::query("DELETE FROM apps WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("deleting an app"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "app",
                name: name.into(),
            });
        }
        tx.commit().await.map_err(q("deleting an app"))?;
        Ok(())
    }
}
