//! Content-addressed image files: `<dir>/<sha256>.webp`, written once,
//! atomically (temp file + rename), never modified.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// SHA-256 of the file's bytes, lowercase hex; the file is
    /// `<images dir>/<sha256>.webp`.
    pub sha256: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// File size in bytes.
    pub bytes: u64,
}

impl ImageRef {
    /// The file name inside the images directory.
    pub fn file_name(&self) -> String {
        format!("{}.webp", self.sha256)
    }
}

/// Where the caller keeps screenshots.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Uses (and creates when missing) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(ImageStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a stored image.
    pub fn path_of(&self, image: &ImageRef) -> PathBuf {
        self.dir.join(image.file_name())
    }

    /// Stores WebP bytes; a second store of the same bytes is a no-op.
    pub fn put_webp(&self, bytes: &[u8], width: u32, height: u32) -> std::io::Result<ImageRef> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let image = ImageRef {
            sha256,
            width,
            height,
            bytes: bytes.len() as u64,
        };
        let path = self.path_of(&image);
        if path.is_file() {
            return Ok(image);
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(image)
    }

    /// Reads a stored image back, checking its hash (a file edited on disk
    /// is not served as if it were the captured one).
    pub fn read(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an image id",
            ));
        }
        let bytes = std::fs::read(self.dir.join(format!("{sha256}.webp")))?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("image {sha256} does not match its content hash"),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_file_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path()).unwrap();
        let a = store.put_webp(b"RIFFxxxxWEBP", 1, 1).unwrap();
        let b = store.put_webp(b"RIFFxxxxWEBP", 1, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(store.read(&a.sha256).unwrap(), b"RIFFxxxxWEBP");
        std::fs::write(store.path_of(&a), b"other").unwrap();
        assert!(store.read(&a.sha256).is_err());
        assert!(store.read("../etc/passwd").is_err());
    }
}
