//! The vector index: the backend contract (qdrant-edge always; a Qdrant server when `QDRANT_URL` is set), and the
//! projection on each log backend: points for ready documents only, none orphaned, wrong-length vectors rejected,
//! blue/green rebuilds under load, and verification that names every difference.

use std::sync::Arc;
use std::time::Duration;

use dossier_actors::embed::{OpenAiEmbedder, OpenAiEmbedderConfig};
use dossier_actors::runtime::Runtime;
use dossier_actors::runtime::document::CommandRequest;
use dossier_events::document::{Chunk, DocumentCommand, DocumentEvent, DocumentStatus, encode_vector};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, StreamId};
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::rebuild::rebuild;
use dossier_projections::runner::{
    Projection, READ_MODEL, ReadModelProjection, RunnerConfig, RunnerError, RunnerState, initial_status, run_projection,
};
use dossier_projections::vector::edge::EdgeIndex;
use dossier_projections::vector::search::{FusionParams, MetadataFilter, PointFilter, SearchRequest, Searcher};
use dossier_projections::vector::verify::{PointDifference, verify_vector_index};
use dossier_projections::vector::{
    Bm25, Bm25Params, ChunkPoint, CollectionSpec, EmbeddingConfig, IndexError, IndexOp, SearchMode, SearchQuery,
    SparseVector, VectorIndex, VectorProjection, WriteChain, point_id,
};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::contract_tests;
use crate::pipeline::{config, settle, upload};
use crate::rebuild::{spawn_live_runner, spawn_writer};
use crate::support::mock_ollama::{MockOllama, embedding_for};
use crate::support::{Backend, Scratch};

contract_tests!(
    projection_indexes_ready_documents_and_leaves_no_orphans,
    a_following_vector_runner_moves_its_checkpoint_to_the_head_once_caught_up,
    vectors_of_the_wrong_length_stop_the_projection_naming_the_document,
    vector_rebuild_while_writer_appends_equals_a_fresh_replay,
    verify_names_missing_extra_and_different_points,
    cli_rebuilds_and_verifies_the_vector_index,
    skip_command_records_the_decision_and_moves_a_stopped_projection_past_the_event,
    search_takes_texts_from_the_read_model_and_leaves_out_chunks_it_does_not_serve,
);

const MODEL: &str = "stub-embed";
const DIMENSIONS: u32 = 8;

fn bm25() -> Arc<Bm25> {
    Arc::new(Bm25::new(Bm25Params::default()).expect("bm25"))
}

fn dense_config() -> EmbeddingConfig {
    EmbeddingConfig { dense: Some((MODEL.to_owned(), DIMENSIONS)) }
}

// ---------------------------------------------------------------------------------------------------------------
// The backend contract.

fn point(tenant: &str, document_id: Uuid, chunk_index: u32, text: &str, bm25: &Bm25) -> ChunkPoint {
    ChunkPoint {
        tenant_id: tenant.to_owned(),
        document_id,
        chunk_index,
        position: 7,
        text: text.to_owned(),
        byte_start: u64::from(chunk_index) * 100,
        byte_end: u64::from(chunk_index) * 100 + text.len() as u64,
        metadata: json!({ "lang": "en", "year": 2024 }).as_object().cloned().unwrap_or_default(),
        sparse: bm25.document(text),
        dense: Some(embedding_for(text, DIMENSIONS as usize)),
    }
}

fn query(tenant: &str, sparse: Option<SparseVector>, dense: Option<Vec<f32>>, limit: usize) -> SearchQuery {
    SearchQuery {
        sparse,
        dense,
        filter: PointFilter { tenant_id: Some(tenant.to_owned()), ..PointFilter::default() },
        limit,
        prefetch_limit: 50,
        rrf_k: 60,
    }
}

/// Every check of the [`VectorIndex`] contract, on one backend.
pub async fn index_contract(index: Arc<dyn VectorIndex>) {
    let bm25 = bm25();
    let name = format!("contract_{}", Uuid::now_v7().simple());
    let spec = CollectionSpec { name: name.clone(), dense_dimensions: Some(DIMENSIONS) };
    assert!(!index.collection_exists(&name).await.expect("exists"));
    index.ensure_collection(&spec).await.expect("create");
    index.ensure_collection(&spec).await.expect("creating twice is a no-op");
    assert!(index.collection_exists(&name).await.expect("exists"));

    let (proteins, herons, other_tenant) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let texts = [
        "Protein folding determines the shape of enzymes.",
        "Misfolded proteins aggregate in neurodegenerative disease.",
        "Chaperones assist protein folding in the cell.",
    ];
    let mut points: Vec<ChunkPoint> =
        texts.iter().enumerate().map(|(i, text)| point("acme", proteins, i as u32, text, &bm25)).collect();
    points.push(point("acme", herons, 0, "Herons wait motionless at the edge of the reeds.", &bm25));
    points.push(point("globex", other_tenant, 0, "Protein folding protein folding protein folding.", &bm25));
    index.apply(&name, vec![IndexOp::Upsert(points.clone())]).await.expect("upsert");
    index.apply(&name, vec![IndexOp::Upsert(points.clone())]).await.expect("upserting again is idempotent");
    assert_eq!(index.count(&name).await.expect("count"), 5);

    // Sparse: the tenant's chunks that mention the terms, best first; never another tenant's.
    let hits =
        index.search(&name, &query("acme", Some(bm25.query("protein folding")), None, 10)).await.expect("search");
    assert!(hits.len() >= 2, "{hits:?}");
    assert!(hits.iter().all(|hit| hit.document_id == proteins), "{hits:?}");
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score), "{hits:?}");
    assert!(matches!(hits[0].chunk_index, 0 | 2), "a chunk with both terms ranks first: {hits:?}");
    assert_eq!(hits[0].byte_start, u64::from(hits[0].chunk_index) * 100);
    let heron = index.search(&name, &query("acme", Some(bm25.query("heron")), None, 10)).await.expect("search");
    assert_eq!(heron.iter().map(|hit| hit.document_id).collect::<Vec<_>>(), vec![herons]);
    let foreign = index.search(&name, &query("initech", Some(bm25.query("protein")), None, 10)).await;
    assert_eq!(foreign.expect("search"), vec![], "a tenant with no points finds nothing");

    // Dense: the nearest vector is the chunk whose text it embeds.
    let dense = Some(embedding_for(texts[1], DIMENSIONS as usize));
    let hits = index.search(&name, &query("acme", None, dense.clone(), 2)).await.expect("dense");
    assert_eq!((hits[0].document_id, hits[0].chunk_index), (proteins, 1), "{hits:?}");
    assert!((hits[0].score - 1.0).abs() < 1e-4, "cosine of a vector with itself: {hits:?}");
    // Hybrid: both retrievers' candidates fused with RRF; a chunk first in both ranks first.
    let both = index.search(&name, &query("acme", Some(bm25.query("misfolded aggregate")), dense, 10)).await;
    let both = both.expect("hybrid");
    assert_eq!((both[0].document_id, both[0].chunk_index), (proteins, 1), "{both:?}");
    // Qdrant scores rank r (from 0) as 1 / (r + k): first in both lists with k = 60 gives 2/60.
    assert!((both[0].score - 2.0 / 60.0).abs() < 1e-4, "RRF of the first rank twice: {both:?}");

    // Filters: documents and metadata.
    let mut only_herons = query("acme", Some(bm25.query("protein heron")), None, 10);
    only_herons.filter.document_ids = vec![herons];
    let hits = index.search(&name, &only_herons).await.expect("search");
    assert!(hits.iter().all(|hit| hit.document_id == herons) && !hits.is_empty(), "{hits:?}");
    let mut wrong_year = query("acme", Some(bm25.query("protein")), None, 10);
    wrong_year.filter.metadata = vec![MetadataFilter { key: "year".into(), value: json!(1999) }];
    assert_eq!(index.search(&name, &wrong_year).await.expect("search"), vec![]);
    wrong_year.filter.metadata = vec![MetadataFilter { key: "year".into(), value: json!(2024) }];
    assert!(!index.search(&name, &wrong_year).await.expect("search").is_empty());

    // Writes: metadata, a shorter version, deleted documents.
    let metadata = json!({ "lang": "fr" }).as_object().cloned().unwrap_or_default();
    let set = IndexOp::SetMetadata { document_id: proteins, metadata: metadata.clone(), position: 42 };
    index
        .apply(&name, vec![set, IndexOp::DeleteChunksFrom { document_id: proteins, from_index: 1 }])
        .await
        .expect("ops");
    let stored = scroll_all(index.as_ref(), &name, 2).await;
    assert_eq!(stored.len(), 3, "chunks 1 and 2 of the protein document are gone: {stored:?}");
    let first = stored.iter().find(|p| p.id == point_id(proteins, 0)).expect("chunk 0 stays");
    assert_eq!(first.payload["metadata"], json!({ "lang": "fr" }));
    assert_eq!(first.payload["position"], json!(42));
    assert_eq!(first.payload["tenant"], json!("acme"));
    let mut expected_sparse = bm25.document(texts[0]);
    let mut pairs: Vec<_> = expected_sparse.indices.iter().copied().zip(expected_sparse.values.clone()).collect();
    pairs.sort_by_key(|(i, _)| *i);
    expected_sparse =
        SparseVector { indices: pairs.iter().map(|p| p.0).collect(), values: pairs.iter().map(|p| p.1).collect() };
    assert_eq!(first.sparse, expected_sparse, "the stored BM25 vector is the one written");
    assert_eq!(first.dense.as_ref().map(Vec::len), Some(DIMENSIONS as usize));
    index.apply(&name, vec![IndexOp::DeleteDocuments(vec![proteins, herons])]).await.expect("delete");
    let left = scroll_all(index.as_ref(), &name, 2).await;
    assert_eq!(left.iter().map(|p| p.id).collect::<Vec<_>>(), vec![point_id(other_tenant, 0)], "no orphans");

    // Bulk loading changes how the engine builds its indexes, never what a search finds.
    index.set_bulk_load(&name, true).await.expect("bulk on");
    index.set_bulk_load(&name, true).await.expect("bulk on twice is a no-op");
    let late = Uuid::now_v7();
    index
        .apply(&name, vec![IndexOp::Upsert(vec![point("acme", late, 0, "Egrets nest in colonies.", &bm25)])])
        .await
        .expect("bulk upsert");
    let hits = index.search(&name, &query("acme", Some(bm25.query("egrets")), None, 5)).await.expect("search in bulk");
    assert_eq!(hits.iter().map(|hit| hit.document_id).collect::<Vec<_>>(), vec![late]);
    let egret = Some(embedding_for("Egrets nest in colonies.", DIMENSIONS as usize));
    let hits = index.search(&name, &query("acme", None, egret.clone(), 1)).await.expect("dense search in bulk");
    assert_eq!(hits[0].document_id, late, "{hits:?}");
    index.set_bulk_load(&name, false).await.expect("bulk off");
    let hits = index.search(&name, &query("acme", None, egret, 1)).await.expect("dense search after bulk");
    assert_eq!(hits[0].document_id, late, "{hits:?}");
    index.apply(&name, vec![IndexOp::DeleteDocuments(vec![late])]).await.expect("delete");

    // A point whose sparse vector is malformed is refused, naming the document.
    let mut bad = point("acme", herons, 0, "text", &bm25);
    bad.sparse = SparseVector { indices: vec![1, 1], values: vec![0.5] };
    let error = index.apply(&name, vec![IndexOp::Upsert(vec![bad])]).await.expect_err("malformed sparse vector");
    assert!(error.to_string().contains(&herons.to_string()), "{error}");

    // Queued writes apply in order; once one fails, the rest of its chain (and its flush) is not applied, so the
    // index holds a prefix of the chain. A new chain writes again.
    let queued = Uuid::now_v7();
    let chain = WriteChain::default();
    let mut wrong_length = point("acme", queued, 1, "Storks migrate in flocks.", &bm25);
    wrong_length.dense = Some(vec![0.5; 3]);
    let first =
        index.apply_queued(&name, vec![IndexOp::Upsert(vec![point("acme", queued, 0, "Storks.", &bm25)])], &chain);
    let first = first.await.expect("queue");
    let second = index.apply_queued(&name, vec![IndexOp::Upsert(vec![wrong_length])], &chain).await.expect("queue");
    let third = point("acme", queued, 2, "Cranes dance.", &bm25);
    let third = index.apply_queued(&name, vec![IndexOp::Upsert(vec![third])], &chain).await.expect("queue");
    let flush = index.flush_queued(&name, &chain).await.expect("queue");
    first.applied().await.expect("the first write applies");
    second.applied().await.expect_err("a dense vector of the wrong length is refused");
    let skipped = third.applied().await.expect_err("the write after the failed one is not applied");
    assert!(skipped.to_string().contains("not applied"), "{skipped}");
    flush.applied().await.expect_err("nor is the chain's flush");
    let chunks = |indexes: &[u32]| {
        let mut ids: Vec<Uuid> = indexes.iter().map(|i| point_id(queued, *i)).collect();
        ids.sort();
        ids
    };
    let only_queued = |points: Vec<dossier_projections::vector::StoredPoint>| {
        let document = json!(queued.to_string());
        let mut ids: Vec<Uuid> =
            points.into_iter().filter(|p| p.payload["document"] == document).map(|p| p.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(only_queued(scroll_all(index.as_ref(), &name, 100).await), chunks(&[0]), "a prefix of the chain");
    let again = WriteChain::default();
    let third = point("acme", queued, 2, "Cranes dance.", &bm25);
    let third = index.apply_queued(&name, vec![IndexOp::Upsert(vec![third])], &again).await.expect("queue");
    let flush = index.flush_queued(&name, &again).await.expect("queue");
    third.applied().await.expect("a new chain applies");
    flush.applied().await.expect("and flushes");
    assert_eq!(only_queued(scroll_all(index.as_ref(), &name, 100).await), chunks(&[0, 2]));

    index.drop_collection(&name).await.expect("drop");
    index.drop_collection(&name).await.expect("dropping twice is a no-op");
    assert!(!index.collection_exists(&name).await.expect("exists"));
    let missing = index.search(&name, &query("acme", Some(bm25.query("protein")), None, 1)).await;
    assert!(matches!(missing, Err(IndexError::MissingCollection(_))), "{missing:?}");
}

async fn scroll_all(index: &dyn VectorIndex, name: &str, page: usize) -> Vec<dossier_projections::vector::StoredPoint> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let batch = index.scroll(name, after, page).await.expect("scroll");
        let Some(last) = batch.last() else { return all };
        after = Some(last.id);
        let full = batch.len() == page;
        all.extend(batch);
        if !full {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_index_meets_the_contract() {
    let dir = std::env::temp_dir().join(format!("dossier-edge-{}", Uuid::now_v7()));
    let index = EdgeIndex::open(&dir).expect("open");
    index_contract(Arc::new(index)).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_index_survives_a_reopen_and_builds_its_graph() {
    let dir = std::env::temp_dir().join(format!("dossier-edge-{}", Uuid::now_v7()));
    let bm25 = bm25();
    let spec = CollectionSpec { name: "c_g1".into(), dense_dimensions: Some(DIMENSIONS) };
    let document = Uuid::now_v7();
    {
        let index = EdgeIndex::open(&dir).expect("open");
        index.ensure_collection(&spec).await.expect("create");
        let points = (0..40).map(|i| point("acme", document, i, &format!("chunk number {i} about herons"), &bm25));
        index.apply("c_g1", vec![IndexOp::Upsert(points.collect())]).await.expect("upsert");
        index.optimize("c_g1").await.expect("optimize");
    }
    let index = EdgeIndex::open(&dir).expect("reopen");
    assert_eq!(index.count("c_g1").await.expect("count"), 40);
    let hits = index.search("c_g1", &query("acme", Some(bm25.query("herons")), None, 5)).await.expect("search");
    assert_eq!(hits.len(), 5);
    drop(index);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_writes_after_a_reopen_change_the_points_written_before_it() {
    // qdrant-edge ignores an operation numbered below the version of the point it touches. The vendored copy no
    // longer numbers operations with its WAL (vendor/README.md), so a reopened shard must continue from the highest
    // number its segments have seen: starting again from the WAL's (empty) count, every write below would be lost.
    let dir = std::env::temp_dir().join(format!("dossier-edge-{}", Uuid::now_v7()));
    let bm25 = bm25();
    let spec = CollectionSpec { name: "reopen_g1".into(), dense_dimensions: Some(DIMENSIONS) };
    let (kept, dropped) = (Uuid::now_v7(), Uuid::now_v7());
    {
        let index = EdgeIndex::open(&dir).expect("open");
        index.ensure_collection(&spec).await.expect("create");
        for round in 0..3 {
            let points = [kept, dropped]
                .into_iter()
                .flat_map(|document| (0..20).map(move |i| (document, i)).collect::<Vec<_>>());
            let points = points.map(|(document, i)| point("acme", document, i, &format!("heron {round} {i}"), &bm25));
            index.apply("reopen_g1", vec![IndexOp::Upsert(points.collect())]).await.expect("upsert");
        }
    }
    let index = EdgeIndex::open(&dir).expect("reopen");
    let rewritten = point("acme", kept, 0, "egrets rewritten after the reopen", &bm25);
    let metadata: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({ "shelf": "B" })).unwrap();
    index
        .apply(
            "reopen_g1",
            vec![
                IndexOp::Upsert(vec![rewritten]),
                IndexOp::SetMetadata { document_id: kept, metadata, position: 99 },
                IndexOp::DeleteDocuments(vec![dropped]),
            ],
        )
        .await
        .expect("writes after the reopen");
    let points = scroll_all(&index, "reopen_g1", 100).await;
    assert_eq!(points.len(), 20, "the deleted document's points are gone");
    assert!(points.iter().all(|p| p.payload["document"] == json!(kept.to_string())));
    assert!(points.iter().all(|p| p.payload["metadata"] == json!({ "shelf": "B" }) && p.payload["position"] == 99));
    let egrets = index.search("reopen_g1", &query("acme", Some(bm25.query("egrets")), None, 5)).await.expect("search");
    let found: Vec<(Uuid, u32)> = egrets.iter().map(|hit| (hit.document_id, hit.chunk_index)).collect();
    assert_eq!(found, vec![(kept, 0)], "the chunk rewritten after the reopen");
    drop(index);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_bulk_loading_defers_optimizing_until_it_ends() {
    // Parts of 200 points with 1,024-dimension vectors (800 KiB each): above the size at which an optimize run of a
    // bulk-loading collection seals, and each part alone enough to start a background run of a serving one.
    const WIDE: u32 = 1_024;
    const PART: usize = 200;
    let dir = std::env::temp_dir().join(format!("dossier-edge-{}", Uuid::now_v7()));
    let bm25 = bm25();
    let spec = CollectionSpec { name: "bulk_g2".into(), dense_dimensions: Some(WIDE) };
    let document = Uuid::now_v7();
    let wide_point = |index: usize, text: &str| ChunkPoint {
        dense: Some(embedding_for(text, WIDE as usize)),
        ..point("acme", document, index as u32, text, &bm25)
    };
    {
        let index = EdgeIndex::open(&dir).expect("open").with_optimize_after(PART);
        index.ensure_collection(&spec).await.expect("create");
        index.set_bulk_load("bulk_g2", true).await.expect("bulk on");
        for part in 0..6 {
            let points = (part * PART..(part + 1) * PART)
                .map(|i| wide_point(i, &format!("chunk {i} about herons and egrets {}", i % 7)))
                .collect();
            index.apply("bulk_g2", vec![IndexOp::Upsert(points)]).await.expect("upsert");
        }
        // A background run would have sealed a segment per part (give one time to start and finish).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let filling = index.segment_count("bulk_g2").await.expect("segments");
        assert_eq!(filling, 1, "bulk loading fills one appendable segment and optimizes nothing on its own");
        let hits =
            index.search("bulk_g2", &query("acme", Some(bm25.query("herons")), None, 2_000)).await.expect("search");
        assert_eq!(hits.len(), 6 * PART, "every point is searchable while bulk loading");
        // An explicit run while bulk loading seals without merging.
        index.optimize("bulk_g2").await.expect("seal");
        let sealed = index.segment_count("bulk_g2").await.expect("segments");
        assert!(sealed > 1, "an explicit optimize while bulk loading seals: {sealed} segments");
        index.set_bulk_load("bulk_g2", false).await.expect("bulk off");
        index.optimize("bulk_g2").await.expect("serving optimize");
        assert_eq!(index.count("bulk_g2").await.expect("count"), 6 * PART as u64);
    }
    // Serving is what a reopened collection keeps: another part does not start sealing again.
    let index = EdgeIndex::open(&dir).expect("reopen").with_optimize_after(PART);
    let before = index.segment_count("bulk_g2").await.expect("segments");
    let points = (6 * PART..7 * PART).map(|i| wide_point(i, "late herons")).collect();
    index.apply("bulk_g2", vec![IndexOp::Upsert(points)]).await.expect("upsert");
    index.optimize("bulk_g2").await.expect("optimize");
    let after = index.segment_count("bulk_g2").await.expect("segments");
    assert!(after <= before.max(2), "a serving collection keeps its segments: {before} -> {after}");
    assert_eq!(index.count("bulk_g2").await.expect("count"), 7 * PART as u64);
    drop(index);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------------------------
// The projection.

/// Fields drop in order: the index (whose shards flush on drop) before the scratch directory goes.
struct Fixture {
    projection: Arc<VectorProjection>,
    index: Arc<dyn VectorIndex>,
    log: Arc<dyn EventStore>,
    read_model: Arc<dyn ReadModelStore>,
    mock: MockOllama,
    scratch: Scratch,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let scratch = Scratch::new(backend).await;
        let log = scratch.open().await;
        let read_model = scratch.open_read_model().await;
        let index: Arc<dyn VectorIndex> =
            Arc::new(EdgeIndex::open(&scratch.data_dir().join("vectors")).expect("edge index"));
        let projection = Arc::new(VectorProjection::new(
            Arc::clone(&log),
            Arc::clone(&index),
            Arc::clone(&read_model),
            dense_config(),
            bm25(),
        ));
        let mock = MockOllama::start().await;
        Self { projection, index, log, read_model, mock, scratch }
    }

    async fn runtime(&self) -> Runtime {
        let mut settings = OpenAiEmbedderConfig::new(self.mock.base_url(), MODEL);
        settings.dimensions = Some(DIMENSIONS);
        let mut config = config(&self.scratch);
        config.embedder = Some(Arc::new(OpenAiEmbedder::new(settings).expect("embedder")));
        Runtime::start(Arc::clone(&self.log), config).await.expect("runtime")
    }

    /// Runs the read model (whose chunks give search hits their text) and then the index to the log's head.
    async fn run_to_head(&self) -> (Result<(), RunnerError>, dossier_projections::runner::ProjectionStatus) {
        self.project_read_model().await;
        self.run_index_to_head().await
    }

    /// Brings the read model's live generation to the log's head.
    async fn project_read_model(&self) {
        let projection = ReadModelProjection::new(Arc::clone(&self.read_model));
        let generation = self.read_model.live_generation(READ_MODEL).await.expect("generation");
        let (status, _) = watch::channel(initial_status(READ_MODEL, generation));
        let head = self.log.head_position().await.expect("head");
        let config = RunnerConfig { batch_size: 7, batch_wait: Duration::from_millis(5) };
        run_projection(Arc::clone(&self.log), &projection, generation, config, status, Some(head))
            .await
            .expect("read model projection");
    }

    async fn run_index_to_head(&self) -> (Result<(), RunnerError>, dossier_projections::runner::ProjectionStatus) {
        let generation = self.read_model.live_generation(self.projection.name()).await.expect("generation");
        let (status, watch) = watch::channel(initial_status(self.projection.name(), generation));
        let head = self.log.head_position().await.expect("head");
        let config = RunnerConfig { batch_size: 7, batch_wait: Duration::from_millis(5) };
        let run =
            run_projection(Arc::clone(&self.log), self.projection.as_ref(), generation, config, status, Some(head));
        let result = tokio::time::timeout(Duration::from_secs(60), run).await.expect("runner finished in time");
        let last = watch.borrow().clone();
        (result, last)
    }

    fn searcher(&self) -> Searcher {
        Searcher::new(
            Arc::clone(&self.index),
            Arc::clone(&self.read_model),
            dense_config(),
            bm25(),
            FusionParams::default(),
        )
    }

    async fn verify(&self) -> Vec<PointDifference> {
        let config = dense_config();
        verify_vector_index(self.log.as_ref(), self.index.as_ref(), self.read_model.as_ref(), &config, bm25())
            .await
            .expect("verify")
    }
}

fn sparse_request(text: &str) -> SearchRequest {
    SearchRequest {
        tenant_id: "tenant-a".into(),
        text: text.into(),
        dense: None,
        mode: SearchMode::Sparse,
        top_k: 10,
        document_ids: vec![],
        metadata: vec![],
    }
}

fn command(document_id: Uuid, command: DocumentCommand) -> CommandRequest {
    CommandRequest { document_id, command, metadata: EventMetadata::new("tenant-a", "alice"), expected_version: None }
}

async fn projection_indexes_ready_documents_and_leaves_no_orphans(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let texts = [
        ("heron.txt", "The grey heron waits in the reeds for fish. ".repeat(12)),
        ("kiln.txt", "The potter fires the kiln until the glaze turns glassy. ".repeat(12)),
        ("comet.txt", "A comet's tail always points away from the sun. ".repeat(12)),
    ];
    let mut ids = Vec::new();
    for (name, text) in &texts {
        ids.push(runtime.upload(upload(name, text.as_bytes())).await.expect("upload").document_id);
    }
    for id in &ids {
        assert_eq!(settle(&runtime, *id).await, DocumentStatus::Ready);
    }
    let (result, status) = fixture.run_to_head().await;
    result.expect("projection");
    assert_eq!(status.state, RunnerState::Running);
    let searcher = fixture.searcher();
    for (word, id) in [("heron", ids[0]), ("glaze", ids[1]), ("comet", ids[2])] {
        let hits = searcher.search(&sparse_request(word)).await.expect("search");
        assert!(!hits.is_empty() && hits.iter().all(|hit| hit.document_id == id), "{word}: {hits:?}");
    }
    let mut other_tenant = sparse_request("heron");
    other_tenant.tenant_id = "tenant-b".into();
    assert_eq!(searcher.search(&other_tenant).await.expect("search"), vec![]);
    let dense = SearchRequest {
        mode: SearchMode::Hybrid,
        dense: Some(embedding_for("kiln glaze", DIMENSIONS as usize)),
        ..sparse_request("kiln glaze")
    };
    let hybrid = searcher.search(&dense).await.expect("hybrid");
    assert_eq!(hybrid[0].document_id, ids[1], "{hybrid:?}");
    assert_eq!(fixture.verify().await, vec![]);

    // Delete one, reprocess another, change a third's metadata: no orphan points, payloads follow.
    runtime.execute(command(ids[0], DocumentCommand::Delete { reason: None })).await.expect("delete");
    runtime.execute(command(ids[1], DocumentCommand::RequestReprocess { reason: None })).await.expect("reprocess");
    let mut set = serde_json::Map::new();
    set.insert("topic".into(), json!("astronomy"));
    runtime.execute(command(ids[2], DocumentCommand::UpdateMetadata { set, unset: vec![] })).await.expect("metadata");
    let (result, _) = fixture.run_to_head().await;
    result.expect("projection");
    assert_eq!(searcher.search(&sparse_request("heron")).await.expect("search"), vec![], "deleted: no points");
    let mut astronomy = sparse_request("comet");
    astronomy.metadata = vec![MetadataFilter { key: "topic".into(), value: json!("astronomy") }];
    let found = searcher.search(&astronomy).await.expect("search");
    assert!(!found.is_empty() && found.iter().all(|hit| hit.document_id == ids[2]), "{found:?}");
    astronomy.metadata[0].value = json!("geology");
    assert_eq!(searcher.search(&astronomy).await.expect("search"), vec![]);
    assert_eq!(fixture.verify().await, vec![]);
    settle(&runtime, ids[1]).await;
    let (result, _) = fixture.run_to_head().await;
    result.expect("projection");
    runtime.shutdown();
    assert!(!searcher.search(&sparse_request("glaze")).await.expect("search").is_empty(), "reprocessed and ready");
    assert_eq!(fixture.verify().await, vec![]);
    let generation = fixture.read_model.live_generation(fixture.projection.name()).await.expect("generation");
    let stored = scroll_all(fixture.index.as_ref(), &dense_config().collection(generation), 100).await;
    let deleted = json!(ids[0].to_string());
    assert!(stored.iter().all(|p| p.payload["document"] != deleted), "no point of the deleted document remains");
    assert!(stored.iter().all(|p| p.dense.is_some()), "every point carries its dense vector");
}

async fn search_takes_texts_from_the_read_model_and_leaves_out_chunks_it_does_not_serve(backend: Backend) {
    // ADR 0016: points carry no text; a hit gets its chunk from the read model, and a hit the read model does not
    // serve (not projected there yet, deleted there, re-chunked) is left out.
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let text = "The grey heron waits in the reeds for fish. ".repeat(40);
    let id = runtime.upload(upload("heron.txt", text.as_bytes())).await.expect("upload").document_id;
    assert_eq!(settle(&runtime, id).await, DocumentStatus::Ready);
    let (result, _) = fixture.run_index_to_head().await;
    result.expect("projection");
    let generation = fixture.read_model.live_generation(fixture.projection.name()).await.expect("generation");
    let stored = scroll_all(fixture.index.as_ref(), &dense_config().collection(generation), 100).await;
    assert!(!stored.is_empty(), "the document's points are in the index");
    assert!(stored.iter().all(|point| point.payload.get("text").is_none()), "no text in the index");
    let searcher = fixture.searcher();
    assert_eq!(searcher.search(&sparse_request("heron")).await.expect("search"), vec![], "not in the read model yet");

    fixture.project_read_model().await;
    let hits = searcher.search(&sparse_request("heron")).await.expect("search");
    assert_eq!(hits.len(), stored.len(), "every chunk found once the read model serves it: {hits:?}");
    let read_generation = fixture.read_model.live_generation(READ_MODEL).await.expect("generation");
    for hit in &hits {
        let chunk = fixture.read_model.chunks(read_generation, id, hit.chunk_index, 1).await.expect("chunks");
        assert_eq!(hit.text, chunk[0].text, "the read model's text");
        assert_eq!(hit.text, text[hit.byte_start as usize..hit.byte_end as usize], "the text of the byte range");
    }

    // Deleted in the read model before the index catches up: the hits are no longer served.
    runtime.execute(command(id, DocumentCommand::Delete { reason: None })).await.expect("delete");
    runtime.shutdown();
    fixture.project_read_model().await;
    assert_eq!(searcher.search(&sparse_request("heron")).await.expect("search"), vec![], "deleted in the read model");
}

/// Uploads each (filename, text), then waits for each document to be ready or failed.
async fn upload_and_settle(
    runtime: &Runtime,
    files: impl Iterator<Item = (String, String)>,
) -> Vec<(Uuid, DocumentStatus)> {
    let mut ids = Vec::new();
    for (name, text) in files {
        ids.push(runtime.upload(upload(&name, text.as_bytes())).await.expect("upload").document_id);
    }
    let mut settled = Vec::new();
    for id in ids {
        settled.push((id, settle(runtime, id).await));
    }
    settled
}

async fn a_following_vector_runner_moves_its_checkpoint_to_the_head_once_caught_up(backend: Backend) {
    // The vector writer moves a batch's checkpoint with the next batch (so the index's writer never waits for a
    // flush); a runner that has caught up must still settle the last one, or it would stay a batch behind.
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let herons = (0..3)
        .map(|i| (format!("heron-{i}.txt"), format!("Heron number {i} waits in the reeds for fish. ").repeat(12)));
    for (_, status) in upload_and_settle(&runtime, herons).await {
        assert_eq!(status, DocumentStatus::Ready);
    }
    runtime.shutdown();
    let head = fixture.log.head_position().await.expect("head");
    let name = fixture.projection.name().to_owned();
    let generation = fixture.read_model.live_generation(&name).await.expect("generation");
    let (status, watch) = watch::channel(initial_status(&name, generation));
    let config = RunnerConfig { batch_size: 7, batch_wait: Duration::from_millis(5) };
    let (log, projection) = (Arc::clone(&fixture.log), Arc::clone(&fixture.projection));
    let runner =
        tokio::spawn(async move { run_projection(log, projection.as_ref(), generation, config, status, None).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let durable = loop {
        let checkpoint = fixture.read_model.checkpoint(&name, generation).await.expect("checkpoint");
        let position = checkpoint.map_or(0, |checkpoint| checkpoint.position);
        if position == head || tokio::time::Instant::now() > deadline {
            break position;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(durable, head, "the stored checkpoint reaches the head while the runner waits for events");
    assert_eq!(watch.borrow().checkpoint, head, "the status reports the stored checkpoint");
    assert!(!runner.is_finished(), "the runner still follows the log");
    fixture.project_read_model().await;
    let hits = fixture.searcher().search(&sparse_request("heron")).await.expect("search");
    assert_eq!(hits.iter().map(|hit| hit.document_id).collect::<std::collections::HashSet<_>>().len(), 3, "{hits:?}");
    runner.abort();
}

async fn vectors_of_the_wrong_length_stop_the_projection_naming_the_document(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let document_id = Uuid::now_v7();
    let chunks = vec![Chunk { index: 0, text: "one chunk".into(), byte_start: 0, byte_end: 9 }];
    let events: Vec<DocumentEvent> = vec![
        DocumentEvent::DocumentUploaded(
            serde_json::from_value(json!({
                "document_id": document_id, "filename": "a.txt", "media_type": "text/plain",
                "blob": { "sha256": "0".repeat(64), "size": 9 }, "metadata": {}
            }))
            .expect("uploaded"),
        ),
        DocumentEvent::DocumentParsed(
            serde_json::from_value(json!({
                "text_sha256": "1".repeat(64), "text_length": 9, "parser": "text"
            }))
            .expect("parsed"),
        ),
        DocumentEvent::DocumentChunked(
            serde_json::from_value(json!({
                "chunker": { "max_chars": 200, "overlap": 20 }, "chunks": chunks
            }))
            .expect("chunked"),
        ),
        DocumentEvent::ChunksEmbedded(dossier_events::document::ChunksEmbedded {
            model: MODEL.into(),
            dimensions: 4,
            vectors: vec![encode_vector(&[0.5; 4])],
        }),
    ];
    let events = events.iter().map(|event| event.to_new_event().expect("encode")).collect();
    let appended = fixture
        .log
        .append(
            &StreamId::for_document(document_id),
            ExpectedVersion::NoStream,
            events,
            EventMetadata::new("tenant-a", "mallory"),
        )
        .await
        .expect("append");
    let embedded_at = appended.first_position + 3;
    let (result, status) = fixture.run_to_head().await;
    let error = result.expect_err("rejected");
    assert!(matches!(error, RunnerError::Poison(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains(&document_id.to_string()), "{message}");
    assert!(message.contains("4 dimensions") && message.contains(&format!("position {embedded_at}")), "{message}");
    assert!(matches!(&status.state, RunnerState::Stopped { position, .. } if *position == embedded_at), "{status:?}");
    let checkpoint = fixture.read_model.checkpoint(fixture.projection.name(), 1).await.expect("checkpoint");
    let checkpoint = checkpoint.expect("recorded");
    assert_eq!(checkpoint.state, "stopped");
    assert!(checkpoint.position < embedded_at);
}

async fn vector_rebuild_while_writer_appends_equals_a_fresh_replay(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let seeds = (0..20).map(|i| (format!("seed-{i}.txt"), format!("seed document {i} about lanterns ").repeat(30)));
    let seeded: Vec<Uuid> = upload_and_settle(&runtime, seeds).await.into_iter().map(|(id, _)| id).collect();
    let projection: Arc<dyn Projection> = fixture.projection.clone();
    let live = spawn_live_runner(Arc::clone(&fixture.log), Arc::clone(&projection));
    let writer = spawn_writer(&runtime, 30);
    let (status, _) = watch::channel(initial_status(projection.name(), 0));
    let config = RunnerConfig { batch_size: 20, batch_wait: Duration::from_millis(5) };
    let report = rebuild(Arc::clone(&fixture.log), projection.as_ref(), config, status).await.expect("rebuild");
    assert_eq!((report.from_generation, report.to_generation), (1, 2));
    let written = writer.await.expect("writer");
    for id in &written {
        settle(&runtime, *id).await;
    }
    // The live runner follows generation 2 now; wait until it has everything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let head = fixture.log.head_position().await.expect("head");
        let checkpoint = fixture.read_model.checkpoint(projection.name(), 2).await.expect("checkpoint");
        if checkpoint.is_some_and(|c| c.position == head) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "live runner did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    live.abort();
    runtime.shutdown();
    let config = dense_config();
    assert!(!fixture.index.collection_exists(&config.collection(1)).await.expect("exists"), "old generation dropped");
    assert_eq!(fixture.verify().await, vec![], "the rebuilt index holds exactly the points the log implies");
    let ready = seeded.len() + written.len();
    fixture.project_read_model().await;
    let searcher = fixture.searcher();
    let hits = searcher.search(&SearchRequest { top_k: 1_000, ..sparse_request("document") }).await.expect("search");
    let documents: std::collections::HashSet<Uuid> = hits.iter().map(|hit| hit.document_id).collect();
    assert_eq!(documents.len(), ready, "every ready document is searchable after the switch");
}

async fn verify_names_missing_extra_and_different_points(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let text = format!("verification sample {i} with several words ").repeat(15);
        ids.push(runtime.upload(upload(&format!("{i}.txt"), text.as_bytes())).await.expect("upload").document_id);
    }
    for id in &ids {
        settle(&runtime, *id).await;
    }
    runtime.shutdown();
    fixture.run_to_head().await.0.expect("projection");
    assert_eq!(fixture.verify().await, vec![]);

    let collection = dense_config().collection(1);
    let stray = Uuid::now_v7();
    let bm25 = bm25();
    let mut orphan = point("tenant-a", stray, 0, "a point no event implies", &bm25);
    orphan.dense = Some(embedding_for("x", DIMENSIONS as usize));
    let changed = json!({ "owner": "mallory" }).as_object().cloned().unwrap_or_default();
    fixture
        .index
        .apply(
            &collection,
            vec![
                IndexOp::DeleteChunksFrom { document_id: ids[0], from_index: 1 },
                IndexOp::Upsert(vec![orphan]),
                IndexOp::SetMetadata { document_id: ids[2], metadata: changed, position: 1 },
            ],
        )
        .await
        .expect("tamper");
    let differences = fixture.verify().await;
    assert!(
        differences.iter().any(
            |d| matches!(d, PointDifference::MissingPoint { document_id, chunk_index: 1, .. } if *document_id == ids[0])
        ),
        "{differences:?}"
    );
    assert!(
        differences.contains(&PointDifference::ExtraPoint { point_id: point_id(stray, 0), document_id: Some(stray) }),
        "{differences:?}"
    );
    assert!(
        differences.iter().any(|d| matches!(d, PointDifference::DifferentPoint { document_id, fields, .. }
            if *document_id == ids[2] && fields == &vec!["metadata".to_owned(), "position".to_owned()])),
        "{differences:?}"
    );
    assert!(
        differences
            .iter()
            .all(|d| !matches!(d, PointDifference::DifferentPoint { document_id, .. } if *document_id == ids[1]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_index_meets_the_contract_when_qdrant_url_is_set() {
    let Some(url) = std::env::var("QDRANT_URL").ok().filter(|url| !url.is_empty()) else {
        eprintln!("QDRANT_URL is not set: the Qdrant server contract is not run");
        return;
    };
    let api_key = std::env::var("QDRANT_API_KEY").ok();
    let index = dossier_projections::vector::server::ServerIndex::connect(&url, api_key).expect("connect");
    index_contract(Arc::new(index)).await;
}

async fn run_binary(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().expect("run dossier")).await.expect("join")
}

/// `dossier rebuild vector_index` and `dossier verify --projections` through the binary, BM25 only (no model).
async fn cli_rebuilds_and_verifies_the_vector_index(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let docs = scratch.dir.join("docs");
    std::fs::create_dir_all(&docs).expect("docs dir");
    for (name, text) in [("a.txt", "Lighthouses guide ships at night. "), ("b.txt", "Bees dance to share directions. ")]
    {
        std::fs::write(docs.join(name), text.repeat(20)).expect("write doc");
    }
    let mut ingest = scratch.dossier();
    ingest.args(["ingest", "--quiet", "--tenant", "tenant-a"]).arg(&docs);
    let output = run_binary(ingest).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let mut rebuild = scratch.dossier();
    rebuild.args(["rebuild", "vector_index", "--quiet"]);
    let output = run_binary(rebuild).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("rebuild report");
    assert_eq!(report["to_generation"], 2, "{report}");

    let mut verify = scratch.dossier();
    verify.args(["verify", "--projections"]);
    let output = run_binary(verify).await;
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Remove one document's points behind dossier's back: verify names them and fails.
    let config = EmbeddingConfig { dense: None };
    let index = EdgeIndex::open(&scratch.data_dir().join("vectors")).expect("open index");
    let stored = scroll_all(&index, &config.collection(2), 100).await;
    assert!(stored.len() >= 2, "both documents have points: {stored:?}");
    let victim: Uuid = stored[0].payload["document"].as_str().expect("document").parse().expect("uuid");
    index.apply(&config.collection(2), vec![IndexOp::DeleteDocuments(vec![victim])]).await.expect("tamper");
    drop(index);
    let mut verify = scratch.dossier();
    verify.args(["verify", "--projections"]);
    let output = run_binary(verify).await;
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("missing_point") && stdout.contains(&victim.to_string()), "{stdout}");
    assert!(stdout.contains("\"projection\":\"vector_index\""), "{stdout}");
}

/// A poison event stops the projection; `dossier projections skip` records the decision in the log and moves it on.
async fn skip_command_records_the_decision_and_moves_a_stopped_projection_past_the_event(backend: Backend) {
    let fixture = Fixture::new(backend).await;
    let runtime = fixture.runtime().await;
    let document = runtime.upload(upload("a.txt", b"Otters hold hands while they sleep.")).await.expect("upload");
    settle(&runtime, document.document_id).await;
    runtime.shutdown();
    let bogus = dossier_events::NewEvent::new("DocumentTeleported", 1, json!({ "to": "mars" }));
    let stream = StreamId::for_document(document.document_id);
    let poison =
        fixture.log.append(&stream, ExpectedVersion::Any, vec![bogus], EventMetadata::new("tenant-a", "mallory"));
    let poison = poison.await.expect("append").first_position;
    let (result, _) = fixture.run_index_to_head().await;
    assert!(matches!(result, Err(RunnerError::Poison(_))), "{result:?}");

    let mut wrong = fixture.scratch.dossier();
    wrong.env("EMBEDDING_MODEL", MODEL).env("EMBEDDING_DIMENSIONS", DIMENSIONS.to_string());
    wrong.env("LLM_BASE_URL", fixture.mock.base_url());
    wrong.args(["projections", "skip", "vector_index", "--reason", "test", "--position"]).arg((poison + 1).to_string());
    let output = run_binary(wrong).await;
    assert!(!output.status.success(), "skipping another position than the poison is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("not stopped at position {}", poison + 1)));

    let mut skip = fixture.scratch.dossier();
    skip.env("EMBEDDING_MODEL", MODEL).env("EMBEDDING_DIMENSIONS", DIMENSIONS.to_string());
    skip.env("LLM_BASE_URL", fixture.mock.base_url()).env("USER", "ops-ana");
    skip.args(["projections", "skip", "vector_index", "--reason", "teleportation is not a thing", "--position"]);
    skip.arg(poison.to_string());
    let output = run_binary(skip).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("skip report");
    assert_eq!(report["event_type"], "DocumentTeleported", "{report}");

    let name = fixture.projection.name().to_owned();
    let record = fixture.log.read_stream(&dossier_projections::skip::skip_stream(&name).expect("stream"), 1, 10).await;
    let record = record.expect("read");
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].metadata.actor, "ops-ana");
    assert!(record[0].data.as_str().contains("teleportation is not a thing"));
    let checkpoint = fixture.read_model.checkpoint(&name, 1).await.expect("checkpoint").expect("exists");
    assert!(checkpoint.position < poison && checkpoint.state == "running", "{checkpoint:?}");
    let (result, status) = fixture.run_index_to_head().await;
    result.expect("runs again");
    assert_eq!(status.state, RunnerState::Running);
    assert_eq!(fixture.verify().await, vec![], "verification honours the recorded skip");
}
