//! Dashboard sign-in sessions, stored server-side so that they can be
//! revoked: the browser holds a random token, the store its SHA-256.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{now_ms, q, Store, StoreError};

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// SHA-256 (hex) of the cookie's token: the row's key.
    pub id_hash: String,
    /// Who signed in.
    pub user: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// Signed in at, Unix ms.
    pub created_at: i64,
    /// Last request, Unix ms (updated at most once a minute).
    pub last_seen_at: i64,
    /// Not valid after this, Unix ms.
    pub expires_at: i64,
    /// The address it signed in from.
    pub address: Option<String>,
}

/// A new session: the token for the cookie (never stored) and the row.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie's value.
    pub token: String,
    /// What the store keeps.
    pub session: Session,
}

/// SHA-256 of a secret token, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes, hex.
pub(crate) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

const COLUMNS: &str = "id_hash, user_name, csrf, created_at, last_seen_at, expires_at, address";

fn from_row(r: &sqlx::any::AnyRow) -> Session {
    Session {
        id_hash: r.get(0),
        user: r.get(1),
        csrf: r.get(2),
        created_at: r.get(3),
        last_seen_at: r.get(4),
        expires_at: r.get(5),
        address: r.get(6),
    }
}

impl Store {
    /// Starts a session for `user`, valid for `lifetime_ms`.
    pub async fn create_session(
        &self,
        user: &str,
        lifetime_ms: i64,
        address: Option<&str>,
    ) -> Result<NewSession, StoreError> {
        let token = random_token();
        let now = now_ms();
        let session = Session {
            id_hash: token_hash(&token),
            user: user.to_string(),
            csrf: random_token(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + lifetime_ms,
            address: address.map(String::from),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(&session.id_hash)
        .bind(&session.user)
        .bind(&session.csrf)
        .bind(session.created_at)
        .bind(session.last_seen_at)
        .bind(session.expires_at)
        .bind(session.address.clone())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if matches!(&e, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
                StoreError::NotFound {
                    kind: "user",
                    name: user.into(),
                }
            } else {
                q("starting a session")(e)
            }
        })?;
        Ok(NewSession { token, session })
    }

    /// The live session a cookie token names (`None`: unknown, revoked or
    /// expired). Records the visit at most once a minute.
    pub async fn session(&self, token: &str) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE id_hash = $1"
        )))
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading a session"))?;
        let Some(s) = row.as_ref().map(from_row) else {
            return Ok(None);
        };
        let now = now_ms();
        if s.expires_at <= now {
            self.end_session(token).await?;
            return Ok(None);
        }
        if now - s.last_seen_at > 60_000 {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
                .bind(now)
                .bind(&s.id_hash)
                .execute(&self.pool)
                .await
                .map_err(q("recording a session's use"))?;
        }
        Ok(Some(s))
    }

    /// Ends the session a cookie token names (sign out).
    pub async fn end_session(&self, token: &str) -> Result<(), StoreError> {
        self.end_session_by_hash(&token_hash(token)).await
    }

    /// Ends a session by its stored key (revoking another browser).
    pub async fn end_session_by_hash(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(q("ending a session"))?;
        Ok(())
    }

    /// A user's live sessions, newest first.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_name = $1 AND expires_at > $2 ORDER BY created_at DESC"
        )))
        .bind(user)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing sessions"))?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Ends every session of `user` (signed out everywhere); returns how many.
    pub async fn end_sessions_of(&self, user: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(q("ending sessions"))?;
        Ok(r.rows_affected())
    }

    /// Deletes expired sessions; returns how many.
    pub async fn prune_sessions(&self) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(q("pruning sessions"))?;
        Ok(r.rows_affected())
    }
}
