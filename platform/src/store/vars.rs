//! Per-app config vars (plain) and secrets (sealed at rest, never listed
//! with their values).

use std::collections::BTreeMap;

use sqlx::Row;

use super::{now_ms, q, Store, StoreError};

/// Checks an env/secret name: `[A-Z_][A-Z0-9_]*`, at most 128 characters.
pub fn validate_var_name(name: &str) -> Result<(), StoreError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 128
        && matches!(bytes.next(), Some(b'A'..=b'Z' | b'_'))
        && bytes.all(|b| matches!(b, b'A'..=b'Z' | b'0'..=b'9' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid variable name `{}`: use upper-case letters, digits and '_', not starting with a digit",
            name.escape_default()
        )))
    }
}

const MAX_VALUE_BYTES: usize = 64 * 1024;

fn validate_value(name: &str, value: &str) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::Invalid(format!(
            "value of `{name}` is {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "value of `{name}` contains a NUL byte"
        )));
    }
    Ok(())
}

impl Store {
    /// Sets config vars (all or nothing).
    pub async fn set_config(&self, app: &str, vars: &[(String, String)]) -> Result<(), StoreError> {
        self.require_app(app).await?;
        for (k, v) in vars {
            validate_var_name(k)?;
            validate_value(k, v)?;
        }
        let mut tx = self.begin_write().await.map_err(q("setting config"))?;
        let now = now_ms();
        for (k, v) in vars {
            sqlx::query("DELETE FROM config_vars WHERE app = $1 AND key = $2")
                .bind(app)
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(q("setting config"))?;
            sqlx::query(
                "INSERT INTO config_vars (app, key, value, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(app)
            .bind(k)
            .bind(v)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("setting config"))?;
        }
        tx.commit().await.map_err(q("setting config"))?;
        Ok(())
    }

    /// Removes config vars; returns how many existed.
    pub async fn unset_config(&self, app: &str, keys: &[String]) -> Result<u64, StoreError> {
        self.require_app(app).await?;
        let mut n = 0;
        for k in keys {
            n += sqlx::query("DELETE FROM config_vars WHERE app = $1 AND key = $2")
                .bind(app)
                .bind(k)
                .execute(&self.pool)
                .await
                .map_err(q("unsetting config"))?
                .rows_affected();
        }
        Ok(n)
    }

    /// All config vars of an app.
    pub async fn config_vars(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT key, value FROM config_vars WHERE app = $1 ORDER BY key")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading config"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Sets a secret; the value is sealed before it reaches the database.
    pub async fn set_secret(&self, app: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.require_app(app).await?;
        validate_var_name(name)?;
        validate_value(name, value)?;
        let sealed = self.secrets.seal(app, name, value);
        let mut tx = self.begin_write().await.map_err(q("setting a secret"))?;
        sqlx::query("DELETE FROM secrets WHERE app = $1 AND name = $2")
            .bind(app)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(q("setting a secret"))?;
        sqlx::query("INSERT INTO secrets (app, name, sealed, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(app)
            .bind(name)
            .bind(sealed)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(q("setting a secret"))?;
        tx.commit().await.map_err(q("setting a secret"))?;
        Ok(())
    }

    /// Removes a secret; `false` if it did not exist.
    pub async fn unset_secret(&self, app: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM secrets WHERE app = $1 AND name = $2")
            .bind(app)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("unsetting a secret"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Names of an app's secrets (never their values).
    pub async fn secret_names(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM secrets WHERE app = $1 ORDER BY name")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(q("listing secrets"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Decrypted secrets, for handing to a deploy. Never log the result.
    pub async fn secret_values(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT name, sealed FROM secrets WHERE app = $1 ORDER BY name")
            .bind(app)
            .fetch_all(&self.pool)
            .await
            .map_err(q("reading secrets"))?;
        let mut out = BTreeMap::new();
        for r in rows {
            let name: String = r.get(0);
            let sealed: String = r.get(1);
            let value = self.secrets.open(app, &name, &sealed)?;
            out.insert(name, value);
        }
        Ok(out)
    }

    /// The raw sealed value as stored (for tests proving encryption at rest).
    pub async fn sealed_secret(&self, app: &str, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM secrets WHERE app = $1 AND name = $2")
            .bind(app)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("reading a secret"))?;
        Ok(row.map(|r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_names() {
        for good in ["A", "_X", "DATABASE_URL", "A1_B2"] {
            validate_var_name(good).unwrap();
        }
        for bad in ["", "a", "1A", "A-B", "A B", "Ä", &"A".repeat(129)] {
            assert!(validate_var_name(bad).is_err(), "{bad}");
        }
    }
}
