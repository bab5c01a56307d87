//! A document as the API shows it, folded straight from its stream: reads of one document are as fresh as the log
//! (a `GET` right after a `202` sees the upload), and the same fold at a past version is the history.

use dossier_events::document::{DocumentEvent, DocumentState, EmbeddingInfo, Failure, Metadata, evolve};
use dossier_events::{EventStore, RecordedEvent, StreamId};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::error::ApiError;

/// Events read per page when folding a stream.
const PAGE: usize = 500;

/// A document in a response.
#[derive(Clone, Debug, Serialize)]
pub struct DocumentView {
    /// The document's id.
    pub id: Uuid,
    /// `uploaded`, `parsed`, `chunked`, `embedded`, `ready`, `failed` or `deleted`.
    pub status: &'static str,
    /// The stream version this view reflects (also the `ETag`).
    pub version: u64,
    /// The uploaded file's name.
    pub filename: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// User metadata.
    pub metadata: Metadata,
    /// The title the parser found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Chunks of the current processing run.
    pub chunk_count: usize,
    /// The model that embedded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingInfo>,
    /// Why processing gave up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Processing runs so far (1 + reprocessings).
    pub generation: u32,
    /// When it was uploaded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its last event (in this view) was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// On an upload's response: whether the same bytes were already uploaded and that document is returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
}

impl DocumentView {
    /// The `ETag` of this version.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

/// How far to fold a stream.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// Every event.
    Latest,
    /// Events up to and including this version.
    Version(u64),
    /// Events recorded at or before this instant.
    At(OffsetDateTime),
}

/// Folds a document's stream (as far as `until`) for `tenant`: 404 when the stream is empty, belongs to another
/// tenant, or holds nothing up to `until`.
pub async fn load(store: &dyn EventStore, tenant: &str, id: Uuid, until: Until) -> Result<DocumentView, ApiError> {
    let stream = StreamId::for_document(id);
    let mut state = DocumentState::default();
    let mut first: Option<OffsetDateTime> = None;
    let mut last: Option<OffsetDateTime> = None;
    let mut from = 1;
    'pages: loop {
        let page = store.read_stream(&stream, from, PAGE).await?;
        let full = page.len() == PAGE;
        for recorded in &page {
            if first.is_none() && recorded.metadata.tenant_id != tenant {
                // Another tenant's document does not exist for the caller (never 403: that would reveal it).
                return Err(ApiError::DocumentNotFound(id));
            }
            if !includes(until, recorded) {
                break 'pages;
            }
            let event = DocumentEvent::from_recorded(recorded)?;
            state = evolve(state, &event);
            first.get_or_insert(recorded.recorded_at);
            last = Some(recorded.recorded_at);
            from = recorded.version + 1;
        }
        if !full {
            break;
        }
    }
    let (Some(created_at), Some(updated_at)) = (first, last) else {
        return Err(match until {
            Until::Latest => ApiError::DocumentNotFound(id),
            Until::Version(_) | Until::At(_) => ApiError::NotFound(format!("document {id} had no events by then")),
        });
    };
    if let Until::Version(version) = until
        && state.version < version
    {
        return Err(ApiError::NotFound(format!(
            "document {id} has {} events; there is no version {version}",
            state.version
        )));
    }
    view(id, &state, created_at, updated_at)
}

fn includes(until: Until, event: &RecordedEvent) -> bool {
    match until {
        Until::Latest => true,
        Until::Version(version) => event.version <= version,
        Until::At(at) => event.recorded_at <= at,
    }
}

/// The view of a document whose state is known, with when its first and last events were recorded.
pub fn view(
    id: Uuid,
    state: &DocumentState,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> Result<DocumentView, ApiError> {
    let missing = || ApiError::Internal(format!("document {id}'s stream does not start with an upload"));
    let blob = state.blob.as_ref().ok_or_else(missing)?;
    Ok(DocumentView {
        id,
        status: state.status.ok_or_else(missing)?.as_str(),
        version: state.version,
        filename: state.filename.clone().ok_or_else(missing)?,
        media_type: state.media_type.clone().ok_or_else(missing)?,
        size_bytes: blob.size,
        sha256: blob.sha256.clone(),
        metadata: state.metadata.clone(),
        title: state.parse.as_ref().and_then(|parsed| parsed.title.clone()),
        chunk_count: state.chunk_count,
        embedding: state.embedding.clone(),
        failure: state.failure.clone(),
        generation: state.generation,
        created_at,
        updated_at,
        deduplicated: None,
    })
}
