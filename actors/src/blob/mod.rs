//! The content-addressed blob store: raw uploads and parsed texts, named by their SHA-256.
//!
//! Blobs up to [`PACKED_MAX_BYTES`] are appended to pack files with group commit (see [`pack`]); larger ones get a
//! file each, written atomically (a temporary file in the same directory, fsynced, then renamed over the final name
//! and the directory fsynced). Either way a crash leaves the whole blob or nothing, a blob is durable before `put`
//! returns, and writing bytes that are already stored is a no-op. Reads check the digest, so a damaged blob is
//! reported, never served.

mod pack;

pub use pack::Lane;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The SHA-256 that names `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Blobs this size or smaller go to pack files.
pub const PACKED_MAX_BYTES: usize = 1 << 20;

/// Blobs under `<data dir>/blobs`: small ones in `packs/`, large ones in `<first two hex digits>/<digest>`.
#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    packs: Arc<pack::Packs>,
    lane: Lane,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("BlobStore").field("root", &self.root).finish_non_exhaustive()
    }
}

impl BlobStore {
    /// A store rooted at `<data_dir>/blobs` (created on first write).
    pub fn new(data_dir: &Path) -> Self {
        let root = data_dir.join("blobs");
        Self { packs: Arc::new(pack::Packs::new(root.join("packs"))), root, lane: Lane::Requests }
    }

    /// The same store, packing small blobs in `lane` (a new store packs in [`Lane::Requests`]).
    pub fn in_lane(&self, lane: Lane) -> Self {
        Self { lane, ..self.clone() }
    }

    /// Where a digest's file lives.
    pub fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(BlobError::InvalidDigest(sha256.to_owned()));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// Stores `bytes` durably (blocking I/O: call it off the async runtime).
    pub fn put(&self, bytes: &[u8]) -> Result<StoredBlob, BlobError> {
        self.put_hashed(bytes, digest(bytes))
    }

    /// [`put`](Self::put) for bytes whose SHA-256 the caller has just computed (`digest(bytes)`), so that an upload
    /// is hashed once.
    pub(crate) fn put_hashed(&self, bytes: &[u8], digest: [u8; 32]) -> Result<StoredBlob, BlobError> {
        let sha256 = hex::encode(digest);
        let path = self.path(&sha256)?;
        let blob = StoredBlob { sha256, size: bytes.len() as u64 };
        if path.exists() {
            return Ok(blob);
        }
        if bytes.len() <= PACKED_MAX_BYTES {
            // A no-op when a pack already holds the bytes.
            self.packs.put(digest, bytes, self.lane)?;
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

    /// [`put_hashed`](Self::put_hashed) for async callers: a small blob waits for its pack's group commit without
    /// holding a thread (see [`pack::Packs::put_async`]); a large one is written on the blocking pool. A small blob
    /// stored as a file of its own by an old version is not looked for: the pack then holds a second copy.
    pub(crate) async fn put_hashed_async(&self, bytes: Vec<u8>, digest: [u8; 32]) -> Result<StoredBlob, BlobError> {
        if bytes.len() > PACKED_MAX_BYTES {
            let store = self.clone();
            return tokio::task::spawn_blocking(move || store.put_hashed(&bytes, digest)).await.map_err(|error| {
                BlobError::Io { path: self.root.clone(), source: std::io::Error::other(error.to_string()) }
            })?;
        }
        Arc::clone(&self.packs).put_async(digest, &bytes, self.lane).await?;
        Ok(StoredBlob { sha256: hex::encode(digest), size: bytes.len() as u64 })
    }

    /// Reads a blob and checks its digest (blocking I/O).
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(sha256)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(sha256, &mut digest).map_err(|_| BlobError::InvalidDigest(sha256.to_owned()))?;
        let bytes = match self.packs.get(&digest)? {
            Some(bytes) => bytes,
            None => match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    // Perhaps another process packed it since this store last looked.
                    self.packs.refresh()?;
                    self.packs.get(&digest)?.ok_or_else(|| BlobError::Missing(sha256.to_owned()))?
                }
                Err(source) => return Err(BlobError::Io { path, source }),
            },
        };
        let actual = hex::encode(self::digest(&bytes));
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

    fn packs(dir: &Path) -> Vec<PathBuf> {
        let mut packs: Vec<PathBuf> = std::fs::read_dir(dir.join("blobs").join("packs"))
            .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default();
        packs.sort();
        packs
    }

    #[test]
    fn put_then_get_returns_same_bytes_and_put_again_is_noop() {
        let (store, dir) = store();
        let blob = store.put(b"hello").unwrap();
        assert_eq!(blob.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(blob.size, 5);
        assert_eq!(store.get(&blob.sha256).unwrap(), b"hello");
        let size = std::fs::metadata(&packs(&dir)[0]).unwrap().len();
        assert_eq!(store.put(b"hello").unwrap(), blob);
        assert_eq!(std::fs::metadata(&packs(&dir)[0]).unwrap().len(), size, "stored bytes are not written again");
        let large = vec![7u8; PACKED_MAX_BYTES + 1];
        let large_blob = store.put(&large).unwrap();
        assert!(store.path(&large_blob.sha256).unwrap().exists(), "a large blob has a file of its own");
        assert_eq!(store.get(&large_blob.sha256).unwrap(), large);
        let leftovers: Vec<_> = std::fs::read_dir(store.path(&large_blob.sha256).unwrap().parent().unwrap())
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn each_lane_appends_to_a_pack_of_its_own_and_reads_every_pack() {
        let (store, dir) = store();
        let background = store.in_lane(Lane::Background);
        let upload = store.put(b"uploaded bytes").unwrap();
        let parsed = background.put(b"parsed text").unwrap();
        let packs_now = packs(&dir);
        assert_eq!(packs_now.len(), 2, "a pack per lane: {packs_now:?}");
        assert_eq!(background.get(&upload.sha256).unwrap(), b"uploaded bytes");
        assert_eq!(store.get(&parsed.sha256).unwrap(), b"parsed text");
        // Bytes stored by one lane are not written again by the other.
        let sizes = |packs: &[PathBuf]| packs.iter().map(|p| std::fs::metadata(p).unwrap().len()).collect::<Vec<_>>();
        let before = sizes(&packs_now);
        background.put(b"uploaded bytes").unwrap();
        store.put(b"parsed text").unwrap();
        assert_eq!(sizes(&packs(&dir)), before);
        // A new store (a restart) finds both.
        let reopened = BlobStore::new(&dir);
        assert_eq!(reopened.get(&upload.sha256).unwrap(), b"uploaded bytes");
        assert_eq!(reopened.get(&parsed.sha256).unwrap(), b"parsed text");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn get_of_damaged_or_missing_blob_returns_error() {
        let (store, dir) = store();
        let blob = store.put(b"original").unwrap();
        let pack = &packs(&dir)[0];
        let mut bytes = std::fs::read(pack).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0xff;
        std::fs::write(pack, bytes).unwrap();
        assert!(matches!(BlobStore::new(&dir).get(&blob.sha256), Err(BlobError::Damaged { .. })));
        let large = store.put(&vec![1u8; PACKED_MAX_BYTES + 10]).unwrap();
        std::fs::write(store.path(&large.sha256).unwrap(), b"tampered").unwrap();
        assert!(matches!(store.get(&large.sha256), Err(BlobError::Damaged { .. })));
        assert!(matches!(store.get(&"0".repeat(64)), Err(BlobError::Missing(_))));
        assert!(matches!(store.get("../etc/passwd"), Err(BlobError::InvalidDigest(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn another_store_on_the_same_directory_reads_what_the_first_writes() {
        let (first, dir) = store();
        let before = first.put(b"written before the second store looked").unwrap();
        let second = BlobStore::new(&dir);
        assert_eq!(second.get(&before.sha256).unwrap(), b"written before the second store looked");
        let after = first.put(b"written after").unwrap();
        assert_eq!(second.get(&after.sha256).unwrap(), b"written after", "a digest it does not know makes it rescan");
        let own = second.put(b"the second store's own").unwrap();
        assert_eq!(packs(&dir).len(), 2, "each store appends to a pack of its own");
        assert_eq!(first.get(&own.sha256).unwrap(), b"the second store's own");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_record_at_the_end_of_a_pack_loses_nothing_acknowledged() {
        let (store, dir) = store();
        let kept = store.put(b"acknowledged before the crash").unwrap();
        drop(store);
        // A crash in the middle of the next record: a header that promises more bytes than follow.
        let mut torn = b"DBLB".to_vec();
        torn.extend_from_slice(&[9u8; 32]);
        torn.extend_from_slice(&100u64.to_le_bytes());
        torn.extend_from_slice(b"only part of it");
        pack::append_raw(&packs(&dir)[0], &torn);
        let reopened = BlobStore::new(&dir);
        assert_eq!(reopened.get(&kept.sha256).unwrap(), b"acknowledged before the crash");
        assert!(matches!(reopened.get(&hex::encode([9u8; 32])), Err(BlobError::Missing(_))));
        let new = reopened.put(b"written after the restart").unwrap();
        assert_eq!(BlobStore::new(&dir).get(&new.sha256).unwrap(), b"written after the restart");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_puts_all_come_back_from_one_pack() {
        let (store, dir) = store();
        let threads: Vec<_> = (0..16)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|n| {
                            let bytes = format!("thread {thread} blob {n}").into_bytes();
                            (store.put(&bytes).unwrap(), bytes)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let written: Vec<(StoredBlob, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_eq!(packs(&dir).len(), 1);
        let reopened = BlobStore::new(&dir);
        for (blob, bytes) in &written {
            assert_eq!(&reopened.get(&blob.sha256).unwrap(), bytes);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_puts_with_blocking_puts_in_the_same_lane_are_all_durable_in_one_pack() {
        let (store, dir) = store();
        // Async writers (the uploads) and blocking writers (as the CLI's) share the lane's group commits; the same
        // bytes from several writers at once are stored once.
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut written = Vec::new();
                    for n in 0..50 {
                        let bytes = if n % 10 == 0 { format!("shared {n}") } else { format!("task {task} blob {n}") };
                        let bytes = bytes.into_bytes();
                        let blob = store.put_hashed_async(bytes.clone(), digest(&bytes)).await.unwrap();
                        written.push((blob, bytes));
                    }
                    written
                })
            })
            .collect();
        let blocking = {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| {
                        let bytes = format!("blocking blob {n}").into_bytes();
                        (store.put(&bytes).unwrap(), bytes)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut written: Vec<(StoredBlob, Vec<u8>)> = Vec::new();
        for task in tasks {
            written.extend(task.await.unwrap());
        }
        written.extend(blocking.join().unwrap());
        assert_eq!(written.len(), 16 * 50 + 50);
        assert_eq!(packs(&dir).len(), 1);
        let distinct: std::collections::HashSet<&str> = written.iter().map(|(blob, _)| blob.sha256.as_str()).collect();
        let pack_bytes = std::fs::metadata(&packs(&dir)[0]).unwrap().len() as usize;
        let expected: usize = distinct
            .iter()
            .map(|sha| written.iter().find(|(blob, _)| blob.sha256 == *sha).unwrap().1.len() + 4 + 32 + 8)
            .sum();
        assert_eq!(pack_bytes, expected, "each distinct blob stored once, nothing else");
        let reopened = BlobStore::new(&dir);
        for (blob, bytes) in &written {
            assert_eq!(&reopened.get(&blob.sha256).unwrap(), bytes);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
