//! Secrets at rest: XChaCha20-Poly1305 with a 256-bit key generated into
//! `$BYTEPORT_HOME/secrets.key` (mode 0600). The app and secret name are the
//! associated data, so a sealed value cannot be moved to another secret.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::StoreError;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Seals and opens secret values.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads the key file, creating it with a fresh random key if absent.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, StoreError> {
        let err = |message: String| StoreError::SecretsKey {
            path: path.display().to_string(),
            message,
        };
        let key = match std::fs::read(path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(path)
                    .map_err(|e| err(e.to_string()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "permissions {:o} are too open; run `chmod 600 {}`",
                        mode & 0o777,
                        path.display()
                    )));
                }
                if bytes.len() != KEY_LEN {
                    return Err(err(format!(
                        "expected {KEY_LEN} bytes, found {} (corrupt key file?)",
                        bytes.len()
                    )));
                }
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let mut key = vec![0u8; KEY_LEN];
                rand::rng().fill_bytes(&mut key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| err(e.to_string()))?;
                f.write_all(&key).map_err(|e| err(e.to_string()))?;
                f.sync_all().map_err(|e| err(e.to_string()))?;
                key
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| err(e.to_string()))?;
        Ok(SecretBox { cipher })
    }

    /// Encrypts `value`, bound to (`app`, `name`). Output: base64(nonce ‖ ciphertext).
    pub fn seal(&self, app: &str, name: &str, value: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = format!("{app}\0{name}");
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// Decrypts a value sealed for (`app`, `name`).
    pub fn open(&self, app: &str, name: &str, sealed: &str) -> Result<String, StoreError> {
        let unseal = || StoreError::Unseal {
            app: app.to_string(),
            name: name.to_string(),
        };
        let raw = B64.decode(sealed).map_err(|_| unseal())?;
        if raw.len() < NONCE_LEN {
            return Err(unseal());
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = format!("{app}\0{name}");
        let pt = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| unseal())?;
        String::from_utf8(pt).map_err(|_| unseal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let b = SecretBox::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = b.seal("app", "DATABASE_URL", "postgres://x");
        assert!(!sealed.contains("postgres"));
        assert_eq!(
            b.open("app", "DATABASE_URL", &sealed).unwrap(),
            "postgres://x"
        );
        // Bound to its place: moving it to another secret fails.
        assert!(b.open("app", "OTHER", &sealed).is_err());
        assert!(b.open("other", "DATABASE_URL", &sealed).is_err());
        // Tampering and garbage fail cleanly.
        assert!(b.open("app", "DATABASE_URL", "!!!").is_err());
        assert!(b.open("app", "DATABASE_URL", "AAAA").is_err());
        // The same key file reloads to the same key.
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(
            again.open("app", "DATABASE_URL", &sealed).unwrap(),
            "postgres://x"
        );
    }

    #[test]
    fn bad_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        std::fs::write(&path, b"short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = SecretBox::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("expected 32 bytes"), "{e}");
        std::fs::write(&path, [7u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretBox::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("too open"), "{e}");
    }
}
