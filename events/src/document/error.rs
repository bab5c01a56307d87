//! Why a document command was refused, or why a stored event could not be read as a document event.
//!
//! Every invariant of the aggregate has its own variant, so callers (the HTTP layer, the pipeline) can react to the
//! case without parsing messages; the messages themselves are written for the user who sent the command.

use uuid::Uuid;

use crate::document::events::Stage;
use crate::document::state::DocumentStatus;
use crate::envelope::StreamId;

/// Everything [`decide`](crate::document::decide) can refuse and
/// [`DocumentEvent::from_recorded`](crate::document::DocumentEvent::from_recorded) can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// An upload targeted a stream that already holds a document.
    #[error("document {document_id} already exists")]
    AlreadyExists {
        /// The id the upload asked for.
        document_id: Uuid,
    },
    /// A command other than an upload targeted a stream with no document.
    #[error("no such document")]
    NotFound,
    /// The document was deleted; its stream only serves reads now.
    #[error("the document has been deleted; it can still be read but no longer changed")]
    Deleted,

    /// The filename is empty, too long, or could be read as a path.
    #[error("invalid filename {filename:?}: {reason}")]
    InvalidFilename {
        /// The filename as given.
        filename: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The media type does not look like `type/subtype`.
    #[error("invalid media type {media_type:?}: expected type/subtype, e.g. application/pdf")]
    InvalidMediaType {
        /// The media type as given.
        media_type: String,
    },
    /// A content digest is not a SHA-256 in hex.
    #[error("invalid {field}: expected a SHA-256 digest as 64 hex digits, got {value:?}")]
    InvalidDigest {
        /// Which field.
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A metadata key is empty, too long or contains control characters.
    #[error("invalid metadata key {key:?}: {reason}")]
    InvalidMetadataKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A metadata update both sets and unsets the same key, so its outcome would depend on the order of operations.
    #[error("metadata key {key:?} is both set and unset in the same update")]
    MetadataKeySetAndUnset {
        /// The key.
        key: String,
    },
    /// A required text field is empty.
    #[error("{field} must not be empty")]
    EmptyField {
        /// Which field.
        field: &'static str,
    },
    /// A retry time cannot be recorded as an RFC 3339 timestamp.
    #[error("invalid retry_at: {reason}")]
    InvalidRetryAt {
        /// Why it cannot be recorded.
        reason: String,
    },

    /// A parse result arrived for a document that is not waiting for one.
    #[error("a parse result can only be recorded for a freshly uploaded document; this one is {status}")]
    ParseNotExpected {
        /// The document's status.
        status: DocumentStatus,
    },
    /// Chunks arrived for a document that has not just been parsed.
    #[error("chunks can only be recorded right after parsing; this document is {status}")]
    ChunksWithoutParse {
        /// The document's status.
        status: DocumentStatus,
    },
    /// Embeddings arrived for a document that has not just been chunked.
    #[error(
        "no embeddings without chunks: embeddings can only be recorded right after chunking; this document is \
         {status}"
    )]
    EmbeddingsWithoutChunks {
        /// The document's status.
        status: DocumentStatus,
    },
    /// The document cannot be marked ready before it has been chunked (and embedded, when there is an embedder).
    #[error("a document can only become ready once it is chunked or embedded; this one is {status}")]
    NotReadyToComplete {
        /// The document's status.
        status: DocumentStatus,
    },
    /// A stage failure was reported for a document that is not being processed.
    #[error("stage failures can only be recorded while a document is being processed; this one is {status}")]
    NotProcessing {
        /// The document's status.
        status: DocumentStatus,
    },
    /// A stage failure was reported for a stage the document is not in.
    #[error("cannot record a failure of the {stage} stage: a document that is {status} is not in that stage")]
    WrongStage {
        /// The stage the failure was reported for.
        stage: Stage,
        /// The stage the document is in (`None` when it is past all of them, waiting to be marked ready).
        expected: Option<Stage>,
        /// The document's status.
        status: DocumentStatus,
    },
    /// A failed attempt was numbered out of sequence (a duplicate, or one skipped).
    #[error("attempt {attempt} of the {stage} stage is out of sequence: the next attempt is number {expected}")]
    AttemptOutOfSequence {
        /// The stage.
        stage: Stage,
        /// The attempt number reported.
        attempt: u32,
        /// The number the next attempt must have.
        expected: u32,
    },
    /// Reprocessing was requested while the document is still being processed (or was never finished).
    #[error("only a ready or failed document can be reprocessed; this one is {status}")]
    ReprocessNotAllowed {
        /// The document's status.
        status: DocumentStatus,
    },

    /// A chunking result has no chunks.
    #[error("a document needs at least one chunk; a document whose text is empty should be failed instead")]
    NoChunks,
    /// The chunker settings cannot have produced chunks.
    #[error(
        "invalid chunker settings: max_chars is {max_chars} and overlap {overlap}; max_chars must be positive and \
         larger than overlap"
    )]
    InvalidChunker {
        /// Longest chunk, in characters.
        max_chars: u32,
        /// Characters shared by consecutive chunks.
        overlap: u32,
    },
    /// A chunk's index is not its position in the list.
    #[error("the chunk at position {position} has index {index}; chunk indexes must run 0, 1, 2, … in order")]
    ChunkOutOfOrder {
        /// Where the chunk is in the list.
        position: usize,
        /// The index it claims.
        index: u32,
    },
    /// A chunk's byte range ends before it starts.
    #[error("chunk {index} has the byte range {byte_start}..{byte_end}, which ends before it starts")]
    InvalidChunkRange {
        /// The chunk's index.
        index: u32,
        /// Where it starts.
        byte_start: u64,
        /// Where it ends.
        byte_end: u64,
    },
    /// A chunk's byte range reaches past the end of the parsed text.
    #[error("chunk {index} ends at byte {byte_end}, past the end of the {text_length}-byte parsed text")]
    ChunkOutsideText {
        /// The chunk's index.
        index: u32,
        /// Where it ends.
        byte_end: u64,
        /// The parsed text's length in bytes.
        text_length: u64,
    },

    /// Embeddings were declared with zero dimensions.
    #[error("embedding dimensions must be greater than zero")]
    ZeroDimensions,
    /// There is not exactly one vector per chunk.
    #[error("got {vectors} vectors for {chunks} chunks: there must be exactly one vector per chunk")]
    VectorCountMismatch {
        /// Vectors given.
        vectors: usize,
        /// Chunks recorded.
        chunks: usize,
    },
    /// A vector's length differs from the declared dimensions.
    #[error("vector {index} has {actual} dimensions; the embeddings were declared with {expected}")]
    VectorDimensionMismatch {
        /// Which vector (= which chunk).
        index: usize,
        /// The declared dimensions.
        expected: u32,
        /// The vector's length.
        actual: usize,
    },
    /// A vector contains NaN or an infinity, which no similarity search can use.
    #[error("vector {index} has a non-finite value (NaN or infinity) at component {component}")]
    NonFiniteVector {
        /// Which vector (= which chunk).
        index: usize,
        /// Which component.
        component: usize,
    },

    /// A stored event's type is not a document event type.
    #[error(
        "event {stream}@{version} (position {position}) has the unknown type {event_type:?} (schema \
         v{schema_version})"
    )]
    UnknownEventType {
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: u64,
        /// Its global position.
        position: u64,
        /// The type it claims.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
    },
    /// A stored event still has a schema version this code does not read, after upcasting.
    #[error(
        "event {stream}@{version} (position {position}) is {event_type} v{schema_version}, but only v{expected} can \
         be read: is an upcaster missing, or was it written by a newer release?"
    )]
    UnsupportedSchemaVersion {
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: u64,
        /// Its global position.
        position: u64,
        /// Its type.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
        /// The schema version this code reads.
        expected: u32,
    },
    /// A stored event's payload does not match its type's schema.
    #[error("event {stream}@{version} (position {position}, {event_type} v{schema_version}) is malformed: {reason}")]
    MalformedEvent {
        /// Its stream.
        stream: StreamId,
        /// Its version in the stream.
        version: u64,
        /// Its global position.
        position: u64,
        /// Its type.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
        /// What the decoder said.
        reason: String,
    },
    /// An event could not be turned into JSON (only possible for events built by hand, not by `decide`).
    #[error("cannot encode a {event_type} event: {reason}")]
    Encode {
        /// Its type.
        event_type: &'static str,
        /// What the encoder said.
        reason: String,
    },
}

impl DocumentError {
    /// A short, stable name for the kind of error (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AlreadyExists { .. } => "already_exists",
            Self::NotFound => "not_found",
            Self::Deleted => "deleted",
            Self::InvalidFilename { .. } => "invalid_filename",
            Self::InvalidMediaType { .. } => "invalid_media_type",
            Self::InvalidDigest { .. } => "invalid_digest",
            Self::InvalidMetadataKey { .. } => "invalid_metadata_key",
            Self::MetadataKeySetAndUnset { .. } => "metadata_key_set_and_unset",
            Self::EmptyField { .. } => "empty_field",
            Self::InvalidRetryAt { .. } => "invalid_retry_at",
            Self::ParseNotExpected { .. } => "parse_not_expected",
            Self::ChunksWithoutParse { .. } => "chunks_without_parse",
            Self::EmbeddingsWithoutChunks { .. } => "embeddings_without_chunks",
            Self::NotReadyToComplete { .. } => "not_ready_to_complete",
            Self::NotProcessing { .. } => "not_processing",
            Self::WrongStage { .. } => "wrong_stage",
            Self::AttemptOutOfSequence { .. } => "attempt_out_of_sequence",
            Self::ReprocessNotAllowed { .. } => "reprocess_not_allowed",
            Self::NoChunks => "no_chunks",
            Self::InvalidChunker { .. } => "invalid_chunker",
            Self::ChunkOutOfOrder { .. } => "chunk_out_of_order",
            Self::InvalidChunkRange { .. } => "invalid_chunk_range",
            Self::ChunkOutsideText { .. } => "chunk_outside_text",
            Self::ZeroDimensions => "zero_dimensions",
            Self::VectorCountMismatch { .. } => "vector_count_mismatch",
            Self::VectorDimensionMismatch { .. } => "vector_dimension_mismatch",
            Self::NonFiniteVector { .. } => "non_finite_vector",
            Self::UnknownEventType { .. } => "unknown_event_type",
            Self::UnsupportedSchemaVersion { .. } => "unsupported_schema_version",
            Self::MalformedEvent { .. } => "malformed_event",
            Self::Encode { .. } => "encode",
        }
    }
}
