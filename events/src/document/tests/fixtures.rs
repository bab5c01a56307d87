//! Shared fixtures: a sample document's commands and events, and histories that lead to each status.

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::document::{
    BlobRef, Chunk, ChunkerSettings, ChunksEmbedded, DocumentChunked, DocumentCommand, DocumentDeleted, DocumentEvent,
    DocumentFailed, DocumentParsed, DocumentReady, DocumentStatus, DocumentUploaded, Metadata, MetadataUpdated,
    ReprocessRequested, Stage, StageAttemptFailed, encode_vector,
};

/// SHA-256 of the sample file.
pub(super) const BLOB_SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// SHA-256 of the sample file's parsed text.
pub(super) const TEXT_SHA256: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// Length of the sample's parsed text, in bytes.
pub(super) const TEXT_LENGTH: u64 = 120;

/// The sample document's id.
pub(super) fn document_id() -> Uuid {
    Uuid::from_u128(0x0190_c3c4_5a6b_7c8d_9e0f_1a2b_3c4d_5e6f)
}

/// A time for retries.
pub(super) fn retry_time() -> OffsetDateTime {
    datetime!(2025-03-01 12:00:30 UTC)
}

pub(super) fn metadata() -> Metadata {
    Metadata::from_iter([("project".to_owned(), json!("apollo")), ("pages".to_owned(), json!(3))])
}

pub(super) fn blob() -> BlobRef {
    BlobRef { sha256: BLOB_SHA256.to_owned(), size: 2048 }
}

pub(super) fn upload() -> DocumentCommand {
    DocumentCommand::Upload {
        document_id: document_id(),
        filename: "report.pdf".to_owned(),
        media_type: "application/pdf".to_owned(),
        blob: blob(),
        metadata: metadata(),
    }
}

pub(super) fn uploaded() -> DocumentEvent {
    DocumentUploaded {
        document_id: document_id(),
        filename: "report.pdf".to_owned(),
        media_type: "application/pdf".to_owned(),
        blob: blob(),
        metadata: metadata(),
    }
    .into()
}

pub(super) fn record_parse() -> DocumentCommand {
    DocumentCommand::RecordParse {
        text_sha256: TEXT_SHA256.to_owned(),
        text_length: TEXT_LENGTH,
        title: Some("Quarterly report".to_owned()),
        page_count: Some(3),
        parser: "pdf-extract 0.9".to_owned(),
    }
}

pub(super) fn parsed() -> DocumentEvent {
    DocumentParsed {
        text_sha256: TEXT_SHA256.to_owned(),
        text_length: TEXT_LENGTH,
        title: Some("Quarterly report".to_owned()),
        page_count: Some(3),
        parser: "pdf-extract 0.9".to_owned(),
    }
    .into()
}

pub(super) fn chunker() -> ChunkerSettings {
    ChunkerSettings { max_chars: 80, overlap: 20 }
}

pub(super) fn chunk(index: u32, byte_start: u64, byte_end: u64) -> Chunk {
    Chunk { index, text: format!("chunk {index}"), byte_start, byte_end }
}

pub(super) fn chunks() -> Vec<Chunk> {
    vec![chunk(0, 0, 80), chunk(1, 60, TEXT_LENGTH)]
}

pub(super) fn record_chunks() -> DocumentCommand {
    DocumentCommand::RecordChunks { chunker: chunker(), chunks: chunks() }
}

pub(super) fn chunked() -> DocumentEvent {
    DocumentChunked { chunker: chunker(), chunks: chunks() }.into()
}

pub(super) fn vectors() -> Vec<Vec<f32>> {
    vec![vec![0.25, -1.0, 0.5], vec![1.5, 0.0, -0.125]]
}

pub(super) fn record_embeddings() -> DocumentCommand {
    DocumentCommand::RecordEmbeddings { model: "all-MiniLM-L6-v2".to_owned(), dimensions: 3, vectors: vectors() }
}

pub(super) fn embedded() -> DocumentEvent {
    ChunksEmbedded {
        model: "all-MiniLM-L6-v2".to_owned(),
        dimensions: 3,
        vectors: vectors().iter().map(|vector| encode_vector(vector)).collect(),
    }
    .into()
}

pub(super) fn ready() -> DocumentEvent {
    DocumentReady {}.into()
}

pub(super) fn attempt_failed(stage: Stage, attempt: u32) -> DocumentEvent {
    StageAttemptFailed { stage, attempt, error: "timed out".to_owned(), retry_at: Some(retry_time()) }.into()
}

pub(super) fn failed(stage: Stage) -> DocumentEvent {
    DocumentFailed { stage, reason: "timed out 3 times".to_owned(), attempts: 3 }.into()
}

pub(super) fn reprocess_requested() -> DocumentEvent {
    ReprocessRequested { reason: Some("new parser".to_owned()) }.into()
}

pub(super) fn metadata_updated() -> DocumentEvent {
    MetadataUpdated { set: Metadata::from_iter([("owner".to_owned(), json!("ana"))]), unset: vec!["pages".to_owned()] }
        .into()
}

pub(super) fn deleted() -> DocumentEvent {
    DocumentDeleted { reason: Some("duplicate".to_owned()) }.into()
}

/// Events that leave the sample document in `status`.
pub(super) fn history(status: DocumentStatus) -> Vec<DocumentEvent> {
    match status {
        DocumentStatus::Uploaded => vec![uploaded()],
        DocumentStatus::Parsed => vec![uploaded(), parsed()],
        DocumentStatus::Chunked => vec![uploaded(), parsed(), chunked()],
        DocumentStatus::Embedded => vec![uploaded(), parsed(), chunked(), embedded()],
        DocumentStatus::Ready => vec![uploaded(), parsed(), chunked(), embedded(), ready()],
        DocumentStatus::Failed => vec![uploaded(), attempt_failed(Stage::Parse, 1), failed(Stage::Parse)],
        DocumentStatus::Deleted => vec![uploaded(), deleted()],
    }
}

/// The sample document's whole lifecycle: uploaded, a metadata change, parsed, one failed chunking attempt, chunked,
/// embedded, ready.
pub(super) fn sample_document() -> Vec<DocumentEvent> {
    vec![uploaded(), metadata_updated(), parsed(), attempt_failed(Stage::Chunk, 1), chunked(), embedded(), ready()]
}

/// One event of every type.
pub(super) fn every_event() -> Vec<DocumentEvent> {
    vec![
        uploaded(),
        parsed(),
        chunked(),
        embedded(),
        ready(),
        attempt_failed(Stage::Embed, 2),
        failed(Stage::Chunk),
        reprocess_requested(),
        metadata_updated(),
        deleted(),
    ]
}

/// One well-formed command of every kind (not all valid in the same state).
pub(super) fn every_command() -> Vec<DocumentCommand> {
    vec![
        upload(),
        record_parse(),
        record_chunks(),
        record_embeddings(),
        DocumentCommand::MarkReady,
        DocumentCommand::RecordStageFailure {
            stage: Stage::Parse,
            attempt: 1,
            error: "timed out".to_owned(),
            retry_at: None,
        },
        DocumentCommand::Fail { stage: Stage::Parse, reason: "unreadable".to_owned(), attempts: 1 },
        DocumentCommand::RequestReprocess { reason: None },
        DocumentCommand::UpdateMetadata { set: metadata(), unset: Vec::new() },
        DocumentCommand::Delete { reason: None },
    ]
}

/// Every status a document can have.
pub(super) const STATUSES: [DocumentStatus; 7] = [
    DocumentStatus::Uploaded,
    DocumentStatus::Parsed,
    DocumentStatus::Chunked,
    DocumentStatus::Embedded,
    DocumentStatus::Ready,
    DocumentStatus::Failed,
    DocumentStatus::Deleted,
];

/// A new event as the store would record it at `version` and `position` of the sample document's stream.
pub(crate) fn recorded(event: crate::NewEvent, version: u64, position: u64) -> crate::RecordedEvent {
    crate::RecordedEvent {
        event_id: event.event_id,
        stream_id: crate::StreamId::for_document(document_id()),
        version,
        position,
        event_type: event.event_type,
        schema_version: event.schema_version,
        data: crate::EventData::from_value(&event.data),
        metadata: std::sync::Arc::new(crate::EventMetadata::new("tenant-a", "user:ana")),
        recorded_at: datetime!(2025-03-01 12:00 UTC),
        prev_hash: crate::Hash::ZERO,
        hash: crate::Hash::ZERO,
    }
}
