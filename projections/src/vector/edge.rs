//! The embedded vector index: qdrant-edge (the in-process Qdrant engine), one shard directory per collection under
//! `<data dir>/vectors/`.
//!
//! qdrant-edge's API blocks, so reads run on tokio's blocking pool and writes on a thread per collection that applies
//! them in the order they were queued ([`queue`]). `apply` returns after a flush of the segments, and a queued flush
//! reports when it is done, because 0.7.2 does not replay its WAL on load (the vendored copy no longer writes it:
//! vendor/README.md): only flushed segments survive a crash, and the projection moves a batch's checkpoint only once
//! the flush queued after its writes is done (ADR 0014). The HNSW graph is built by `optimize()`, which blocks for
//! long on large collections; it runs on its own thread, at most one per collection, whenever the points not yet
//! covered by the graph grow past a threshold, while reads and writes continue.
//!
//! **Bulk loading** (a rebuild's new generation, not searched yet): no HNSW graph (`m = 0`) and no background
//! `optimize()` at all while it fills, so the points go into one appendable segment and the graph build, the sealing
//! and any merge run once, in the background, when bulk loading ends (ADR 0012; sealing while filling only made work
//! that the final optimisation redid). Every point stays searchable throughout (dense search by full scan until the
//! graph exists). The bulk optimizer settings are persisted with the shard, so a reopened collection keeps its mode.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use qdrant_edge::{
    EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams, FieldIndexOperations, Filter, Fusion, Modifier,
    NamedQuery, PayloadOps, PointId, PointInsertOperations, PointOperations, PointStruct, Prefetch, QueryEnum,
    QueryRequest, ScoringQuery, ScrollRequest, SetPayloadOp, UpdateOperation, VectorInternal, VectorStructInternal,
    WithPayloadInterface, WithVector,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::vector::index::{CollectionSpec, IndexError, IndexOp, Queued, StoredPoint, VectorIndex, WriteChain};
use crate::vector::names::{DENSE, SPARSE};
use crate::vector::search::{IndexHit, PointFilter, SearchQuery};
use crate::vector::{ChunkPoint, SparseVector};

mod queue;
mod settings;
use queue::WriteQueue;
use settings::{
    BULK_SEAL_POINTS, BULK_SEGMENT_NUMBER, SERVING_SEGMENT_NUMBER, bulk_optimizers, dense_hnsw, serving_optimizers,
};

/// Points written since the last graph build that trigger a background `optimize()`.
const OPTIMIZE_AFTER_POINTS: usize = 20_000;

struct Collection {
    shard: ShardHandle,
    optimizing: AtomicBool,
    written_since_optimize: Mutex<usize>,
    bulk: AtomicBool,
    /// Applies the writes, in order.
    queue: WriteQueue,
}

/// A shared handle on a shard that never lets qdrant-edge's flush-on-drop panic (see [`release`]).
struct ShardHandle(ManuallyDrop<Arc<EdgeShard>>);

impl ShardHandle {
    fn new(shard: EdgeShard) -> Self {
        Self(ManuallyDrop::new(Arc::new(shard)))
    }

    /// Handles on the shard now: the collection's own, plus one per call still running with a clone of it.
    fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Clone for ShardHandle {
    fn clone(&self) -> Self {
        Self(ManuallyDrop::new(Arc::clone(&self.0)))
    }
}

impl std::ops::Deref for ShardHandle {
    type Target = EdgeShard;

    fn deref(&self) -> &EdgeShard {
        &self.0
    }
}

impl Drop for ShardHandle {
    fn drop(&mut self) {
        // SAFETY: the field is taken exactly once, here, and never used afterwards.
        let shard = unsafe { ManuallyDrop::take(&mut self.0) };
        release(shard);
    }
}

/// Drops a handle on a shard. qdrant-edge flushes a shard when its last handle goes and panics if its files are gone
/// (a dropped collection, or a test's scratch directory removed under a running server); a panic there can abort the
/// process, so a shard whose directory has disappeared is let go without the flush (there is nothing to flush to).
fn release(shard: Arc<EdgeShard>) {
    if Arc::strong_count(&shard) == 1 && !shard.path().join("segments").exists() {
        tracing::warn!(path = %shard.path().display(), "vector_index_files_gone_before_close");
        std::mem::forget(shard);
    } else {
        drop(shard);
    }
}

/// Deletes a dropped collection's directory. Dropping a shard's last handle flushes it on qdrant's background flush
/// threads, which may still be writing a file while the directory is removed (`remove_dir_all` then fails with
/// "Directory not empty"): try again while that lasts, for at most about a second.
fn remove_collection_dir(name: &str, path: &Path) -> Result<(), IndexError> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 40 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(error) => return Err(IndexError::engine(name, error)),
        }
    }
}

/// qdrant-edge collections under one directory.
///
/// A dropped collection's directory is deleted only once nothing uses its shard any more: qdrant-edge flushes a
/// shard when it is dropped and panics if its files are gone. Until then the collection is *retired*: reads and
/// writes see it as missing, and its files stay.
pub struct EdgeIndex {
    root: PathBuf,
    open: Mutex<HashMap<String, Arc<Collection>>>,
    retired: Mutex<Vec<(String, PathBuf, Arc<Collection>)>>,
    optimize_after: usize,
}

impl EdgeIndex {
    /// Opens (creating it if needed) the directory holding the collections, after checking (once per process) that
    /// its file system keeps several memory maps of one file consistent (qdrant-edge keeps one map per file if not).
    pub fn open(root: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(root)
            .map_err(|error| IndexError::engine(&root.display().to_string(), format!("cannot create: {error}")))?;
        // In a directory of this call's own: processes sharing the data directory must not remove each other's file.
        let check_dir = root.join(format!(".mmap-check-{}", uuid::Uuid::now_v7().simple()));
        let checked = qdrant_edge::check_multi_mmap_support(&check_dir);
        let _ = std::fs::remove_dir_all(&check_dir);
        let supported = checked.map_err(|error| {
            IndexError::engine(&root.display().to_string(), format!("checking memory maps: {error}"))
        })?;
        if !supported {
            tracing::warn!(directory = %root.display(), "vector_index_single_mmap_per_file");
        }
        Ok(Self {
            root: root.to_owned(),
            open: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            optimize_after: OPTIMIZE_AFTER_POINTS,
        })
    }

    /// Changes how many written points trigger a background graph build (tests use small values).
    pub fn with_optimize_after(mut self, points: usize) -> Self {
        self.optimize_after = points.max(1);
        self
    }

    fn path(&self, name: &str) -> Result<PathBuf, IndexError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(IndexError::Invalid(format!("invalid collection name {name:?}")));
        }
        Ok(self.root.join(name))
    }

    /// The open collection, loading it from disk on first use.
    async fn collection(&self, name: &str) -> Result<Arc<Collection>, IndexError> {
        if let Some(collection) = self.lock().get(name) {
            return Ok(Arc::clone(collection));
        }
        if self.is_retired(name) {
            return Err(IndexError::MissingCollection(name.to_owned()));
        }
        let path = self.path(name)?;
        if !path.join("edge_config.json").exists() {
            return Err(IndexError::MissingCollection(name.to_owned()));
        }
        let owned = name.to_owned();
        let shard = blocking(name, move || {
            let shard = EdgeShard::load(&path, None).map_err(|e| IndexError::engine(&owned, e))?;
            // A serving collection made before its settings changed takes the current ones.
            let segments = shard.config().optimizers.default_segment_number;
            if segments != Some(BULK_SEGMENT_NUMBER) && segments != Some(SERVING_SEGMENT_NUMBER) {
                shard.set_optimizers_config(serving_optimizers()).map_err(|e| IndexError::engine(&owned, e))?;
            }
            Ok(shard)
        })
        .await?;
        Ok(self.insert(name, shard))
    }

    fn insert(&self, name: &str, shard: EdgeShard) -> Arc<Collection> {
        let bulk = shard.config().optimizers.default_segment_number == Some(BULK_SEGMENT_NUMBER);
        let collection = Arc::new(Collection {
            shard: ShardHandle::new(shard),
            optimizing: AtomicBool::new(false),
            written_since_optimize: Mutex::new(0),
            bulk: AtomicBool::new(bulk),
            queue: WriteQueue::new(name),
        });
        Arc::clone(self.lock().entry(name.to_owned()).or_insert(collection))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Collection>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn retired(&self) -> std::sync::MutexGuard<'_, Vec<(String, PathBuf, Arc<Collection>)>> {
        self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_retired(&self, name: &str) -> bool {
        self.retired().iter().any(|(retired, _, _)| retired == name)
    }

    /// Deletes the files of retired collections nobody uses any more (dropping the shard flushes it first).
    async fn reap(&self) -> Result<(), IndexError> {
        let idle: Vec<(String, PathBuf, Arc<Collection>)> = {
            let mut retired = self.retired();
            // Idle: nothing holds the collection, and no call (a write, a search) still holds a clone of its shard,
            // which could create files in the directory while it is being removed.
            let (idle, busy) =
                retired.drain(..).partition(|(_, _, c)| Arc::strong_count(c) == 1 && c.shard.handles() == 1);
            *retired = busy;
            idle
        };
        for (name, path, collection) in idle {
            blocking(&name.clone(), move || {
                drop(collection);
                remove_collection_dir(&name, &path)
            })
            .await?;
        }
        Ok(())
    }

    /// Builds the HNSW graph now (blocking until done); used by benchmarks and tests.
    /// The number of segments the collection's shard holds now (diagnostics and tests).
    pub async fn segment_count(&self, name: &str) -> Result<usize, IndexError> {
        let collection = self.collection(name).await?;
        blocking(name, move || Ok(collection.shard.info().segments_count)).await
    }

    /// Runs `optimize()` on the collection until it has nothing left to do (builds graphs, merges segments), after
    /// waiting for a background run to finish.
    pub async fn optimize(&self, name: &str) -> Result<(), IndexError> {
        let collection = self.collection(name).await?;
        while collection.optimizing.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let owned = name.to_owned();
        blocking(name, move || collection.shard.optimize().map(|_| ()).map_err(|e| IndexError::engine(&owned, e))).await
    }

    /// Queues `ops` on the collection's write queue, then a flush of the shard when `flush`.
    async fn write(
        &self,
        name: &str,
        ops: Vec<IndexOp>,
        flush: bool,
        chain: Option<&WriteChain>,
    ) -> Result<Queued, IndexError> {
        let collection = self.collection(name).await?;
        // Nothing to write and nothing queued to make durable.
        if ops.is_empty() && !(flush && collection.queue.unflushed()) {
            return Ok(Queued::ready(name, Ok(())));
        }
        let written: usize = ops.iter().map(|op| if let IndexOp::Upsert(points) = op { points.len() } else { 0 }).sum();
        // Converted here, on the caller's thread: the collection's writes are applied by one thread, so it is the
        // one to keep free (a rebuild folds its next part on this thread meanwhile).
        let updates = ops.into_iter().map(|op| edge_update(name, op)).collect::<Result<Vec<_>, _>>()?;
        let queued = collection.queue.submit(collection.shard.clone(), updates, flush, chain)?;
        self.maybe_optimize(name, &collection, written);
        Ok(queued)
    }

    /// Starts a background `optimize()` when enough points arrived since the last one started. At most one runs per
    /// collection; it runs again when more points arrived meanwhile, so a request is never lost.
    fn maybe_optimize(&self, name: &str, collection: &Arc<Collection>, written: usize) {
        {
            let mut pending = collection.pending();
            *pending += written;
            if *pending < collection.optimize_after(self.optimize_after)
                || collection.optimizing.swap(true, Ordering::SeqCst)
            {
                return;
            }
        }
        let worker = Arc::clone(collection);
        let base = self.optimize_after;
        let name = name.to_owned();
        let spawned = std::thread::Builder::new().name("edge-optimize".into()).spawn(move || {
            crate::background::idle_priority();
            loop {
                {
                    let mut pending = worker.pending();
                    if *pending < worker.optimize_after(base) {
                        // Under the lock: a writer adding points after this sees the flag down and starts a thread.
                        worker.optimizing.store(false, Ordering::SeqCst);
                        return;
                    }
                    *pending = 0;
                }
                let started = std::time::Instant::now();
                match worker.shard.optimize() {
                    Ok(_) => tracing::info!(collection = %name, seconds = started.elapsed().as_secs_f64(), "vector_index_optimized"),
                    Err(error) => tracing::warn!(collection = %name, error = %error, "vector_index_optimize_failed"),
                }
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(error = %error, "vector_index_optimize_not_started");
            collection.optimizing.store(false, Ordering::SeqCst);
        }
    }
}

impl Collection {
    fn pending(&self) -> std::sync::MutexGuard<'_, usize> {
        self.written_since_optimize.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Points after which to optimize: `base`, or never while bulk loading.
    fn optimize_after(&self, base: usize) -> usize {
        if self.bulk.load(Ordering::SeqCst) { usize::MAX } else { base }
    }
}

async fn blocking<T: Send + 'static>(
    collection: &str,
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| IndexError::engine(collection, error))?
}

fn edge_filter(collection: &str, filter: &PointFilter) -> Result<Filter, IndexError> {
    serde_json::from_value(filter.to_qdrant_json()?).map_err(|error| IndexError::engine(collection, error))
}

fn edge_point(mut point: ChunkPoint) -> Result<PointStruct, IndexError> {
    let mut vectors: HashMap<String, qdrant_edge::Vector> = HashMap::new();
    let sparse = std::mem::take(&mut point.sparse);
    let sparse = qdrant_edge::Vector::new_sparse(sparse.indices, sparse.values)
        .map_err(|error| IndexError::Invalid(format!("document {}: {error}", point.document_id)))?;
    vectors.insert(SPARSE.to_owned(), sparse);
    if let Some(dense) = point.dense.take() {
        vectors.insert(DENSE.to_owned(), qdrant_edge::Vector::new_dense(dense));
    }
    Ok(PointStruct::new(PointId::Uuid(point.id()), vectors, point.payload()))
}

fn edge_update(collection: &str, op: IndexOp) -> Result<UpdateOperation, IndexError> {
    Ok(match op {
        IndexOp::Upsert(points) => {
            let points = points.into_iter().map(|p| edge_point(p).map(Into::into)).collect::<Result<Vec<_>, _>>()?;
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)))
        }
        IndexOp::DeleteDocuments(documents) => {
            let filter = PointFilter { document_ids: documents, ..PointFilter::default() };
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(edge_filter(collection, &filter)?))
        }
        IndexOp::DeleteChunksFrom { document_id, from_index } => {
            let filter = PointFilter {
                document_ids: vec![document_id],
                from_chunk_index: Some(from_index),
                ..PointFilter::default()
            };
            UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(edge_filter(collection, &filter)?))
        }
        IndexOp::SetMetadata { document_id, metadata, position } => {
            let filter = PointFilter { document_ids: vec![document_id], ..PointFilter::default() };
            let payload = json!({ "metadata": Value::Object(metadata), "position": position });
            let Value::Object(payload) = payload else { unreachable!("json! of an object is an object") };
            UpdateOperation::PayloadOperation(PayloadOps::SetPayload(SetPayloadOp {
                payload: qdrant_edge::Payload(payload),
                points: None,
                filter: Some(edge_filter(collection, &filter)?),
                key: None,
            }))
        }
    })
}

fn uuid_of(id: &PointId) -> Option<Uuid> {
    match id {
        PointId::Uuid(uuid) => Some(*uuid),
        PointId::NumId(_) => None,
    }
}

fn stored_point(id: Uuid, payload: Option<qdrant_edge::Payload>, vector: Option<VectorStructInternal>) -> StoredPoint {
    let mut sparse = SparseVector::default();
    let mut dense = None;
    if let Some(VectorStructInternal::Named(named)) = vector {
        for (name, vector) in named {
            match (name.as_str(), vector) {
                (SPARSE, VectorInternal::Sparse(mut vector)) => {
                    vector.sort_by_indices();
                    sparse = SparseVector { indices: vector.indices, values: vector.values };
                }
                (DENSE, VectorInternal::Dense(vector)) => dense = Some(vector),
                _ => {}
            }
        }
    }
    StoredPoint { id, payload: Value::Object(payload.map(|p| p.0).unwrap_or_default()), sparse, dense }
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<(), IndexError> {
        self.reap().await?;
        if self.is_retired(&spec.name) {
            return Err(IndexError::engine(&spec.name, "the collection is being dropped and still in use; try again"));
        }
        if self.collection(&spec.name).await.is_ok() {
            return Ok(());
        }
        let path = self.path(&spec.name)?;
        let mut config = EdgeConfig {
            optimizers: serving_optimizers(),
            sparse_vectors: HashMap::from([(
                SPARSE.to_owned(),
                EdgeSparseVectorParams { modifier: Some(Modifier::Idf), ..Default::default() },
            )]),
            ..Default::default()
        };
        if let Some(dimensions) = spec.dense_dimensions {
            let params = EdgeVectorParams::builder(dimensions as usize, qdrant_edge::Distance::Cosine).build();
            config.vectors.insert(DENSE.to_owned(), params);
        }
        let name = spec.name.clone();
        let shard = blocking(&spec.name, move || {
            // A directory left by a creation that crashed half-way holds no segment yet: start it again.
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| IndexError::engine(&name, e))?;
            }
            std::fs::create_dir_all(&path).map_err(|e| IndexError::engine(&name, e))?;
            // Held in ManuallyDrop until it is complete: if the flush below panics (its files removed under it),
            // dropping it while unwinding would flush again and abort the process.
            let shard = ManuallyDrop::new(EdgeShard::new(&path, config).map_err(|e| IndexError::engine(&name, e))?);
            let indexed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), IndexError> {
                for (field, schema) in [
                    ("tenant", json!({ "type": "keyword", "is_tenant": true })),
                    ("document", json!({ "type": "keyword" })),
                    ("chunk_index", json!({ "type": "integer" })),
                ] {
                    let create = qdrant_edge::CreateIndex {
                        field_name: field
                            .parse()
                            .map_err(|_| IndexError::engine(&name, format!("bad field {field}")))?,
                        field_schema: Some(serde_json::from_value(schema).map_err(|e| IndexError::engine(&name, e))?),
                    };
                    shard
                        .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(create)))
                        .map_err(|e| IndexError::engine(&name, e))?;
                }
                shard.flush();
                Ok(())
            }));
            match indexed {
                Ok(Ok(())) => Ok(ManuallyDrop::into_inner(shard)),
                Ok(Err(error)) => {
                    release(Arc::new(ManuallyDrop::into_inner(shard)));
                    Err(error)
                }
                Err(_) => Err(IndexError::engine(&name, "creating the collection failed: its files disappeared")),
            }
        })
        .await?;
        self.insert(&spec.name, shard);
        Ok(())
    }

    async fn drop_collection(&self, name: &str) -> Result<(), IndexError> {
        let path = self.path(name)?;
        let removed = self.lock().remove(name);
        match removed {
            Some(collection) => self.retired().push((name.to_owned(), path, collection)),
            None => {
                let owned = name.to_owned();
                blocking(name, move || remove_collection_dir(&owned, &path)).await?;
            }
        }
        self.reap().await
    }

    async fn collection_exists(&self, name: &str) -> Result<bool, IndexError> {
        match self.collection(name).await {
            Ok(_) => Ok(true),
            Err(IndexError::MissingCollection(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn apply(&self, name: &str, ops: Vec<IndexOp>) -> Result<(), IndexError> {
        self.write(name, ops, true, None).await?.applied().await
    }

    async fn apply_queued(&self, name: &str, ops: Vec<IndexOp>, chain: &WriteChain) -> Result<Queued, IndexError> {
        self.write(name, ops, false, Some(chain)).await
    }

    async fn flush_queued(&self, name: &str, chain: &WriteChain) -> Result<Queued, IndexError> {
        self.write(name, Vec::new(), true, Some(chain)).await
    }

    async fn search(&self, name: &str, query: &SearchQuery) -> Result<Vec<IndexHit>, IndexError> {
        let collection = self.collection(name).await?;
        let filter = edge_filter(name, &query.filter)?;
        let sparse = query.sparse.as_ref().map(|sparse| {
            let vector = qdrant_edge::SparseVector { indices: sparse.indices.clone(), values: sparse.values.clone() };
            QueryEnum::Nearest(NamedQuery { query: VectorInternal::from(vector), using: Some(SPARSE.to_owned()) })
        });
        let dense = query.dense.as_ref().map(|dense| {
            QueryEnum::Nearest(NamedQuery { query: VectorInternal::from(dense.clone()), using: Some(DENSE.to_owned()) })
        });
        let (prefetches, scoring) = match (sparse, dense) {
            (Some(sparse), Some(dense)) => {
                let prefetch = |candidates: QueryEnum| Prefetch {
                    prefetches: vec![],
                    query: Some(ScoringQuery::Vector(candidates)),
                    limit: query.prefetch_limit,
                    params: None,
                    filter: Some(filter.clone()),
                    score_threshold: None,
                };
                let fusion = ScoringQuery::Fusion(Fusion::Rrf { k: query.rrf_k, weights: None });
                (vec![prefetch(sparse), prefetch(dense)], fusion)
            }
            (Some(one), None) | (None, Some(one)) => (vec![], ScoringQuery::Vector(one)),
            (None, None) => return Ok(Vec::new()),
        };
        let request = QueryRequest {
            prefetches,
            query: Some(scoring),
            filter: Some(filter),
            score_threshold: None,
            limit: query.limit,
            offset: 0,
            params: None,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let owned = name.to_owned();
        let shard = collection.shard.clone();
        let points = blocking(name, move || shard.query(request).map_err(|e| IndexError::engine(&owned, e))).await?;
        points
            .into_iter()
            .map(|point| {
                let payload = Value::Object(point.payload.map(|p| p.0).unwrap_or_default());
                IndexHit::from_payload(point.score, &payload)
                    .ok_or_else(|| IndexError::engine(name, format!("point {:?} has an unreadable payload", point.id)))
            })
            .collect()
    }

    async fn scroll(&self, name: &str, after: Option<Uuid>, limit: usize) -> Result<Vec<StoredPoint>, IndexError> {
        let collection = self.collection(name).await?;
        let request = ScrollRequest {
            offset: after.map(PointId::Uuid),
            limit: Some(limit + 1),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let owned = name.to_owned();
        let shard = collection.shard.clone();
        let (records, _) =
            blocking(name, move || shard.scroll(request).map_err(|e| IndexError::engine(&owned, e))).await?;
        Ok(records
            .into_iter()
            .filter_map(|record| uuid_of(&record.id).map(|id| (id, record)))
            .filter(|(id, _)| Some(*id) != after)
            .take(limit)
            .map(|(id, record)| stored_point(id, record.payload, record.vector))
            .collect())
    }

    async fn count(&self, name: &str) -> Result<u64, IndexError> {
        let collection = self.collection(name).await?;
        let owned = name.to_owned();
        let shard = collection.shard.clone();
        blocking(name, move || {
            shard
                .count(qdrant_edge::CountRequest { filter: None, exact: true })
                .map(|count| count as u64)
                .map_err(|e| IndexError::engine(&owned, e))
        })
        .await
    }

    async fn set_bulk_load(&self, name: &str, bulk: bool) -> Result<(), IndexError> {
        let collection = self.collection(name).await?;
        if collection.bulk.load(Ordering::SeqCst) == bulk {
            return Ok(());
        }
        let owned = name.to_owned();
        let shard = collection.shard.clone();
        let seal_at = self.optimize_after.min(BULK_SEAL_POINTS);
        blocking(name, move || {
            let dense_dimensions = shard.config().vectors.get(DENSE).map(|params| params.size);
            if dense_dimensions.is_some() {
                shard.set_vector_hnsw_config(DENSE, dense_hnsw(bulk)).map_err(|e| IndexError::engine(&owned, e))?;
            }
            let optimizers = if bulk { bulk_optimizers(dense_dimensions, seal_at) } else { serving_optimizers() };
            shard.set_optimizers_config(optimizers).map_err(|e| IndexError::engine(&owned, e))
        })
        .await?;
        collection.bulk.store(bulk, Ordering::SeqCst);
        if !bulk {
            // Build the graphs and merge the sealed segments now, in the background.
            self.maybe_optimize(name, &collection, self.optimize_after);
        }
        tracing::info!(collection = %name, bulk, "vector_index_bulk_load");
        Ok(())
    }

    async fn set_alias(&self, _alias: &str, _collection: &str) -> Result<(), IndexError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), IndexError> {
        let root = self.root.clone();
        blocking("(root)", move || {
            std::fs::metadata(&root).map(|_| ()).map_err(|e| IndexError::engine(&root.display().to_string(), e))
        })
        .await
    }
}
