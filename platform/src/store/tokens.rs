//! API tokens for scripts and Prometheus (`byteport tokens create`): shown
//! once, stored as the SHA-256 of their secret part, revocable.
//!
//! A token reads `bpt_<id>_<secret>`: the id finds the row, the secret is
//! compared in constant time with the stored hash. The secret has 256 bits
//! of entropy, so a fast hash is enough (unlike passwords).

use serde::Serialize;
use sqlx::Row;

use super::sessions::{random_token, token_hash};
use super::{now_ms, q, validate_dns_label, Store, StoreError};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Everything its user may do in the dashboard, through `/api/v1`.
    Api,
    /// Only read `/metrics`.
    Metrics,
}

impl TokenScope {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Api => "api",
            TokenScope::Metrics => "metrics",
        }
    }

    fn parse(s: &str) -> TokenScope {
        if s == "api" {
            TokenScope::Api
        } else {
            TokenScope::Metrics
        }
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// The public id (`bpt_<id>_…`).
    pub id: String,
    /// Whose rights it carries.
    pub user: String,
    /// A note saying what it is for.
    pub label: String,
    /// What it may do.
    pub scope: TokenScope,
    /// Created at, Unix ms.
    pub created_at: i64,
    /// Last used at, Unix ms.
    pub last_used_at: Option<i64>,
    /// Revoked at, Unix ms.
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, user_name, label, scope, created_at, last_used_at, revoked_at";

fn from_row(r: &sqlx::any::AnyRow) -> ApiToken {
    ApiToken {
        id: r.get(0),
        user: r.get(1),
        label: r.get(2),
        scope: TokenScope::parse(&r.get::<String, _>(3)),
        created_at: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

/// Splits `bpt_<id>_<secret>`.
fn split_token(raw: &str) -> Option<(&str, &str)> {
    let rest = raw.trim().strip_prefix("bpt_")?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id) && hexish(secret) && id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

/// Equal, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    /// Creates a token for `user`; returns it listed and its full text,
    /// which is never stored and cannot be shown again.
    pub async fn create_token(
        &self,
        user: &str,
        label: &str,
        scope: TokenScope,
    ) -> Result<(ApiToken, String), StoreError> {
        validate_dns_label("user", user)?;
        if label.len() > 200 || label.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "a token's label is one line of at most 200 bytes".into(),
            ));
        }
        if self.user(user).await?.is_none() {
            return Err(StoreError::NotFound {
                kind: "user",
                name: user.into(),
            });
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = random_token();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO api_tokens (id, user_name, label, scope, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user)
        .bind(label)
        .bind(scope.as_str())
        .bind(token_hash(&secret))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(q("creating a token"))?;
        let token = ApiToken {
            id: id.clone(),
            user: user.into(),
            label: label.into(),
            scope,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        Ok((token, format!("bpt_{id}_{secret}")))
    }

    /// Tokens, oldest first (of one user, or all).
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let rows = match user {
            Some(u) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_tokens WHERE user_name = $1 ORDER BY created_at, id"
                )))
                .bind(u)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(q("listing tokens"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Revokes a token by id (`bpt_` prefix and secret optional).
    pub async fn revoke_token(&self, id: &str) -> Result<(), StoreError> {
        let id = id.trim().trim_start_matches("bpt_");
        let id = id.split('_').next().unwrap_or(id);
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("revoking a token"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "live token",
                name: id.into(),
            });
        }
        Ok(())
    }

    /// The live token `raw` is, if any; records its use (at most once a
    /// minute).
    pub async fn verify_token(&self, raw: &str) -> Result<Option<ApiToken>, StoreError> {
        let Some((id, secret)) = split_token(raw) else {
            return Ok(None);
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, secret_hash FROM api_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(q("checking a token"))?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.get(7);
        let token = from_row(&row);
        if token.revoked_at.is_some()
            || !constant_time_eq(stored.as_bytes(), token_hash(secret).as_bytes())
        {
            return Ok(None);
        }
        let now = now_ms();
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(q("recording a token's use"))?;
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_text_is_checked_before_any_query() {
        let good = format!("bpt_{}_{}", "a".repeat(16), "b".repeat(64));
        assert!(split_token(&good).is_some());
        for bad in [
            "",
            "bpt_",
            "bpt_x_y",
            "abc",
            &format!("bpt_{}_{}", "a".repeat(15), "b".repeat(64)),
            &format!("bpt_{}_{}", "g".repeat(16), "b".repeat(64)),
            &format!("xpt_{}_{}", "a".repeat(16), "b".repeat(64)),
        ] {
            assert!(split_token(bad).is_none(), "{bad}");
        }
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
