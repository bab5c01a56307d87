//! Folding log events into vector-index writes.
//!
//! The index needs, per document, its tenant, metadata, chunks and (for the collection's model) vectors, gathered
//! from several events; points are written when the document becomes ready. [`VectorFold`] keeps that state for the
//! documents it has seen, and loads a document it has not (after a restart, or once its cache was cleared) by
//! folding the document's earlier events from the log. A batch is folded into one plan per document, and the plans
//! into a few writes: one delete, one upsert, and a metadata update per document whose metadata changed while ready.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dossier_events::document::{Chunk, DocumentEvent, Metadata};
use dossier_events::{EventStore, RecordedEvent, StoreError};
use uuid::Uuid;

use crate::read_model::ApplyError;
use crate::vector::index::IndexOp;
use crate::vector::{Bm25, ChunkPoint, EmbeddingConfig};

/// Documents whose state the fold keeps before it starts over (the log refills it on demand).
const DEFAULT_CACHE_LIMIT: usize = 100_000;

/// One document as the index sees it.
#[derive(Clone, Debug, Default)]
struct IndexedDocument {
    tenant_id: String,
    metadata: Metadata,
    ready: bool,
    /// The position of the last event that shaped its points (ready, or a metadata change while ready).
    shaped_at: u64,
    /// The current chunks, until they are written as points.
    chunks: Vec<Chunk>,
    /// Their vectors, when embedded with the collection's model.
    vectors: Option<Vec<Vec<f32>>>,
}

/// What a batch does to one document's points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexPlan {
    /// Write the document's points (after deleting any it had, when `purge`).
    Replace {
        /// Points from an earlier version may remain.
        purge: bool,
    },
    /// Delete its points.
    Delete,
    /// Rewrite the metadata in its points' payloads.
    Metadata,
}

/// Why a batch could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// An event cannot be applied: the projection stops before it.
    #[error(transparent)]
    Poison(#[from] ApplyError),
    /// The log failed while loading a document's earlier events.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Folds batches of events into index writes for one embedding configuration.
pub struct VectorFold {
    config: EmbeddingConfig,
    bm25: Arc<Bm25>,
    documents: HashMap<Uuid, IndexedDocument>,
    cache_limit: usize,
    /// Positions an operator skipped (see [`crate::skip`]): never applied, also when loading a document.
    skipped: HashSet<u64>,
}

impl VectorFold {
    /// A fold with an empty cache.
    pub fn new(config: EmbeddingConfig, bm25: Arc<Bm25>) -> Self {
        Self { config, bm25, documents: HashMap::new(), cache_limit: DEFAULT_CACHE_LIMIT, skipped: HashSet::new() }
    }

    /// Ignores the events at these positions (skipped by an operator).
    pub fn with_skipped(mut self, skipped: HashSet<u64>) -> Self {
        self.skipped = skipped;
        self
    }

    /// Changes how many documents are kept before the cache starts over (tests use small values).
    pub fn with_cache_limit(mut self, limit: usize) -> Self {
        self.cache_limit = limit.max(1);
        self
    }

    /// Folds a batch (events in log order) into the writes that bring the index from before it to after it.
    pub async fn fold(&mut self, log: &dyn EventStore, batch: &[RecordedEvent]) -> Result<Vec<IndexOp>, FoldError> {
        if self.documents.len() > self.cache_limit {
            self.documents.clear();
        }
        let mut order: Vec<Uuid> = Vec::new();
        let mut plans: HashMap<Uuid, Option<IndexPlan>> = HashMap::new();
        // Only document streams feed the index; other streams (admin records) pass by.
        let documents: Vec<Option<Uuid>> = batch.iter().map(|event| event.stream_id.document_id()).collect();
        for (event, document_id) in batch.iter().zip(&documents) {
            let Some(document_id) = *document_id else { continue };
            if plans.contains_key(&document_id) {
                continue;
            }
            plans.insert(document_id, None);
            order.push(document_id);
            if event.version > 1 && !self.documents.contains_key(&document_id) {
                self.load(log, event, document_id).await?;
            }
        }
        for (event, document_id) in batch.iter().zip(&documents) {
            let Some(document_id) = *document_id else { continue };
            if self.skipped.contains(&event.position) {
                continue;
            }
            let step = self.step(document_id, event)?;
            let plan = plans.entry(document_id).or_default();
            *plan = combine(*plan, step);
        }
        Ok(self.writes(&order, &plans)?)
    }

    /// Folds every event of a document before `first` (the earliest of this document in the batch).
    async fn load(&mut self, log: &dyn EventStore, first: &RecordedEvent, document_id: Uuid) -> Result<(), FoldError> {
        let earlier = log.read_stream(&first.stream_id, 1, (first.version - 1) as usize).await?;
        for event in earlier.iter().filter(|event| event.version < first.version) {
            if self.skipped.contains(&event.position) {
                continue;
            }
            self.step(document_id, event)?;
        }
        Ok(())
    }

    /// Applies one event to a document's state; returns what it does to the points.
    fn step(&mut self, document_id: Uuid, recorded: &RecordedEvent) -> Result<Option<IndexPlan>, ApplyError> {
        let position = recorded.position;
        let event = DocumentEvent::from_recorded(recorded)
            .map_err(|error| ApplyError::Undecodable { position, reason: error.to_string() })?;
        if let DocumentEvent::DocumentUploaded(uploaded) = &event {
            let document = IndexedDocument {
                tenant_id: recorded.metadata.tenant_id.clone(),
                metadata: uploaded.metadata.clone(),
                ..IndexedDocument::default()
            };
            self.documents.insert(document_id, document);
            return Ok(None);
        }
        let Some(document) = self.documents.get_mut(&document_id) else {
            return Err(ApplyError::MissingDocument { position, event_type: recorded.event_type.clone(), document_id });
        };
        let was_ready = document.ready;
        Ok(match event {
            DocumentEvent::DocumentUploaded(_)
            | DocumentEvent::DocumentParsed(_)
            | DocumentEvent::StageAttemptFailed(_) => None,
            DocumentEvent::DocumentChunked(chunked) => {
                document.chunks = chunked.chunks;
                document.vectors = None;
                None
            }
            DocumentEvent::ChunksEmbedded(embedded) => {
                let bad = |reason: String| ApplyError::BadVectors { position, document_id, reason };
                match &self.config.dense {
                    Some((model, dimensions)) if *model == embedded.model => {
                        if embedded.dimensions != *dimensions {
                            return Err(bad(format!(
                                "{} vectors have {} dimensions, the collection's have {dimensions}",
                                embedded.model, embedded.dimensions
                            )));
                        }
                        let vectors = embedded.decode_vectors().map_err(|error| bad(error.to_string()))?;
                        if vectors.len() != document.chunks.len() {
                            return Err(bad(format!("{} vectors for {} chunks", vectors.len(), document.chunks.len())));
                        }
                        document.vectors = Some(vectors);
                    }
                    // Another model's vectors belong to another collection: this one indexes the text only.
                    _ => document.vectors = None,
                }
                None
            }
            DocumentEvent::DocumentReady(_) => {
                document.ready = true;
                document.shaped_at = position;
                Some(IndexPlan::Replace { purge: false })
            }
            DocumentEvent::DocumentFailed(_) | DocumentEvent::DocumentDeleted(_) => {
                document.ready = false;
                was_ready.then_some(IndexPlan::Delete)
            }
            DocumentEvent::ReprocessRequested(_) => {
                document.ready = false;
                document.chunks.clear();
                document.vectors = None;
                was_ready.then_some(IndexPlan::Delete)
            }
            DocumentEvent::MetadataUpdated(updated) => {
                for key in &updated.unset {
                    document.metadata.remove(key);
                }
                document.metadata.extend(updated.set);
                if document.ready {
                    document.shaped_at = position;
                    Some(IndexPlan::Metadata)
                } else {
                    None
                }
            }
        })
    }

    /// Turns the batch's plans into writes: deletes first, then one upsert, then metadata updates.
    fn writes(&mut self, order: &[Uuid], plans: &HashMap<Uuid, Option<IndexPlan>>) -> Result<Vec<IndexOp>, ApplyError> {
        let mut deletes = Vec::new();
        let mut points = Vec::new();
        let mut metadata = Vec::new();
        for document_id in order {
            let Some(Some(plan)) = plans.get(document_id) else { continue };
            let Some(document) = self.documents.get_mut(document_id) else { continue };
            match plan {
                IndexPlan::Delete => deletes.push(*document_id),
                IndexPlan::Replace { purge } => {
                    if *purge {
                        deletes.push(*document_id);
                    }
                    points.extend(points_of(*document_id, document, &self.bm25));
                    // Written: the chunks are no longer needed (a new version brings its own).
                    document.chunks = Vec::new();
                    document.vectors = None;
                }
                IndexPlan::Metadata => metadata.push(IndexOp::SetMetadata {
                    document_id: *document_id,
                    metadata: document.metadata.clone(),
                    position: document.shaped_at,
                }),
            }
        }
        let mut ops = Vec::new();
        if !deletes.is_empty() {
            ops.push(IndexOp::DeleteDocuments(deletes));
        }
        if !points.is_empty() {
            ops.push(IndexOp::Upsert(points));
        }
        ops.extend(metadata);
        Ok(ops)
    }
}

/// The plan after `next` follows `current` within one batch.
fn combine(current: Option<IndexPlan>, next: Option<IndexPlan>) -> Option<IndexPlan> {
    match (current, next) {
        (current, None) => current,
        // Points deleted earlier in the batch (a reprocess) may outnumber the new ones: delete before writing.
        (Some(IndexPlan::Delete), Some(IndexPlan::Replace { .. })) => Some(IndexPlan::Replace { purge: true }),
        // The replacement is built from the state at the end of the batch, so it carries the new metadata.
        (Some(replace @ IndexPlan::Replace { .. }), Some(IndexPlan::Metadata)) => Some(replace),
        (_, next) => next,
    }
}

/// The points of a ready document.
fn points_of(document_id: Uuid, document: &IndexedDocument, bm25: &Bm25) -> Vec<ChunkPoint> {
    document
        .chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| ChunkPoint {
            tenant_id: document.tenant_id.clone(),
            document_id,
            chunk_index: chunk.index,
            position: document.shaped_at,
            text: chunk.text.clone(),
            byte_start: chunk.byte_start,
            byte_end: chunk.byte_end,
            metadata: document.metadata.clone(),
            sparse: bm25.document(&chunk.text),
            dense: document.vectors.as_ref().and_then(|vectors| vectors.get(i).cloned()),
        })
        .collect()
}
