//! The commands a document accepts: requests that [`decide`](crate::document::decide) turns into events or refuses.
//!
//! Commands come from users (upload, metadata, reprocess, delete) and from the ingestion pipeline (stage results and
//! failures). Anything time-like or random is a field here, decided by the caller, so that `decide` stays pure.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::document::events::{BlobRef, Chunk, ChunkerSettings, Metadata, Stage};

/// A request to change a document.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentCommand {
    /// Start a document from a file already stored in the blob store.
    Upload {
        /// The new document's id (its stream is `document-<id>`).
        document_id: Uuid,
        /// The file's name, without any directory.
        filename: String,
        /// The file's media type, e.g. `application/pdf`.
        media_type: String,
        /// Where the file's bytes are.
        blob: BlobRef,
        /// User-supplied metadata.
        metadata: Metadata,
    },
    /// Record the parse stage's result.
    RecordParse {
        /// SHA-256 of the extracted text, stored in the blob store.
        text_sha256: String,
        /// Length of the text in bytes.
        text_length: u64,
        /// The title the parser found, if any.
        title: Option<String>,
        /// Number of pages, for paged formats.
        page_count: Option<u32>,
        /// Which parser ran.
        parser: String,
    },
    /// Record the chunk stage's result.
    RecordChunks {
        /// How the chunks were cut.
        chunker: ChunkerSettings,
        /// The chunks, indexed 0..n in order.
        chunks: Vec<Chunk>,
    },
    /// Record the embed stage's result.
    RecordEmbeddings {
        /// The embedding model's name.
        model: String,
        /// Length of every vector.
        dimensions: u32,
        /// One vector per chunk, in chunk order.
        vectors: Vec<Vec<f32>>,
    },
    /// Make the document searchable (after embedding, or straight after chunking when there is no embedder).
    MarkReady,
    /// Record one failed attempt at the current stage.
    RecordStageFailure {
        /// The stage that failed.
        stage: Stage,
        /// Which attempt failed, from 1.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// When the next attempt is due; `None` when none will follow.
        retry_at: Option<OffsetDateTime>,
    },
    /// Give up processing the document.
    Fail {
        /// The stage that failed.
        stage: Stage,
        /// Why processing gives up.
        reason: String,
        /// How many attempts the stage had.
        attempts: u32,
    },
    /// Process a ready or failed document again from its upload.
    RequestReprocess {
        /// Why, for the audit trail.
        reason: Option<String>,
    },
    /// Change the document's metadata.
    UpdateMetadata {
        /// Keys to set.
        set: Metadata,
        /// Keys to remove.
        unset: Vec<String>,
    },
    /// Delete the document (its stream stays, for the audit trail).
    Delete {
        /// Why, for the audit trail.
        reason: Option<String>,
    },
}

impl DocumentCommand {
    /// A short, stable name for the command (for logs and metrics), e.g. `record_parse`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Upload { .. } => "upload",
            Self::RecordParse { .. } => "record_parse",
            Self::RecordChunks { .. } => "record_chunks",
            Self::RecordEmbeddings { .. } => "record_embeddings",
            Self::MarkReady => "mark_ready",
            Self::RecordStageFailure { .. } => "record_stage_failure",
            Self::Fail { .. } => "fail",
            Self::RequestReprocess { .. } => "request_reprocess",
            Self::UpdateMetadata { .. } => "update_metadata",
            Self::Delete { .. } => "delete",
        }
    }
}
