//! A synthetic event log for benchmarks: documents uploaded, parsed, chunked into corpus-like prose (see
//! [`SyntheticText`]), optionally embedded, ready, then metadata updates up to a given number of events each.
//!
//! `bench rebuild` folds such a log into the projections; `bench api` serves it over HTTP.

use std::sync::Arc;

use dossier_events::document::{
    BlobRef, Chunk, ChunkerSettings, ChunksEmbedded, DocumentChunked, DocumentEvent, DocumentParsed, DocumentReady,
    DocumentUploaded, MetadataUpdated, encode_vector,
};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use serde_json::json;
use uuid::Uuid;

use crate::commands::synthetic::SyntheticText;
use crate::error::AppError;

/// The embedding model named in the synthetic `ChunksEmbedded` events.
pub const SYNTHETIC_MODEL: &str = "synthetic";

/// The tenant every synthetic document belongs to.
pub const TENANT: &str = "bench";

/// The shape of a synthetic log.
#[derive(Clone, Copy, Debug)]
pub struct LogShape {
    /// Documents.
    pub documents: usize,
    /// Events per document: the lifecycle (see [`LogShape::lifecycle_events`]), the rest metadata updates.
    pub events_per_document: usize,
    /// Chunks per document.
    pub chunks_per_document: usize,
    /// Vector length; 0 records no `ChunksEmbedded` event (a BM25-only deployment).
    pub dimensions: usize,
    /// Characters per chunk (at most).
    pub chunk_chars: usize,
}

impl LogShape {
    /// Events of each document's lifecycle: uploaded, parsed, chunked, (embedded,) ready.
    pub fn lifecycle_events(&self) -> usize {
        if self.dimensions == 0 { 4 } else { 5 }
    }
}

/// Appends every document's events (one append per document) from 4 writers; returns the documents' ids.
pub async fn fill(
    store: &Arc<dyn EventStore>,
    shape: LogShape,
    text: Arc<SyntheticText>,
) -> Result<Vec<Uuid>, AppError> {
    if shape.events_per_document < shape.lifecycle_events() {
        return Err(AppError::Usage(format!(
            "--events-per-document must be at least {} (the lifecycle)",
            shape.lifecycle_events()
        )));
    }
    let writers = 4;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(store);
        let text = Arc::clone(&text);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for index in (writer..shape.documents).step_by(writers) {
                let document_id = Uuid::now_v7();
                let events = document_events(document_id, index, shape, &text)?;
                let metadata = EventMetadata::new(TENANT, "bench:synthetic");
                store.append(&StreamId::for_document(document_id), ExpectedVersion::NoStream, events, metadata).await?;
                ids.push(document_id);
            }
            Ok::<_, AppError>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(shape.documents);
    for task in tasks {
        ids.extend(task.await.map_err(|error| AppError::Usage(format!("benchmark writer panicked: {error}")))??);
    }
    Ok(ids)
}

fn document_events(
    document_id: Uuid,
    index: usize,
    shape: LogShape,
    synthetic: &SyntheticText,
) -> Result<Vec<NewEvent>, AppError> {
    let sha = format!("{:064x}", index);
    let mut start = 0_u64;
    let chunks: Vec<Chunk> = (0..shape.chunks_per_document)
        .map(|i| {
            let text = synthetic.text((index * shape.chunks_per_document + i) as u64, shape.chunk_chars);
            let chunk = Chunk { index: i as u32, byte_start: start, byte_end: start + text.len() as u64, text };
            start = chunk.byte_end + 1;
            chunk
        })
        .collect();
    let mut events = vec![
        DocumentEvent::from(DocumentUploaded {
            document_id,
            filename: format!("synthetic-{index}.txt"),
            media_type: "text/plain".into(),
            blob: BlobRef { sha256: sha.clone(), size: start },
            metadata: serde_json::Map::new(),
        }),
        DocumentEvent::from(DocumentParsed {
            text_sha256: sha,
            text_length: start,
            title: Some(format!("Synthetic {index}")),
            page_count: None,
            parser: "plain-text".into(),
        }),
        DocumentEvent::from(DocumentChunked { chunker: ChunkerSettings { max_chars: 1_000, overlap: 100 }, chunks }),
    ];
    if shape.dimensions > 0 {
        let vectors = (0..shape.chunks_per_document)
            .map(|i| {
                let raw: Vec<f32> =
                    (0..shape.dimensions).map(|d| ((index * 31 + i * 7 + d) % 97) as f32 / 97.0).collect();
                let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
                encode_vector(&raw.iter().map(|x| x / norm).collect::<Vec<_>>())
            })
            .collect();
        events.push(DocumentEvent::from(ChunksEmbedded {
            model: SYNTHETIC_MODEL.into(),
            dimensions: shape.dimensions as u32,
            vectors,
        }));
    }
    events.push(DocumentEvent::from(DocumentReady {}));
    for update in 0..shape.events_per_document - shape.lifecycle_events() {
        let mut set = serde_json::Map::new();
        set.insert("revision".into(), json!(update));
        events.push(DocumentEvent::from(MetadataUpdated { set, unset: vec![] }));
    }
    events.iter().map(|event| event.to_new_event().map_err(|error| AppError::Usage(error.to_string()))).collect()
}
