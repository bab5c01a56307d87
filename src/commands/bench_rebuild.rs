//! `dossier bench rebuild`: builds a synthetic log (documents with chunks of corpus-like prose and 384-dimension
//! vectors, plus metadata updates to reach the event count), then rebuilds the read model and the vector index (qdrant-edge) from it and
//! prints events/s, points/s, total times and peak RSS as JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_events::document::{
    BlobRef, Chunk, ChunkerSettings, ChunksEmbedded, DocumentChunked, DocumentEvent, DocumentParsed, DocumentReady,
    DocumentUploaded, MetadataUpdated, encode_vector,
};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::read_model::postgres::PostgresReadModel;
use dossier_projections::read_model::sqlite::SqliteReadModel;
use dossier_projections::rebuild::{rebuild, rebuild_read_model};
use dossier_projections::runner::{Projection, READ_MODEL, RunnerConfig, initial_status};
use dossier_projections::vector::edge::EdgeIndex;
use dossier_projections::vector::{Bm25, Bm25Params, EmbeddingConfig, VectorIndex, VectorProjection};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::cli::BenchBackend;
use crate::commands::bench::{ScratchStore, print};
use crate::commands::bench_ingest::cpu_seconds;
use crate::commands::synthetic::SyntheticText;
use crate::error::AppError;
use crate::settings::Settings;

/// The embedding model named in the synthetic `ChunksEmbedded` events.
const SYNTHETIC_MODEL: &str = "synthetic";

/// The shape of the synthetic log.
#[derive(Clone, Copy, Debug)]
pub struct RebuildBench {
    /// Documents.
    pub documents: usize,
    /// Events per document (5 lifecycle events, the rest metadata updates).
    pub events_per_document: usize,
    /// Chunks (and vectors) per document.
    pub chunks_per_document: usize,
    /// Vector length.
    pub dimensions: usize,
    /// Events per rebuild batch.
    pub batch_size: usize,
    /// Characters per chunk (at most).
    pub chunk_chars: usize,
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
    if shape.events_per_document < 5 {
        return Err(AppError::Usage("--events-per-document must be at least 5 (the lifecycle)".into()));
    }
    let scratch = ScratchStore::create(settings, backend).await?;
    let result = measure(&scratch, shape, text).await;
    scratch.remove().await?;
    print(&result?)
}

async fn measure(scratch: &ScratchStore, shape: RebuildBench, text: Arc<SyntheticText>) -> Result<Report, AppError> {
    let started = Instant::now();
    fill(&scratch.store, shape, text).await?;
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
    let embedding = EmbeddingConfig { dense: Some((SYNTHETIC_MODEL.to_owned(), shape.dimensions as u32)) };
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
        documents: shape.documents,
        chunks: shape.documents * shape.chunks_per_document,
        dimensions: shape.dimensions,
        chunk_chars: shape.chunk_chars,
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

/// Appends every document's events (one append per document) from 4 writers.
async fn fill(store: &Arc<dyn EventStore>, shape: RebuildBench, text: Arc<SyntheticText>) -> Result<(), AppError> {
    let writers = 4;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = Arc::clone(store);
        let text = Arc::clone(&text);
        tasks.push(tokio::spawn(async move {
            for index in (writer..shape.documents).step_by(writers) {
                let document_id = Uuid::now_v7();
                let events = document_events(document_id, index, shape, &text)?;
                let metadata = EventMetadata::new("bench", "bench:rebuild");
                store.append(&StreamId::for_document(document_id), ExpectedVersion::NoStream, events, metadata).await?;
            }
            Ok::<_, AppError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|error| AppError::Usage(format!("benchmark writer panicked: {error}")))??;
    }
    Ok(())
}

fn document_events(
    document_id: Uuid,
    index: usize,
    shape: RebuildBench,
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
    let vectors = (0..shape.chunks_per_document)
        .map(|i| {
            let raw: Vec<f32> = (0..shape.dimensions).map(|d| ((index * 31 + i * 7 + d) % 97) as f32 / 97.0).collect();
            let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
            encode_vector(&raw.iter().map(|x| x / norm).collect::<Vec<_>>())
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
        DocumentEvent::from(ChunksEmbedded {
            model: SYNTHETIC_MODEL.into(),
            dimensions: shape.dimensions as u32,
            vectors,
        }),
        DocumentEvent::from(DocumentReady {}),
    ];
    for update in 0..shape.events_per_document - 5 {
        let mut set = serde_json::Map::new();
        set.insert("revision".into(), json!(update));
        events.push(DocumentEvent::from(MetadataUpdated { set, unset: vec![] }));
    }
    events.iter().map(|event| event.to_new_event().map_err(usage)).collect()
}
