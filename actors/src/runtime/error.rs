//! What a document command can fail with.

use dossier_events::StoreError;
use dossier_events::document::DocumentError;

/// Why a command was not carried out. Nothing was appended in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command (an invariant: wrong state, invalid input).
    #[error(transparent)]
    Rejected(#[from] DocumentError),
    /// The caller's expected version (If-Match) is not the document's version.
    #[error("document version is {actual}, not the expected {expected}")]
    VersionMismatch {
        /// What the caller expected.
        expected: u64,
        /// The document's version.
        actual: u64,
    },
    /// Concurrent writers kept changing the stream; gave up after a few reloads.
    #[error("document {0} kept changing under concurrent writers; try again")]
    Contended(uuid::Uuid),
    /// The upload is refused before anything is written (size limit, empty file).
    #[error("{0}")]
    InvalidUpload(String),
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A runtime component is not answering (stopped, crashed, timed out).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
}
