//! The document aggregate's behaviour: [`decide`] checks a command against the current state and returns the events
//! it causes; [`evolve`] applies one event to a state; [`replay`] folds a stream into its state.
//!
//! All three are pure: no I/O, no clock, no randomness, so replaying a stream to any version always gives the same
//! state, and the invariants can be tested without a store.

use crate::document::command::DocumentCommand;
use crate::document::error::DocumentError;
use crate::document::events::{
    BlobRef, Chunk, ChunkerSettings, ChunksEmbedded, DocumentChunked, DocumentDeleted, DocumentEvent, DocumentFailed,
    DocumentParsed, DocumentReady, DocumentUploaded, Metadata, MetadataUpdated, ReprocessRequested, Stage,
    StageAttemptFailed,
};
use crate::document::state::{DocumentState, DocumentStatus, EmbeddingInfo, Failure};
use crate::document::validate;
use crate::document::vectors::encode_vector;

/// Checks `command` against `state` and returns the events it causes (none when it would change nothing).
pub fn decide(state: &DocumentState, command: DocumentCommand) -> Result<Vec<DocumentEvent>, DocumentError> {
    let status = match state.status {
        Some(DocumentStatus::Deleted) => return Err(DocumentError::Deleted),
        Some(status) => status,
        None => {
            return match command {
                DocumentCommand::Upload { document_id, filename, media_type, blob, metadata } => {
                    upload(document_id, filename, media_type, blob, metadata)
                }
                _ => Err(DocumentError::NotFound),
            };
        }
    };
    let event: DocumentEvent = match command {
        DocumentCommand::Upload { document_id, .. } => return Err(DocumentError::AlreadyExists { document_id }),
        DocumentCommand::RecordParse { text_sha256, text_length, title, page_count, parser } => {
            if status != DocumentStatus::Uploaded {
                return Err(DocumentError::ParseNotExpected { status });
            }
            let text_sha256 = validate::sha256("text_sha256", &text_sha256)?;
            validate::non_empty("parser", &parser)?;
            DocumentParsed { text_sha256, text_length, title, page_count, parser }.into()
        }
        DocumentCommand::RecordChunks { chunker, chunks } => record_chunks(state, status, chunker, chunks)?.into(),
        DocumentCommand::RecordEmbeddings { model, dimensions, vectors } => {
            record_embeddings(state, status, model, dimensions, &vectors)?.into()
        }
        DocumentCommand::MarkReady => {
            if !matches!(status, DocumentStatus::Chunked | DocumentStatus::Embedded) {
                return Err(DocumentError::NotReadyToComplete { status });
            }
            DocumentReady {}.into()
        }
        DocumentCommand::RecordStageFailure { stage, attempt, error, retry_at } => {
            check_stage(status, stage)?;
            let expected = state.failed_attempts.saturating_add(1);
            if attempt != expected {
                return Err(DocumentError::AttemptOutOfSequence { stage, attempt, expected });
            }
            validate::non_empty("error", &error)?;
            validate::retry_at(retry_at)?;
            StageAttemptFailed { stage, attempt, error, retry_at }.into()
        }
        DocumentCommand::Fail { stage, reason, attempts } => {
            check_stage(status, stage)?;
            validate::non_empty("reason", &reason)?;
            DocumentFailed { stage, reason, attempts }.into()
        }
        DocumentCommand::RequestReprocess { reason } => {
            if !matches!(status, DocumentStatus::Ready | DocumentStatus::Failed) {
                return Err(DocumentError::ReprocessNotAllowed { status });
            }
            ReprocessRequested { reason }.into()
        }
        DocumentCommand::UpdateMetadata { set, unset } => {
            validate::metadata(&set)?;
            for key in &unset {
                validate::metadata_key(key)?;
                if set.contains_key(key) {
                    return Err(DocumentError::MetadataKeySetAndUnset { key: key.clone() });
                }
            }
            if set.is_empty() && unset.is_empty() {
                return Ok(Vec::new());
            }
            MetadataUpdated { set, unset }.into()
        }
        DocumentCommand::Delete { reason } => DocumentDeleted { reason }.into(),
    };
    Ok(vec![event])
}

fn upload(
    document_id: uuid::Uuid,
    filename: String,
    media_type: String,
    blob: BlobRef,
    metadata: Metadata,
) -> Result<Vec<DocumentEvent>, DocumentError> {
    validate::filename(&filename)?;
    validate::media_type(&media_type)?;
    let blob = BlobRef { sha256: validate::sha256("blob.sha256", &blob.sha256)?, size: blob.size };
    validate::metadata(&metadata)?;
    Ok(vec![DocumentUploaded { document_id, filename, media_type, blob, metadata }.into()])
}

fn record_chunks(
    state: &DocumentState,
    status: DocumentStatus,
    chunker: ChunkerSettings,
    chunks: Vec<Chunk>,
) -> Result<DocumentChunked, DocumentError> {
    if status != DocumentStatus::Parsed {
        return Err(DocumentError::ChunksWithoutParse { status });
    }
    if chunker.max_chars == 0 || chunker.overlap >= chunker.max_chars {
        return Err(DocumentError::InvalidChunker { max_chars: chunker.max_chars, overlap: chunker.overlap });
    }
    if chunks.is_empty() {
        return Err(DocumentError::NoChunks);
    }
    let text_length = state.parse.as_ref().map(|parse| parse.text_length);
    for (position, chunk) in chunks.iter().enumerate() {
        if u32::try_from(position) != Ok(chunk.index) {
            return Err(DocumentError::ChunkOutOfOrder { position, index: chunk.index });
        }
        if chunk.byte_start > chunk.byte_end {
            return Err(DocumentError::InvalidChunkRange {
                index: chunk.index,
                byte_start: chunk.byte_start,
                byte_end: chunk.byte_end,
            });
        }
        if let Some(text_length) = text_length.filter(|&length| chunk.byte_end > length) {
            return Err(DocumentError::ChunkOutsideText { index: chunk.index, byte_end: chunk.byte_end, text_length });
        }
    }
    Ok(DocumentChunked { chunker, chunks })
}

fn record_embeddings(
    state: &DocumentState,
    status: DocumentStatus,
    model: String,
    dimensions: u32,
    vectors: &[Vec<f32>],
) -> Result<ChunksEmbedded, DocumentError> {
    if status != DocumentStatus::Chunked {
        return Err(DocumentError::EmbeddingsWithoutChunks { status });
    }
    validate::non_empty("model", &model)?;
    if dimensions == 0 {
        return Err(DocumentError::ZeroDimensions);
    }
    if vectors.len() != state.chunk_count {
        return Err(DocumentError::VectorCountMismatch { vectors: vectors.len(), chunks: state.chunk_count });
    }
    for (index, vector) in vectors.iter().enumerate() {
        if vector.len() != dimensions as usize {
            return Err(DocumentError::VectorDimensionMismatch { index, expected: dimensions, actual: vector.len() });
        }
        if let Some(component) = vector.iter().position(|value| !value.is_finite()) {
            return Err(DocumentError::NonFiniteVector { index, component });
        }
    }
    let vectors = vectors.iter().map(|vector| encode_vector(vector)).collect();
    Ok(ChunksEmbedded { model, dimensions, vectors })
}

/// A stage result or failure must concern the stage the document is in.
fn check_stage(status: DocumentStatus, stage: Stage) -> Result<(), DocumentError> {
    if !status.is_processing() {
        return Err(DocumentError::NotProcessing { status });
    }
    let expected = status.pending_stage();
    if expected != Some(stage) {
        return Err(DocumentError::WrongStage { stage, expected, status });
    }
    Ok(())
}

/// Applies one event to a state. Events are facts: `evolve` never refuses one, even one `decide` would not have
/// produced from this state (the log may have been written by an older release with other rules).
pub fn evolve(mut state: DocumentState, event: &DocumentEvent) -> DocumentState {
    state.version += 1;
    match event {
        DocumentEvent::DocumentUploaded(uploaded) => {
            state.status = Some(DocumentStatus::Uploaded);
            state.document_id = Some(uploaded.document_id);
            state.filename = Some(uploaded.filename.clone());
            state.media_type = Some(uploaded.media_type.clone());
            state.blob = Some(uploaded.blob.clone());
            state.metadata = uploaded.metadata.clone();
            state.generation = state.generation.saturating_add(1);
        }
        DocumentEvent::DocumentParsed(parsed) => {
            state.status = Some(DocumentStatus::Parsed);
            state.parse = Some(parsed.clone());
            clear_attempts(&mut state);
        }
        DocumentEvent::DocumentChunked(chunked) => {
            state.status = Some(DocumentStatus::Chunked);
            state.chunk_count = chunked.chunks.len();
            clear_attempts(&mut state);
        }
        DocumentEvent::ChunksEmbedded(embedded) => {
            state.status = Some(DocumentStatus::Embedded);
            state.embedding = Some(EmbeddingInfo { model: embedded.model.clone(), dimensions: embedded.dimensions });
            clear_attempts(&mut state);
        }
        DocumentEvent::DocumentReady(DocumentReady {}) => {
            state.status = Some(DocumentStatus::Ready);
            clear_attempts(&mut state);
        }
        DocumentEvent::StageAttemptFailed(failed) => {
            state.failed_attempts = state.failed_attempts.saturating_add(1);
            state.retry_at = failed.retry_at;
        }
        DocumentEvent::DocumentFailed(failed) => {
            state.status = Some(DocumentStatus::Failed);
            state.failure =
                Some(Failure { stage: failed.stage, reason: failed.reason.clone(), attempts: failed.attempts });
            state.retry_at = None;
        }
        DocumentEvent::ReprocessRequested(_) => {
            state.status = Some(DocumentStatus::Uploaded);
            state.parse = None;
            state.chunk_count = 0;
            state.embedding = None;
            state.failure = None;
            clear_attempts(&mut state);
            state.generation = state.generation.saturating_add(1);
        }
        DocumentEvent::MetadataUpdated(updated) => {
            for key in &updated.unset {
                state.metadata.remove(key);
            }
            state.metadata.extend(updated.set.iter().map(|(key, value)| (key.clone(), value.clone())));
        }
        DocumentEvent::DocumentDeleted(_) => {
            // Everything else is kept: a deleted document can still be read as it was.
            state.status = Some(DocumentStatus::Deleted);
            state.retry_at = None;
        }
    }
    state
}

/// A stage succeeded or processing restarted: earlier failures no longer count against the next stage.
fn clear_attempts(state: &mut DocumentState) {
    state.failed_attempts = 0;
    state.retry_at = None;
}

/// Folds events, oldest first, into the state they lead to from an empty stream.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a DocumentEvent>) -> DocumentState {
    events.into_iter().fold(DocumentState::default(), evolve)
}
