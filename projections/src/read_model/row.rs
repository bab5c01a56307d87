//! The read model's rows and the pure fold that turns a document's events into them.
//!
//! A projection batch loads the rows of the documents its events touch, folds the events into them in memory
//! ([`apply`]), and writes the result back with its checkpoint in one transaction, so each event takes effect exactly
//! once however often delivery is repeated.

use dossier_events::RecordedEvent;
use dossier_events::document::{DocumentEvent, DocumentStatus, Metadata};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// One document as the read model serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentRow {
    /// The document.
    pub document_id: Uuid,
    /// Its tenant.
    pub tenant_id: String,
    /// The uploaded file's name.
    pub filename: String,
    /// The recorded media type.
    pub media_type: String,
    /// The uploaded size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the uploaded bytes.
    pub sha256: String,
    /// `uploaded`, `parsed`, `chunked`, `embedded`, `ready`, `failed` or `deleted`.
    pub status: String,
    /// The stream version this row reflects.
    pub stream_version: u64,
    /// Chunks of the current processing run.
    pub chunk_count: u32,
    /// User metadata.
    pub metadata: Metadata,
    /// Why processing failed, if it did.
    pub failure_reason: Option<String>,
    /// When it was uploaded.
    pub created_at: OffsetDateTime,
    /// When its last event was recorded.
    pub updated_at: OffsetDateTime,
    /// Whether it was deleted (kept for audit, hidden from reads).
    pub deleted: bool,
}

/// One chunk of a document's current run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRow {
    /// The document.
    pub document_id: Uuid,
    /// Its index among the document's chunks.
    pub chunk_index: u32,
    /// The text.
    pub text: String,
    /// Where it starts in the parsed text.
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
}

/// What one document's events in a batch did to its rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DocumentChange {
    /// The document's row after the batch.
    pub row: Option<DocumentRow>,
    /// Whether its stored chunks must be removed before `chunks` are written.
    pub reset_chunks: bool,
    /// Chunks to write.
    pub chunks: Vec<ChunkRow>,
}

/// Why an event cannot be applied: the projection stops at it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event is not a document event dossier knows.
    #[error("position {position}: {reason}")]
    Undecodable {
        /// Its position.
        position: u64,
        /// Why.
        reason: String,
    },
    /// The event is for a document the read model has no row for.
    #[error("position {position}: {event_type} for document {document_id}, which was never uploaded")]
    MissingDocument {
        /// Its position.
        position: u64,
        /// Its type.
        event_type: String,
        /// The document.
        document_id: Uuid,
    },
    /// The event's vectors do not fit the vector index's collection (a vector of another length for the same model,
    /// or a vector count that is not the chunk count): rejected rather than truncated.
    #[error("position {position}: document {document_id}: {reason}")]
    BadVectors {
        /// Its position.
        position: u64,
        /// The document.
        document_id: Uuid,
        /// What does not fit.
        reason: String,
    },
}

impl ApplyError {
    /// The position of the event that could not be applied.
    pub fn position(&self) -> u64 {
        match self {
            Self::Undecodable { position, .. }
            | Self::MissingDocument { position, .. }
            | Self::BadVectors { position, .. } => *position,
        }
    }
}

/// Folds one recorded event of document `document_id` into its change.
pub fn apply(change: &mut DocumentChange, document_id: Uuid, recorded: &RecordedEvent) -> Result<(), ApplyError> {
    let event = DocumentEvent::from_recorded(recorded)
        .map_err(|error| ApplyError::Undecodable { position: recorded.position, reason: error.to_string() })?;
    if let DocumentEvent::DocumentUploaded(uploaded) = &event {
        change.row = Some(DocumentRow {
            document_id,
            tenant_id: recorded.metadata.tenant_id.clone(),
            filename: uploaded.filename.clone(),
            media_type: uploaded.media_type.clone(),
            size_bytes: uploaded.blob.size,
            sha256: uploaded.blob.sha256.clone(),
            status: DocumentStatus::Uploaded.as_str().to_owned(),
            stream_version: recorded.version,
            chunk_count: 0,
            metadata: uploaded.metadata.clone(),
            failure_reason: None,
            created_at: recorded.recorded_at,
            updated_at: recorded.recorded_at,
            deleted: false,
        });
        return Ok(());
    }
    let Some(row) = change.row.as_mut() else {
        return Err(ApplyError::MissingDocument {
            position: recorded.position,
            event_type: recorded.event_type.clone(),
            document_id,
        });
    };
    row.stream_version = recorded.version;
    row.updated_at = recorded.recorded_at;
    let status = |row: &mut DocumentRow, status: DocumentStatus| row.status = status.as_str().to_owned();
    match event {
        DocumentEvent::DocumentUploaded(_) => {}
        DocumentEvent::DocumentParsed(_) => status(row, DocumentStatus::Parsed),
        DocumentEvent::DocumentChunked(chunked) => {
            status(row, DocumentStatus::Chunked);
            row.chunk_count = chunked.chunks.len() as u32;
            change.reset_chunks = true;
            change.chunks = chunked
                .chunks
                .into_iter()
                .map(|chunk| ChunkRow {
                    document_id,
                    chunk_index: chunk.index,
                    text: chunk.text,
                    byte_start: chunk.byte_start,
                    byte_end: chunk.byte_end,
                })
                .collect();
        }
        DocumentEvent::ChunksEmbedded(_) => status(row, DocumentStatus::Embedded),
        DocumentEvent::DocumentReady(_) => status(row, DocumentStatus::Ready),
        DocumentEvent::StageAttemptFailed(_) => {}
        DocumentEvent::DocumentFailed(failed) => {
            status(row, DocumentStatus::Failed);
            row.failure_reason = Some(failed.reason);
        }
        DocumentEvent::ReprocessRequested(_) => {
            status(row, DocumentStatus::Uploaded);
            row.failure_reason = None;
            row.chunk_count = 0;
            change.reset_chunks = true;
            change.chunks.clear();
        }
        DocumentEvent::MetadataUpdated(updated) => {
            for key in &updated.unset {
                row.metadata.remove(key);
            }
            row.metadata.extend(updated.set);
        }
        DocumentEvent::DocumentDeleted(_) => {
            status(row, DocumentStatus::Deleted);
            row.deleted = true;
            row.chunk_count = 0;
            change.reset_chunks = true;
            change.chunks.clear();
        }
    }
    Ok(())
}
