//! Folding events into state: evolve and replay.

use serde_json::json;

use crate::document::tests::fixtures::{
    BLOB_SHA256, TEXT_LENGTH, attempt_failed, blob, chunked, deleted, document_id, embedded, failed, history,
    metadata_updated, parsed, reprocess_requested, retry_time, sample_document, uploaded,
};
use crate::document::{DocumentState, DocumentStatus, EmbeddingInfo, Failure, Metadata, Stage, decide, evolve, replay};

#[test]
fn replay_of_no_events_returns_no_document() {
    let state = replay(&[]);
    assert_eq!(state, DocumentState::default());
    assert!(!state.exists());
    assert_eq!(state.status, None);
    assert_eq!(state.version, 0);
    assert_eq!(state.generation, 0);
}

#[test]
fn replay_of_full_lifecycle_returns_ready_with_counts() {
    let events = sample_document();
    let state = replay(&events);
    assert_eq!(state.status, Some(DocumentStatus::Ready));
    assert_eq!(state.document_id, Some(document_id()));
    assert_eq!(state.filename.as_deref(), Some("report.pdf"));
    assert_eq!(state.media_type.as_deref(), Some("application/pdf"));
    assert_eq!(state.blob, Some(blob()));
    assert_eq!(state.blob.as_ref().map(|blob| blob.sha256.as_str()), Some(BLOB_SHA256));
    assert_eq!(
        state.metadata,
        Metadata::from_iter([("project".to_owned(), json!("apollo")), ("owner".to_owned(), json!("ana"))])
    );
    assert_eq!(state.parse.as_ref().map(|parse| parse.text_length), Some(TEXT_LENGTH));
    assert_eq!(state.chunk_count, 2);
    assert_eq!(state.embedding, Some(EmbeddingInfo { model: "all-MiniLM-L6-v2".to_owned(), dimensions: 3 }));
    assert_eq!(state.failed_attempts, 0);
    assert_eq!(state.retry_at, None);
    assert_eq!(state.failure, None);
    assert_eq!(state.version, events.len() as u64);
    assert_eq!(state.generation, 1);
    assert_eq!(state.pending_stage(), None);
}

#[test]
fn replay_of_prefix_returns_document_at_that_version() {
    let events = sample_document();
    let at_version_3 = replay(&events[..3]);
    assert_eq!(at_version_3.version, 3);
    assert_eq!(at_version_3.status, Some(DocumentStatus::Parsed));
    assert_eq!(at_version_3.pending_stage(), Some(Stage::Chunk));
    assert_eq!(at_version_3.chunk_count, 0);
    // Folding one event at a time gives the same states as replaying each prefix.
    let mut state = DocumentState::default();
    for (version, event) in events.iter().enumerate() {
        state = evolve(state, event);
        assert_eq!(state, replay(&events[..=version]));
    }
}

#[test]
fn evolve_stage_attempt_failed_counts_attempts_until_stage_succeeds() {
    let state = replay(&[uploaded(), attempt_failed(Stage::Parse, 1), attempt_failed(Stage::Parse, 2)]);
    assert_eq!(state.status, Some(DocumentStatus::Uploaded));
    assert_eq!(state.failed_attempts, 2);
    assert_eq!(state.retry_at, Some(retry_time()));
    let state = evolve(state, &parsed());
    assert_eq!(state.failed_attempts, 0);
    assert_eq!(state.retry_at, None);
}

#[test]
fn evolve_document_failed_records_failure() {
    let state = replay(&history(DocumentStatus::Failed));
    assert_eq!(state.status, Some(DocumentStatus::Failed));
    assert_eq!(
        state.failure,
        Some(Failure { stage: Stage::Parse, reason: "timed out 3 times".to_owned(), attempts: 3 })
    );
    assert_eq!(state.retry_at, None);
    assert!(!state.status.is_some_and(DocumentStatus::is_processing));
}

#[test]
fn evolve_reprocess_requested_resets_processing_and_bumps_generation() {
    let mut events = history(DocumentStatus::Ready);
    events.push(reprocess_requested());
    let state = replay(&events);
    assert_eq!(state.status, Some(DocumentStatus::Uploaded));
    assert_eq!(state.parse, None);
    assert_eq!(state.chunk_count, 0);
    assert_eq!(state.embedding, None);
    assert_eq!(state.generation, 2);
    assert_eq!(state.blob, Some(blob()), "the upload itself is kept");

    let events = [uploaded(), parsed(), attempt_failed(Stage::Chunk, 1), failed(Stage::Chunk), reprocess_requested()];
    let state = replay(&events);
    assert_eq!(state.failure, None);
    assert_eq!(state.failed_attempts, 0);
    assert_eq!(state.parse, None);
    assert_eq!(state.generation, 2);
    assert_eq!(state.pending_stage(), Some(Stage::Parse));
}

#[test]
fn evolve_metadata_updated_unsets_then_sets() {
    let state = replay(&[uploaded(), metadata_updated()]);
    assert_eq!(state.metadata.get("pages"), None);
    assert_eq!(state.metadata.get("owner"), Some(&json!("ana")));
    assert_eq!(state.metadata.get("project"), Some(&json!("apollo")));
    assert_eq!(state.status, Some(DocumentStatus::Uploaded));
}

#[test]
fn evolve_document_deleted_keeps_what_the_document_was() {
    let mut events = history(DocumentStatus::Ready);
    events.push(deleted());
    let state = replay(&events);
    assert!(state.is_deleted());
    assert_eq!(state.chunk_count, 2);
    assert_eq!(state.filename.as_deref(), Some("report.pdf"));
}

#[test]
fn decide_then_evolve_drives_a_document_to_ready() {
    use crate::document::tests::fixtures::{record_chunks, record_embeddings, record_parse, upload};
    let mut state = DocumentState::default();
    let mut log = Vec::new();
    for command in
        [upload(), record_parse(), record_chunks(), record_embeddings(), crate::document::DocumentCommand::MarkReady]
    {
        for event in decide(&state, command).unwrap() {
            state = evolve(state, &event);
            log.push(event);
        }
    }
    assert_eq!(state.status, Some(DocumentStatus::Ready));
    assert_eq!(log, vec![uploaded(), parsed(), chunked(), embedded(), crate::document::tests::fixtures::ready()]);
    assert_eq!(state, replay(&log));
}
