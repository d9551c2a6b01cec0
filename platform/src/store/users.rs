//! Users (dashboard logins and key owners) and their SSH public keys.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde::Serialize;
use sqlx::Row;

use super::{is_unique_violation, now_ms, q, validate_dns_label, Store, StoreError};

/// A user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Unique name (a DNS label).
    pub name: String,
    /// Whether a dashboard password is set.
    pub has_password: bool,
    /// Creation time, Unix ms.
    pub created_at: i64,
}

/// An SSH public key registered for a user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SshKey {
    /// `SHA256:…` fingerprint, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The owning user.
    pub user: String,
    /// Key algorithm, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The key in OpenSSH one-line form, without its comment.
    pub public_key: String,
    /// When it was added, Unix ms.
    pub created_at: i64,
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA… comment`) into
/// (algorithm, canonical line, SHA256 fingerprint).
pub fn parse_public_key(line: &str) -> Result<(String, String, String), StoreError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(StoreError::Invalid("the public key file is empty".into()));
    }
    if line.contains("PRIVATE KEY") {
        return Err(StoreError::Invalid(
            "this is a PRIVATE key; pass the .pub file instead".into(),
        ));
    }
    let first = line.lines().next().unwrap_or_default();
    let key = ssh_key::PublicKey::from_openssh(first).map_err(|e| {
        StoreError::Invalid(format!(
            "not an OpenSSH public key ({e}); expected a line like `ssh-ed25519 AAAA… you@host`"
        ))
    })?;
    let mut canonical = key.clone();
    canonical.set_comment("");
    let text = canonical
        .to_openssh()
        .map_err(|e| StoreError::Invalid(format!("cannot encode public key: {e}")))?;
    Ok((
        key.algorithm().to_string(),
        text.trim().to_string(),
        key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
    ))
}

impl Store {
    /// Creates a user; `password` enables dashboard login.
    pub async fn add_user(&self, name: &str, password: Option<&str>) -> Result<User, StoreError> {
        validate_dns_label("user", name)?;
        let hash = match password {
            Some(p) if p.len() < 8 => {
                return Err(StoreError::Invalid(
                    "password too short: use at least 8 characters".into(),
                ))
            }
            Some(p) => Some(
                Argon2::default()
                    .hash_password(p.as_bytes(), &SaltString::generate(&mut OsRng))
                    .map_err(|e| StoreError::Invalid(format!("cannot hash password: {e}")))?
                    .to_string(),
            ),
            None => None,
        };
        let now = now_ms();
        sqlx::query("INSERT INTO users (name, password_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(hash.clone())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists {
                        kind: "user",
                        name: name.into(),
                    }
                } else {
                    StoreError::Query {
                        context: "adding a user",
                        source: e,
                    }
                }
            })?;
        Ok(User {
            name: name.into(),
            has_password: hash.is_some(),
            created_at: now,
        })
    }

    /// Sets or replaces a user's password.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), StoreError> {
        if password.len() < 8 {
            return Err(StoreError::Invalid(
                "password too short: use at least 8 characters".into(),
            ));
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map_err(|e| StoreError::Invalid(format!("cannot hash password: {e}")))?
            .to_string();
        let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(q("setting a password"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "user",
                name: name.into(),
            });
        }
        Ok(())
    }

    /// Checks a password; `false` for unknown users or users without one.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("checking a password"))?;
        let Some(hash) = row.and_then(|r| r.get::<Option<String>, _>(0)) else {
            return Ok(false);
        };
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    }

    /// Looks a user up by name.
    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query("SELECT name, password_hash, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("looking up a user"))?;
        Ok(row.map(|r| User {
            name: r.get(0),
            has_password: r.get::<Option<String>, _>(1).is_some(),
            created_at: r.get(2),
        }))
    }

    /// Registers a public key for `user`, creating the user if needed.
    /// Returns the stored key. A key can belong to one user only.
    pub async fn add_key(&self, user: &str, public_key_line: &str) -> Result<SshKey, StoreError> {
        validate_dns_label("key owner", user)?;
        let (algorithm, canonical, fingerprint) = parse_public_key(public_key_line)?;
        let mut tx = self.begin_write().await.map_err(q("adding a key"))?;
        let exists = sqlx::query("SELECT name FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("adding a key"))?;
        let now = now_ms();
        if exists.is_none() {
            sqlx::query(
                "INSERT INTO users (name, password_hash, created_at) VALUES ($1, NULL, $2)",
            )
            .bind(user)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(q("creating the key's user"))?;
        }
        sqlx::query(
            "INSERT INTO ssh_keys (fingerprint, user_name, algorithm, public_key, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&fingerprint)
        .bind(user)
        .bind(&algorithm)
        .bind(&canonical)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "key",
                    name: fingerprint.clone(),
                }
            } else {
                StoreError::Query {
                    context: "adding a key",
                    source: e,
                }
            }
        })?;
        tx.commit().await.map_err(q("adding a key"))?;
        Ok(SshKey {
            fingerprint,
            user: user.into(),
            algorithm,
            public_key: canonical,
            created_at: now,
        })
    }

    /// All keys, by user then time.
    pub async fn list_keys(&self) -> Result<Vec<SshKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, user_name, algorithm, public_key, created_at FROM ssh_keys ORDER BY user_name, created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("listing keys"))?;
        Ok(rows.iter().map(key_from_row).collect())
    }

    /// Removes keys by user name (all of that user's keys) or by fingerprint.
    /// Returns how many were removed.
    pub async fn remove_keys(&self, user_or_fingerprint: &str) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM ssh_keys WHERE user_name = $1 OR fingerprint = $1")
            .bind(user_or_fingerprint)
            .execute(&self.pool)
            .await
            .map_err(q("removing keys"))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "key",
                name: user_or_fingerprint.into(),
            });
        }
        Ok(r.rows_affected())
    }

    /// The user who owns the key with this fingerprint, if any.
    pub async fn user_for_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT user_name FROM ssh_keys WHERE fingerprint = $1")
            .bind(fingerprint)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("authenticating a key"))?;
        Ok(row.map(|r| r.get(0)))
    }
}

fn key_from_row(r: &sqlx::any::AnyRow) -> SshKey {
    SshKey {
        fingerprint: r.get(0),
        user: r.get(1),
        algorithm: r.get(2),
        public_key: r.get(3),
        created_at: r.get(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDkA31zzsJ+GveuiOShxwxvnGAMWnU9bigP+TVyTJ7c alice@laptop";

    #[test]
    fn parses_openssh_keys_and_fingerprints() {
        let (alg, canon, fp) = parse_public_key(ED).unwrap();
        assert_eq!(alg, "ssh-ed25519");
        assert!(!canon.contains("alice"));
        // Same fingerprint as `ssh-keygen -lf`.
        assert_eq!(fp, "SHA256:PRY7B6eirUeF1p7xN4CFtngUbddBXG46xMLkOAGDseM");
    }

    #[test]
    fn rejects_garbage_keys_with_a_hint() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 !!!!",
            "hello world",
            "\u{0}\u{1}",
        ] {
            let e = parse_public_key(bad).unwrap_err().to_string();
            assert!(e.contains("public key"), "{bad:?}: {e}");
        }
        let e = parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----\nabc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("PRIVATE"), "{e}");
    }
}
