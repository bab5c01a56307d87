//! The document events: everything that can happen to a document, each with a typed payload.
//!
//! Payloads deliberately accept unknown fields: an older release must still be able to read an event that a newer
//! one wrote with an extra optional field. Any other change to a payload's shape bumps its schema version and comes
//! with an upcasting step (see [`register_upcasters`](crate::document::register_upcasters)).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::document::vectors::{VectorError, decode_vector};

/// A document's metadata: free-form JSON values under short string keys.
pub type Metadata = Map<String, Value>;

/// What ties a payload type to its event type name and current schema version.
pub trait DocumentPayload: Serialize + DeserializeOwned + Into<DocumentEvent> {
    /// The event type name stored in the envelope, e.g. `DocumentUploaded`.
    const EVENT_TYPE: &'static str;
    /// The schema version this code writes and reads (older versions are upcast to it on read).
    const SCHEMA_VERSION: u32;
}

/// A stage of the ingestion pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Extracting text from the uploaded file.
    Parse,
    /// Cutting the text into chunks.
    Chunk,
    /// Computing one embedding vector per chunk.
    Embed,
}

impl Stage {
    /// The stage's name as stored: `parse`, `chunk` or `embed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parse => "parse",
            Self::Chunk => "chunk",
            Self::Embed => "embed",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an uploaded file's bytes are: the content-addressed blob store, keyed by their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// SHA-256 of the file's bytes, 64 lower-case hex digits.
    pub sha256: String,
    /// The file's size in bytes.
    pub size: u64,
}

/// A document was uploaded (schema v2: the blob reference is nested; v1 had `sha256` and `size` at the top level).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentUploaded {
    /// The document's id; its stream is `document-<id>`.
    pub document_id: Uuid,
    /// The file's name as uploaded, without any directory.
    pub filename: String,
    /// The file's media type, e.g. `application/pdf`.
    pub media_type: String,
    /// Where the file's bytes are.
    pub blob: BlobRef,
    /// User-supplied metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

/// The document's text was extracted. The text itself lives in the blob store under `text_sha256`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentParsed {
    /// SHA-256 of the UTF-8 text, 64 lower-case hex digits.
    pub text_sha256: String,
    /// Length of the text in bytes.
    pub text_length: u64,
    /// The title the parser found, if any.
    #[serde(default)]
    pub title: Option<String>,
    /// Number of pages, for paged formats.
    #[serde(default)]
    pub page_count: Option<u32>,
    /// Which parser produced the text (name and version), for reproducibility.
    pub parser: String,
}

/// The settings a chunker ran with, recorded so a rebuild can tell how chunks were cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerSettings {
    /// Longest chunk, in characters.
    pub max_chars: u32,
    /// Characters shared by consecutive chunks.
    pub overlap: u32,
}

/// One chunk of the parsed text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position among the document's chunks, from 0.
    pub index: u32,
    /// The chunk's text, recorded so projections never need the blob store or the parser.
    pub text: String,
    /// Byte offset of the chunk's start in the parsed text.
    pub byte_start: u64,
    /// Byte offset just past the chunk's end in the parsed text.
    pub byte_end: u64,
}

/// The parsed text was cut into chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentChunked {
    /// How the chunks were cut.
    pub chunker: ChunkerSettings,
    /// The chunks, in order, indexed 0..n.
    pub chunks: Vec<Chunk>,
}

/// Every chunk got an embedding vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunksEmbedded {
    /// The embedding model's name.
    pub model: String,
    /// Length of every vector.
    pub dimensions: u32,
    /// One vector per chunk, in chunk order, each encoded by [`encode_vector`](crate::document::encode_vector).
    pub vectors: Vec<String>,
}

impl ChunksEmbedded {
    /// Decodes every vector, checking each has `dimensions` components.
    pub fn decode_vectors(&self) -> Result<Vec<Vec<f32>>, VectorError> {
        let dimensions = self.dimensions as usize;
        self.vectors.iter().map(|vector| decode_vector(vector, dimensions)).collect()
    }
}

/// The document is searchable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentReady {}

/// One attempt at a pipeline stage failed; another may follow at `retry_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageAttemptFailed {
    /// The stage that failed.
    pub stage: Stage,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// What went wrong.
    pub error: String,
    /// When the next attempt is due; `None` when no retry will follow.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<OffsetDateTime>,
}

/// Processing gave up on the document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentFailed {
    /// The stage that failed.
    pub stage: Stage,
    /// Why processing gave up.
    pub reason: String,
    /// How many attempts the stage had.
    pub attempts: u32,
}

/// Someone asked for the document to be processed again from its upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReprocessRequested {
    /// Why, as given.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The document's metadata changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataUpdated {
    /// Keys set to new values.
    #[serde(default)]
    pub set: Metadata,
    /// Keys removed.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The document was deleted; its stream is kept for the audit trail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentDeleted {
    /// Why, as given.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Everything that can happen to a document, one variant per event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentEvent {
    /// See [`DocumentUploaded`].
    DocumentUploaded(DocumentUploaded),
    /// See [`DocumentParsed`].
    DocumentParsed(DocumentParsed),
    /// See [`DocumentChunked`].
    DocumentChunked(DocumentChunked),
    /// See [`ChunksEmbedded`].
    ChunksEmbedded(ChunksEmbedded),
    /// See [`DocumentReady`].
    DocumentReady(DocumentReady),
    /// See [`StageAttemptFailed`].
    StageAttemptFailed(StageAttemptFailed),
    /// See [`DocumentFailed`].
    DocumentFailed(DocumentFailed),
    /// See [`ReprocessRequested`].
    ReprocessRequested(ReprocessRequested),
    /// See [`MetadataUpdated`].
    MetadataUpdated(MetadataUpdated),
    /// See [`DocumentDeleted`].
    DocumentDeleted(DocumentDeleted),
}

/// Implements [`DocumentPayload`] and the conversion into [`DocumentEvent`] for each payload, so the type name, the
/// variant name and the stored event type cannot drift apart.
macro_rules! document_payloads {
    ($($payload:ident => $version:literal),+ $(,)?) => {
        $(
            impl DocumentPayload for $payload {
                const EVENT_TYPE: &'static str = stringify!($payload);
                const SCHEMA_VERSION: u32 = $version;
            }

            impl From<$payload> for DocumentEvent {
                fn from(payload: $payload) -> Self {
                    Self::$payload(payload)
                }
            }
        )+

        impl DocumentEvent {
            /// Every document event type name, in lifecycle order.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($payload)),+];

            /// The event type name stored in the envelope (the variant's name, e.g. `DocumentUploaded`).
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$payload(_) => <$payload as DocumentPayload>::EVENT_TYPE,)+
                }
            }

            /// The schema version of the payload this code writes.
            pub fn schema_version(&self) -> u32 {
                match self {
                    $(Self::$payload(_) => <$payload as DocumentPayload>::SCHEMA_VERSION,)+
                }
            }
        }
    };
}

document_payloads! {
    DocumentUploaded => 2,
    DocumentParsed => 1,
    DocumentChunked => 1,
    ChunksEmbedded => 1,
    DocumentReady => 1,
    StageAttemptFailed => 1,
    DocumentFailed => 1,
    ReprocessRequested => 1,
    MetadataUpdated => 1,
    DocumentDeleted => 1,
}
