//! The read model's storage port: what the projection runner writes and what queries read, per generation.
//!
//! Every row belongs to a *generation* of its projection; queries read the live generation, a rebuild fills the
//! next one, and switching is one update of `projections.live_generation` (no table is created at run time).

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use crate::read_model::row::{ChunkRow, DocumentChange, DocumentRow};

/// Where a projection generation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last log position applied.
    pub position: u64,
    /// `running`, or `stopped` after a poison event.
    pub state: String,
    /// The error that stopped it, naming the position.
    pub error: Option<String>,
}

/// Errors of the read model's storage.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    /// Another runner moved the checkpoint since this batch began: nothing was written.
    #[error("checkpoint of {projection} generation {generation} moved under us (expected {expected})")]
    Fenced {
        /// The projection.
        projection: String,
        /// The generation.
        generation: u32,
        /// The position this batch started from.
        expected: u64,
    },
    /// The database failed or holds something unreadable.
    #[error("read model: {0}")]
    Database(String),
}

/// A page of documents and the cursor to the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentPage {
    /// The documents, by id (time-ordered, since ids are UUIDv7).
    pub documents: Vec<DocumentRow>,
    /// The last id of the page when there may be more.
    pub next_after: Option<Uuid>,
}

/// Storage of the read model (SQLite or Postgres).
#[async_trait]
pub trait ReadModelStore: Send + Sync + 'static {
    /// `embedded` or `postgres`.
    fn backend_name(&self) -> &'static str;

    /// The generation queries read (created as 1 on first use).
    async fn live_generation(&self, projection: &str) -> Result<u32, ReadModelError>;

    /// Where a generation stands (`None` if it has never run).
    async fn checkpoint(&self, projection: &str, generation: u32) -> Result<Option<Checkpoint>, ReadModelError>;

    /// The stored rows of these documents in a generation.
    async fn load_documents(
        &self,
        generation: u32,
        document_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, DocumentRow>, ReadModelError>;

    /// Writes a batch's changes and moves the checkpoint from `from` to `to`, in one transaction; fails with
    /// [`ReadModelError::Fenced`] (writing nothing) if the checkpoint is not at `from`.
    async fn commit(
        &self,
        projection: &str,
        generation: u32,
        from: u64,
        to: u64,
        changes: &[DocumentChange],
    ) -> Result<(), ReadModelError>;

    /// Makes `to` the live generation if `from` still is; false when another switch came first.
    async fn switch_live(&self, projection: &str, from: u32, to: u32) -> Result<bool, ReadModelError>;

    /// Deletes a generation's rows and checkpoint.
    async fn drop_generation(&self, projection: &str, generation: u32) -> Result<(), ReadModelError>;

    /// Deletes only a generation's checkpoint (for projections whose rows live elsewhere, like the vector index).
    async fn drop_checkpoint(&self, projection: &str, generation: u32) -> Result<(), ReadModelError>;

    /// Every document id stored in a generation (deleted ones included), for verification.
    async fn all_document_ids(&self, generation: u32) -> Result<Vec<Uuid>, ReadModelError>;

    /// Marks a generation stopped at a poison event running again (its checkpoint unchanged); false when it is not
    /// stopped. Only the admin skip command calls it, after recording the skip in the log, so the runner ignores the
    /// event from then on.
    async fn resume_stopped(&self, projection: &str, generation: u32) -> Result<bool, ReadModelError>;

    /// Marks a generation stopped at a poison event (the checkpoint stays before it).
    async fn record_failure(&self, projection: &str, generation: u32, error: &str) -> Result<(), ReadModelError>;

    /// A document of a tenant (deleted ones included; callers decide whether to show them).
    async fn get_document(
        &self,
        generation: u32,
        tenant_id: &str,
        document_id: Uuid,
    ) -> Result<Option<DocumentRow>, ReadModelError>;

    /// A tenant's documents that are not deleted, optionally of one status, after a cursor, by id.
    async fn list_documents(
        &self,
        generation: u32,
        tenant_id: &str,
        status: Option<&str>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<DocumentPage, ReadModelError>;

    /// A document's chunks from `from_index`, at most `limit`.
    async fn chunks(
        &self,
        generation: u32,
        document_id: Uuid,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ChunkRow>, ReadModelError>;

    /// The chunks with these (document, index) keys that exist in a generation (a search's hits, joined with their
    /// text), in no particular order.
    async fn chunks_by_key(
        &self,
        generation: u32,
        keys: &[(Uuid, u32)],
    ) -> Result<HashMap<(Uuid, u32), ChunkRow>, ReadModelError>;
}
