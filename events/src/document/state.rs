//! What a document looks like after some prefix of its stream: the fold of its events
//! ([`evolve`](crate::document::evolve)), and all that [`decide`](crate::document::decide) needs to check a command.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::document::events::{BlobRef, DocumentParsed, Metadata, Stage};

/// Where a document is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Stored, waiting to be parsed.
    Uploaded,
    /// Text extracted, waiting to be chunked.
    Parsed,
    /// Chunked, waiting to be embedded (or marked ready when there is no embedder).
    Chunked,
    /// Embedded, waiting to be marked ready.
    Embedded,
    /// Searchable.
    Ready,
    /// Processing gave up; it can be reprocessed.
    Failed,
    /// Deleted; the stream only serves reads.
    Deleted,
}

impl DocumentStatus {
    /// The status's name as serialised: `uploaded`, `parsed`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Parsed => "parsed",
            Self::Chunked => "chunked",
            Self::Embedded => "embedded",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    /// Whether the pipeline still has work to do on the document (it is neither ready, failed nor deleted).
    pub fn is_processing(self) -> bool {
        matches!(self, Self::Uploaded | Self::Parsed | Self::Chunked | Self::Embedded)
    }

    /// The stage a document in this status is waiting for; `None` when no stage is pending (an embedded document
    /// only needs to be marked ready).
    pub fn pending_stage(self) -> Option<Stage> {
        match self {
            Self::Uploaded => Some(Stage::Parse),
            Self::Parsed => Some(Stage::Chunk),
            Self::Chunked => Some(Stage::Embed),
            Self::Embedded | Self::Ready | Self::Failed | Self::Deleted => None,
        }
    }
}

impl fmt::Display for DocumentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which model embedded the current chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// The embedding model's name.
    pub model: String,
    /// Length of every vector.
    pub dimensions: u32,
}

/// Why processing last gave up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The stage that failed.
    pub stage: Stage,
    /// Why.
    pub reason: String,
    /// How many attempts the stage had.
    pub attempts: u32,
}

/// A document as of some version of its stream. The default is the empty stream: no document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentState {
    /// Where the document is in its lifecycle; `None` before it is uploaded.
    pub status: Option<DocumentStatus>,
    /// The document's id.
    pub document_id: Option<Uuid>,
    /// The file's name as uploaded.
    pub filename: Option<String>,
    /// The file's media type.
    pub media_type: Option<String>,
    /// Where the file's bytes are.
    pub blob: Option<BlobRef>,
    /// User-supplied metadata, with every update applied.
    pub metadata: Metadata,
    /// The current generation's parse result.
    pub parse: Option<DocumentParsed>,
    /// Number of chunks of the current generation (0 before chunking).
    pub chunk_count: usize,
    /// The current generation's embeddings.
    pub embedding: Option<EmbeddingInfo>,
    /// Failed attempts at the stage the document is in; reset whenever a stage succeeds.
    pub failed_attempts: u32,
    /// When the next attempt at the current stage is due, as the last failed attempt said.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
    /// Why processing gave up, while the document is failed (kept after deletion).
    pub failure: Option<Failure>,
    /// Number of events applied: the stream version this state reflects.
    pub version: u64,
    /// How many times processing started: 1 after the upload, plus 1 per reprocessing.
    pub generation: u32,
}

impl DocumentState {
    /// Whether the stream holds a document (including a deleted one).
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// Whether the document was deleted.
    pub fn is_deleted(&self) -> bool {
        self.status == Some(DocumentStatus::Deleted)
    }

    /// The pipeline stage the document is waiting for, if any.
    pub fn pending_stage(&self) -> Option<Stage> {
        self.status.and_then(DocumentStatus::pending_stage)
    }
}
