//! The vector index's storage port: collections of chunk points, written by the projection, read by search and
//! verification. Implemented by qdrant-edge in process ([`crate::vector::edge`]) and a Qdrant server
//! ([`crate::vector::server`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use dossier_events::document::Metadata;
use serde_json::Value;
use uuid::Uuid;

use crate::vector::search::{IndexHit, SearchQuery};
use crate::vector::{ChunkPoint, SparseVector};

/// A collection's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionSpec {
    /// Its name.
    pub name: String,
    /// The dense vector's length, when it holds one.
    pub dense_dimensions: Option<u32>,
}

/// One write to a collection. Every one is idempotent.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexOp {
    /// Inserts or replaces these points.
    Upsert(Vec<ChunkPoint>),
    /// Deletes every point of these documents.
    DeleteDocuments(Vec<Uuid>),
    /// Deletes a document's points from this chunk index on (left over from a longer earlier version).
    DeleteChunksFrom {
        /// The document.
        document_id: Uuid,
        /// The first chunk index to delete.
        from_index: u32,
    },
    /// Replaces the metadata (and position) in the payload of every point of a document.
    SetMetadata {
        /// The document.
        document_id: Uuid,
        /// Its metadata now.
        metadata: Metadata,
        /// The position of the event that changed it.
        position: u64,
    },
}

/// A point as stored, for verification.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPoint {
    /// Its id.
    pub id: Uuid,
    /// Its payload.
    pub payload: Value,
    /// Its sparse vector, indices ascending.
    pub sparse: SparseVector,
    /// Its dense vector.
    pub dense: Option<Vec<f32>>,
}

/// Errors of the vector index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The engine or server failed.
    #[error("vector index {collection}: {message}")]
    Engine {
        /// The collection.
        collection: String,
        /// What failed.
        message: String,
    },
    /// The collection does not exist.
    #[error("vector index: collection {0} does not exist")]
    MissingCollection(String),
    /// The request is invalid (e.g. a metadata filter key the index cannot address).
    #[error("{0}")]
    Invalid(String),
}

impl IndexError {
    /// An engine error on a collection.
    pub fn engine(collection: &str, message: impl std::fmt::Display) -> Self {
        Self::Engine { collection: collection.to_owned(), message: message.to_string() }
    }
}

/// Writes queued one after another for one purpose (a projection's batch): once one of them fails, those queued
/// after it are not applied, so the index holds a prefix of them.
#[derive(Clone, Debug, Default)]
pub struct WriteChain(Arc<AtomicBool>);

impl WriteChain {
    /// Whether a write of the chain failed.
    pub fn is_broken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Marks the chain failed: its writes not applied yet never will be.
    fn break_off(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// The outcome of a write queued on this chain: a failure breaks it.
    pub fn record(&self, outcome: Result<(), IndexError>) -> Result<(), IndexError> {
        if outcome.is_err() {
            self.break_off();
        }
        outcome
    }

    /// The error of a write skipped because an earlier one of its chain failed.
    pub fn skipped(collection: &str) -> IndexError {
        IndexError::engine(collection, "not applied: an earlier write queued with it failed")
    }
}

/// A queued write: reports whether it was applied once it was (or was not).
#[derive(Debug)]
pub struct Queued(tokio::sync::oneshot::Receiver<Result<(), IndexError>>, String);

impl Queued {
    /// A write whose outcome is known already.
    pub fn ready(collection: &str, outcome: Result<(), IndexError>) -> Self {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let _ = sender.send(outcome);
        Self(receiver, collection.to_owned())
    }

    /// A write whose outcome `receiver` will report.
    pub fn pending(collection: &str, receiver: tokio::sync::oneshot::Receiver<Result<(), IndexError>>) -> Self {
        Self(receiver, collection.to_owned())
    }

    /// Waits until the write was applied (or failed, or was skipped).
    pub async fn applied(self) -> Result<(), IndexError> {
        let Self(receiver, collection) = self;
        receiver.await.unwrap_or_else(|_| Err(IndexError::engine(&collection, "the index's writer stopped")))
    }
}

/// A vector index backend.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// `embedded` (qdrant-edge) or `qdrant` (a server).
    fn backend_name(&self) -> &'static str;

    /// Creates the collection with its vectors and payload indexes, unless it exists.
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<(), IndexError>;

    /// Deletes the collection if it exists.
    async fn drop_collection(&self, name: &str) -> Result<(), IndexError>;

    /// Whether the collection exists.
    async fn collection_exists(&self, name: &str) -> Result<bool, IndexError>;

    /// Applies the writes in order and makes them durable before returning.
    async fn apply(&self, collection: &str, ops: Vec<IndexOp>) -> Result<(), IndexError>;

    /// Queues the writes behind the collection's earlier ones and returns without waiting for them to be applied
    /// (the [`Queued`] tells when they are, and whether they were). Once applied they are searchable, but durable only
    /// once a later [`apply`](Self::apply) to the same collection returns (it makes everything before it durable too).
    /// Skipped when an earlier write of `chain` failed. By default, applied (durably) before this returns.
    async fn apply_queued(
        &self,
        collection: &str,
        ops: Vec<IndexOp>,
        chain: &WriteChain,
    ) -> Result<Queued, IndexError> {
        let outcome =
            if chain.is_broken() { Err(WriteChain::skipped(collection)) } else { self.apply(collection, ops).await };
        Ok(Queued::ready(collection, chain.record(outcome)))
    }

    /// Queues a flush behind the collection's queued writes: once it is applied, everything queued before it is
    /// durable. Skipped when a write of `chain` failed. By default there is nothing to flush (writes are durable
    /// when applied).
    async fn flush_queued(&self, collection: &str, chain: &WriteChain) -> Result<Queued, IndexError> {
        let outcome = if chain.is_broken() { Err(WriteChain::skipped(collection)) } else { Ok(()) };
        Ok(Queued::ready(collection, outcome))
    }

    /// Searches a collection: the best points, without their text (which the read model holds: ADR 0016).
    async fn search(&self, collection: &str, query: &SearchQuery) -> Result<Vec<IndexHit>, IndexError>;

    /// A page of stored points by id, after `after`; the next page starts after the last id returned.
    async fn scroll(&self, collection: &str, after: Option<Uuid>, limit: usize)
    -> Result<Vec<StoredPoint>, IndexError>;

    /// The number of points in a collection.
    async fn count(&self, collection: &str) -> Result<u64, IndexError>;

    /// Puts a collection that is being filled and not searched yet into bulk loading (`true`), or back to serving
    /// (`false`). While bulk loading the engine may defer building its search graphs and merging segments: every
    /// write is still durable and every point searchable (dense search by full scan), so a collection is correct
    /// either way, only slower to search until the graphs exist; they are built in the background after `false`.
    /// Idempotent.
    async fn set_bulk_load(&self, collection: &str, bulk: bool) -> Result<(), IndexError>;

    /// Points `alias` at `collection` (a server alias; the embedded engine keeps none, its live generation is the
    /// read model's record).
    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), IndexError>;

    /// Checks the backend answers.
    async fn ping(&self) -> Result<(), IndexError>;
}
