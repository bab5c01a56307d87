//! `dossier bench rebuild`: builds a synthetic log (documents with chunks of corpus-like prose and 384-dimension
//! vectors, plus metadata updates to reach the event count), then rebuilds the read model and the vector index (qdrant-edge) from it and
//! prints events/s, points/s, total times and peak RSS as JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_projections::read_model::ReadModelStore;
use dossier_projections::read_model::postgres::PostgresReadModel;
use dossier_projections::read_model::sqlite::SqliteReadModel;
use dossier_projections::rebuild::{rebuild, rebuild_read_model};
use dossier_projections::runner::{Projection, READ_MODEL, RunnerConfig, initial_status};
use dossier_projections::vector::edge::EdgeIndex;
use dossier_projections::vector::{Bm25, Bm25Params, EmbeddingConfig, VectorIndex, VectorProjection};
use serde::Serialize;

use crate::cli::BenchBackend;
use crate::commands::bench::{ScratchStore, print};
use crate::commands::bench_ingest::cpu_seconds;
use crate::commands::synthetic::SyntheticText;
use crate::commands::synthetic_log::{LogShape, SYNTHETIC_MODEL, fill};
use crate::error::AppError;
use crate::settings::Settings;

/// The shape of the synthetic log and of the rebuild.
#[derive(Clone, Copy, Debug)]
pub struct RebuildBench {
    /// The synthetic log.
    pub log: LogShape,
    /// Events per rebuild batch.
    pub batch_size: usize,
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    backend: &'static str,
    events: u64,
    documents: usize,
    chunks: usize,
    dimensions: usize,
    chunk_chars: usize,
    batch_size: usize,
    fill_seconds: f64,
    read_model_rebuild_seconds: f64,
    read_model_events_per_sec: f64,
    vector_index_backend: &'static str,
    vector_index_rebuild_seconds: f64,
    vector_index_points: u64,
    vector_index_points_per_sec: f64,
    vector_index_events_per_sec: f64,
    vector_index_cpu_seconds: f64,
    vector_index_graph_build_seconds: f64,
    peak_rss_mib: f64,
}

/// Runs the benchmark and prints one JSON object.
pub async fn run(
    settings: &Settings,
    backend: Option<BenchBackend>,
    shape: RebuildBench,
    text: Arc<SyntheticText>,
) -> Result<(), AppError> {
    if shape.log.dimensions == 0 {
        return Err(AppError::Usage("--dimensions must be at least 1 (the rebuild measures vectors too)".into()));
    }
    let scratch = ScratchStore::create(settings, backend).await?;
    let result = measure(&scratch, shape, text).await;
    scratch.remove().await?;
    print(&result?)
}

async fn measure(scratch: &ScratchStore, shape: RebuildBench, text: Arc<SyntheticText>) -> Result<Report, AppError> {
    let started = Instant::now();
    fill(&scratch.store, shape.log, text).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let events = scratch.store.head_position().await?;
    let read_model: Arc<dyn ReadModelStore> = match scratch.database_config() {
        Some(config) => Arc::new(PostgresReadModel::connect(config, 8).await.map_err(usage)?),
        None => Arc::new(SqliteReadModel::open(&scratch.dir).await.map_err(usage)?),
    };
    let (status, _) = tokio::sync::watch::channel(initial_status(READ_MODEL, 0));
    let config = RunnerConfig { batch_size: shape.batch_size.max(1), batch_wait: Duration::from_millis(20) };
    let started = Instant::now();
    rebuild_read_model(Arc::clone(&scratch.store), Arc::clone(&read_model), config, status).await.map_err(usage)?;
    let seconds = started.elapsed().as_secs_f64();

    // The vector index: qdrant-edge in the scratch directory, BM25 for every chunk plus the recorded vectors.
    let edge = Arc::new(EdgeIndex::open(&scratch.dir.join("vectors")).map_err(usage)?);
    let index: Arc<dyn VectorIndex> = Arc::clone(&edge) as Arc<dyn VectorIndex>;
    let embedding = EmbeddingConfig { dense: Some((SYNTHETIC_MODEL.to_owned(), shape.log.dimensions as u32)) };
    let bm25 = Arc::new(Bm25::new(Bm25Params::default()).map_err(usage)?);
    let projection =
        VectorProjection::new(Arc::clone(&scratch.store), Arc::clone(&index), read_model, embedding.clone(), bm25);
    let (status, _) = tokio::sync::watch::channel(initial_status(projection.name(), 0));
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let report = rebuild(Arc::clone(&scratch.store), &projection, config, status).await.map_err(usage)?;
    let vector_seconds = started.elapsed().as_secs_f64();
    let vector_cpu_seconds = cpu_seconds() - cpu_before;
    let collection = embedding.collection(report.to_generation);
    let points = index.count(&collection).await.map_err(usage)?;
    // The rebuilt collection is searchable now; its HNSW graph is built in the background: wait for it.
    let started = Instant::now();
    edge.optimize(&collection).await.map_err(usage)?;
    let graph_seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        benchmark: "rebuild",
        backend: scratch.store.backend_name(),
        events,
        documents: shape.log.documents,
        chunks: shape.log.documents * shape.log.chunks_per_document,
        dimensions: shape.log.dimensions,
        chunk_chars: shape.log.chunk_chars,
        batch_size: shape.batch_size,
        fill_seconds,
        read_model_rebuild_seconds: seconds,
        read_model_events_per_sec: events as f64 / seconds,
        vector_index_backend: index.backend_name(),
        vector_index_rebuild_seconds: vector_seconds,
        vector_index_points: points,
        vector_index_points_per_sec: points as f64 / vector_seconds,
        vector_index_events_per_sec: events as f64 / vector_seconds,
        vector_index_cpu_seconds: vector_cpu_seconds,
        vector_index_graph_build_seconds: graph_seconds,
        peak_rss_mib: crate::commands::bench_ingest::peak_rss_mib(),
    })
}

fn usage(error: impl std::fmt::Display) -> AppError {
    AppError::Usage(error.to_string())
}
