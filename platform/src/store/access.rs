//! What the dashboard asks the store beyond apps and deploys: the
//! operator flag, a user's own SSH keys with their last use, and when each
//! secret was last set (never its value).

use serde::Serialize;
use sqlx::Row;

use super::{now_ms, q, App, JobRow, SshKey, Store, StoreError};

/// An SSH key with the time it last let its owner in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyUse {
    /// The key.
    #[serde(flatten)]
    pub key: SshKey,
    /// Last successful authentication, Unix ms.
    pub last_used_at: Option<i64>,
}

/// A secret's name and when it was last set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The name (`DATABASE_URL`).
    pub name: String,
    /// Last set at, Unix ms.
    pub updated_at: i64,
}

/// What the apps list shows of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOverview {
    /// The app.
    pub app: App,
    /// Its live deploy: number and commit.
    pub live: Option<(i64, String)>,
    /// Its newest deploy failed.
    pub latest_failed: bool,
    /// Its queued and running jobs, oldest first.
    pub active: Vec<JobRow>,
}

impl Store {
    /// Every app `user` may see (all for `None`) with its live deploy,
    /// whether its newest deploy failed, and its active jobs — in a
    /// handful of queries, not a few per app (the apps list with many apps).
    pub async fn apps_overview(&self, user: Option<&str>) -> Result<Vec<AppOverview>, StoreError> {
        let ctx = "reading the apps overview";
        let apps = match user {
            None => sqlx::query("SELECT name, owner, created_at, desired_state FROM apps ORDER BY name")
                .fetch_all(&self.pool)
                .await,
            Some(u) => sqlx::query(
                "SELECT name, owner, created_at, desired_state FROM apps WHERE owner = $1 OR name IN (SELECT app FROM app_collaborators WHERE user_name = $1) ORDER BY name",
            )
            .bind(u)
            .fetch_all(&self.pool)
            .await,
        }
        .map_err(q(ctx))?;
        let collaborators =
            sqlx::query("SELECT app, user_name FROM app_collaborators ORDER BY user_name")
                .fetch_all(&self.pool)
                .await
                .map_err(q(ctx))?;
        let live = sqlx::query(
            "SELECT app, number, commit_id FROM deploys WHERE status = 'live' ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        let latest = sqlx::query(
            "SELECT d.app, d.status FROM deploys d WHERE d.number = (SELECT MAX(x.number) FROM deploys x WHERE x.app = d.app)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q(ctx))?;
        let active_ids =
            sqlx::query("SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(q(ctx))?;
        let mut active: Vec<JobRow> = Vec::new();
        for r in active_ids {
            if let Some(job) = self.job(r.get(0)).await? {
                active.push(job);
            }
        }
        let mut out = Vec::with_capacity(apps.len());
        for r in apps {
            let name: String = r.get(0);
            let app = App {
                collaborators: collaborators
                    .iter()
                    .filter(|c| c.get::<String, _>(0) == name)
                    .map(|c| c.get(1))
                    .collect(),
                owner: r.get(1),
                created_at: r.get(2),
                stopped: r.get::<String, _>(3) == "stopped",
                name: name.clone(),
            };
            out.push(AppOverview {
                live: live
                    .iter()
                    .filter(|l| l.get::<String, _>(0) == name)
                    .map(|l| (l.get(1), l.get(2)))
                    .next_back(),
                latest_failed: latest
                    .iter()
                    .any(|l| l.get::<String, _>(0) == name && l.get::<String, _>(1) == "failed"),
                active: active.iter().filter(|j| j.app == name).cloned().collect(),
                app,
            });
        }
        Ok(out)
    }

    /// Makes `user` an operator (sees every app and the Host page) or not.
    pub async fn set_operator(&self, user: &str, operator: bool) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE users SET operator = $1 WHERE name = $2")
            .bind(i64::from(operator))
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("setting the operator flag"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "user",
                name: user.into(),
            });
        }
        Ok(())
    }

    /// Is `user` an operator? (`false` for unknown users.)
    pub async fn is_operator(&self, user: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT operator FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading the operator flag"))?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) != 0))
    }

    /// Records that the key with `fingerprint` just authenticated.
    pub async fn touch_key(&self, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE ssh_keys SET last_used_at = $1 WHERE fingerprint = $2")
            .bind(now_ms())
            .bind(fingerprint)
            .execute(&self.pool)
            .await
            .map_err(q("recording a key's use"))?;
        Ok(())
    }

    /// `user`'s keys with their last use, oldest first.
    pub async fn keys_of(&self, user: &str) -> Result<Vec<KeyUse>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, user_name, algorithm, public_key, created_at, last_used_at FROM ssh_keys WHERE user_name = $1 ORDER BY created_at, fingerprint",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing a user's keys"))?;
        Ok(rows
            .iter()
            .map(|r| KeyUse {
                key: SshKey {
                    fingerprint: r.get(0),
                    user: r.get(1),
                    algorithm: r.get(2),
                    public_key: r.get(3),
                    created_at: r.get(4),
                },
                last_used_at: r.get(5),
            })
            .collect())
    }

    /// Removes one of `user`'s keys by fingerprint; another user's key is
    /// "not found" (nobody learns it exists).
    pub async fn remove_key_of(&self, user: &str, fingerprint: &str) -> Result<(), StoreError> {
        let r = sqlx::query("DELETE FROM ssh_keys WHERE user_name = $1 AND fingerprint = $2")
            .bind(user)
            .bind(fingerprint)
            .execute(&self.pool)
            .await
            .map_err(q("removing a key"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "key",
                name: fingerprint.into(),
            });
        }
        Ok(())
    }

    /// An app's secrets: names and update times, never values.
    pub async fn secrets_info(&self, app: &str) -> Result<Vec<SecretInfo>, StoreError> {
        let rows = sqlx::query("SELECT name, updated_at FROM secrets WHERE app = $1 ORDER BY name")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing secrets"))?;
        Ok(rows
            .iter()
            .map(|r| SecretInfo {
                name: r.get(0),
                updated_at: r.get(1),
            })
            .collect())
    }
}
