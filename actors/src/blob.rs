//! The content-addressed blob store: raw uploads and parsed texts, each in a file named by its SHA-256.
//!
//! Writes are atomic (a temporary file in the same directory, fsynced, then renamed over the final name and the
//! directory fsynced), so a crash leaves either the whole blob or nothing; writing bytes that are already stored
//! is a no-op. Reads check the digest, so a damaged file is reported, never served.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A stored blob: its digest and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why a blob could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file system call failed.
    #[error("blob store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No blob has this digest.
    #[error("blob {0} is not in the store")]
    Missing(String),
    /// The file's content no longer matches its name.
    #[error("blob {sha256} is damaged: its content hashes to {actual}")]
    Damaged {
        /// The digest it is stored under.
        sha256: String,
        /// What its content hashes to now.
        actual: String,
    },
    /// The digest is not 64 hex digits.
    #[error("invalid blob digest {0:?}")]
    InvalidDigest(String),
}

/// Blobs under `<data dir>/blobs/<first two hex digits>/<digest>`.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A store rooted at `<data_dir>/blobs` (created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self { root: data_dir.join("blobs") }
    }

    /// Where a digest's file lives.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(BlobError::InvalidDigest(sha256.to_owned()));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// Stores `bytes` (blocking I/O: call it off the async runtime).
    pub fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha256)?;
        let blob = StoredBlob { sha256, size: bytes.len() as u64 };
        if path.exists() {
            return Ok(blob);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let temp = dir.join(format!(".{}.{}.tmp", blob.sha256, uuid::Uuid::now_v7().simple()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(BlobError::Io { path: temp, source });
        }
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
        Ok(blob)
    }

    /// Reads a blob and checks its digest (blocking I/O).
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(sha256)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(sha256.to_owned()));
            }
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(BlobError::Damaged { sha256: sha256.to_owned(), actual });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (BlobStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("dossier-blobs-{}", uuid::Uuid::now_v7()));
        (BlobStore::new(&dir), dir)
    }

    #[test]
    fn put_then_get_returns_same_bytes_and_put_again_is_noop() {
        let (store, dir) = store();
        let blob = store.put(b"hello").unwrap();
        assert_eq!(blob.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(blob.size, 5);
        assert_eq!(store.get(&blob.sha256).unwrap(), b"hello");
        assert_eq!(store.put(b"hello").unwrap(), blob);
        let leftovers: Vec<_> = std::fs::read_dir(store.path(&blob.sha256).unwrap().parent().unwrap())
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn get_of_damaged_or_missing_blob_returns_error() {
        let (store, dir) = store();
        let blob = store.put(b"original").unwrap();
        std::fs::write(store.path(&blob.sha256).unwrap(), b"tampered").unwrap();
        assert!(matches!(store.get(&blob.sha256), Err(BlobError::Damaged { .. })));
        assert!(matches!(store.get(&"0".repeat(64)), Err(BlobError::Missing(_))));
        assert!(matches!(store.get("../etc/passwd"), Err(BlobError::InvalidDigest(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
