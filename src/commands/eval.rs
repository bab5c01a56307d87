//! `dossier eval`: retrieval quality on a BEIR data set, through the real pipeline and the real index.
//!
//! The corpus is ingested by the actor runtime (parse, chunk, embed when a model is configured) into an embedded
//! log in a work directory; the vector index is then built (rebuilt, if the directory was used before, so BM25
//! parameters given on the command line take effect) and every query runs through the same search the API uses.
//! Chunk hits become document hits (a document scores its best chunk) and are scored as BEIR/pytrec_eval do.
//! With `--workdir`, the directory is kept and a later run reuses the ingested log (tuning without re-embedding).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use dossier_actors::embed::Embedder;
use dossier_actors::runtime::{Runtime, UploadRequest};
use dossier_events::document::DocumentEvent;
use dossier_events::sqlite::{SqliteOptions, SqliteStore};
use dossier_events::{EventMetadata, EventStore};
use dossier_projections::read_model::sqlite::SqliteReadModel;
use dossier_projections::rebuild::{rebuild, rebuild_read_model};
use dossier_projections::runner::{Projection, READ_MODEL, RunnerConfig, initial_status};
use dossier_projections::vector::edge::EdgeIndex;
use dossier_projections::vector::search::{FusionParams, MAX_TOP_K, SearchRequest, Searcher};
use dossier_projections::vector::{Bm25, Bm25Params, SearchMode, VectorProjection};
use serde::Serialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::eval::{EvalSet, Hit, Report, RetrieveError, Retriever, evaluate, read_corpus, read_qrels, read_queries};
use crate::settings::Settings;

/// The tenant the corpus is ingested as.
const TENANT: &str = "eval";

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalArgs {
    /// `corpus.jsonl(.gz)`.
    pub corpus: PathBuf,
    /// `queries.jsonl`.
    pub queries: PathBuf,
    /// The qrels TSV.
    pub qrels: PathBuf,
    /// Retrieval mode.
    pub mode: SearchMode,
    /// The cutoff reported besides 10 and 100.
    pub k: usize,
    /// Only the first N corpus documents.
    pub limit: Option<usize>,
    /// Keep (and reuse) the ingested corpus here; a temporary directory otherwise.
    pub workdir: Option<PathBuf>,
    /// BM25 parameters.
    pub bm25: Bm25Params,
    /// Hybrid fusion parameters.
    pub fusion: FusionParams,
    /// Include per-query results in the output.
    pub per_query: bool,
}

#[derive(Serialize)]
struct Output {
    mode: SearchMode,
    embedder: Option<String>,
    documents: usize,
    chunks: u64,
    ingest_seconds: f64,
    index_seconds: f64,
    search_seconds: f64,
    bm25: Bm25Json,
    fusion: FusionJson,
    #[serde(flatten)]
    report: Report,
}

#[derive(Serialize)]
struct Bm25Json {
    k1: f64,
    b: f64,
    avg_len: f64,
}

#[derive(Serialize)]
struct FusionJson {
    rrf_k: usize,
    prefetch_factor: usize,
    prefetch_minimum: usize,
}

/// Runs the evaluation and prints one JSON object.
pub async fn run(settings: &Settings, args: EvalArgs) -> Result<(), AppError> {
    let corpus = read_corpus(&args.corpus, args.limit)?;
    let set =
        EvalSet::new(read_queries(&args.queries)?, read_qrels(&args.qrels)?, corpus.iter().map(|d| d.id.as_str()));
    let (dir, temporary) = match &args.workdir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("dossier-eval-{}", Uuid::now_v7())), true),
    };
    let outcome = evaluate_in(settings, &args, corpus, &set, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let output = outcome?;
    let mut value = serde_json::to_value(&output).map_err(|error| AppError::Usage(error.to_string()))?;
    if !args.per_query
        && let serde_json::Value::Object(map) = &mut value
    {
        map.remove("per_query");
    }
    println!("{value}");
    Ok(())
}

async fn evaluate_in(
    settings: &Settings,
    args: &EvalArgs,
    corpus: Vec<crate::eval::Document>,
    set: &EvalSet,
    dir: &std::path::Path,
) -> Result<Output, AppError> {
    let usage = |error: &dyn std::fmt::Display| AppError::Usage(error.to_string());
    let mut config = crate::backend::runtime_config(settings)?;
    config.data_dir = dir.to_owned();
    // Two corpus entries with the same text are two documents for the metrics.
    config.deduplicate = false;
    let embedder = config.embedder.clone();
    if args.mode != SearchMode::Sparse && embedder.is_none() {
        return Err(AppError::Usage(format!(
            "--mode {:?} needs an embedding model: set EMBEDDING_MODEL_DIR (or LLM_BASE_URL and EMBEDDING_MODEL)",
            args.mode
        )));
    }
    let embedding = crate::backend::embedding_config(&config)?;
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir, SqliteOptions::default()).await?);
    let documents = corpus.len();

    let started = Instant::now();
    let mut ids = uploaded_ids(store.as_ref()).await?;
    if ids.is_empty() {
        let runtime = Runtime::start(Arc::clone(&store), config).await.map_err(|e| usage(&e))?;
        let uploads = corpus.into_iter().map(|document| async move {
            let request = UploadRequest {
                filename: format!("{}.txt", document.id),
                media_type: Some("text/plain".to_owned()),
                bytes: document.body().into_bytes(),
                metadata: serde_json::Map::new(),
                event_metadata: EventMetadata::new(TENANT, "dossier:eval"),
            };
            (document.id, Ok(request))
        });
        let show_progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let summary = crate::commands::ingest::ingest(Arc::clone(&store), &runtime, documents, uploads, show_progress);
        let summary = summary.await;
        runtime.shutdown();
        let summary = summary?;
        if !summary.failed.is_empty() {
            tracing::warn!(failed = summary.failed.len(), "eval_documents_failed");
        }
        ids = uploaded_ids(store.as_ref()).await?;
    } else if ids.len() != documents {
        return Err(AppError::Usage(format!(
            "{} holds {} documents, the corpus {documents}: use another --workdir",
            dir.display(),
            ids.len()
        )));
    }
    let ingest_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let read_model = Arc::new(SqliteReadModel::open(dir).await.map_err(|e| usage(&e))?);
    let index = Arc::new(EdgeIndex::open(&dir.join("vectors")).map_err(|e| usage(&e))?);
    let bm25 = Arc::new(Bm25::new(args.bm25).map_err(AppError::Usage)?);
    let projection = VectorProjection::new(
        Arc::clone(&store),
        index.clone(),
        read_model.clone(),
        embedding.clone(),
        Arc::clone(&bm25),
    );
    let runner = RunnerConfig::rebuild();
    // Search takes the chunks' texts from the read model (ADR 0016): it is built first.
    let (status, _) = tokio::sync::watch::channel(initial_status(READ_MODEL, 0));
    rebuild_read_model(Arc::clone(&store), read_model.clone(), runner, status).await.map_err(|e| usage(&e))?;
    let (status, _) = tokio::sync::watch::channel(initial_status(projection.name(), 0));
    let rebuilt = rebuild(Arc::clone(&store), &projection, runner, status).await.map_err(|e| usage(&e))?;
    let collection = embedding.collection(rebuilt.to_generation);
    index.optimize(&collection).await.map_err(|e| usage(&e))?;
    let chunks =
        dossier_projections::vector::VectorIndex::count(index.as_ref(), &collection).await.map_err(|e| usage(&e))?;
    let index_seconds = started.elapsed().as_secs_f64();

    let searcher = Searcher::new(index, read_model, embedding, bm25, args.fusion);
    let retriever = SearchRetriever { searcher, embedder: embedder.clone(), mode: args.mode, ids };
    let started = Instant::now();
    let report = evaluate(set, &retriever, &[args.k]).await.map_err(|e| usage(&e))?;
    let search_seconds = started.elapsed().as_secs_f64();
    Ok(Output {
        mode: args.mode,
        embedder: embedder.as_ref().map(|e| e.model().to_owned()),
        documents,
        chunks,
        ingest_seconds,
        index_seconds,
        search_seconds,
        bm25: Bm25Json { k1: args.bm25.k1, b: args.bm25.b, avg_len: args.bm25.avg_len },
        fusion: FusionJson {
            rrf_k: args.fusion.rrf_k,
            prefetch_factor: args.fusion.prefetch_factor,
            prefetch_minimum: args.fusion.prefetch_minimum,
        },
        report,
    })
}

/// Every uploaded document's corpus id (its filename without `.txt`), by document id.
async fn uploaded_ids(store: &dyn EventStore) -> Result<HashMap<Uuid, String>, AppError> {
    let mut ids = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 5_000).await?;
        let Some(last) = page.last() else { return Ok(ids) };
        after = last.position;
        for event in page.iter().filter(|event| event.event_type == "DocumentUploaded") {
            if let Ok(DocumentEvent::DocumentUploaded(uploaded)) = DocumentEvent::from_recorded(event) {
                let id = uploaded.filename.strip_suffix(".txt").unwrap_or(&uploaded.filename).to_owned();
                ids.insert(uploaded.document_id, id);
            }
        }
    }
}

/// The API's search as a [`Retriever`].
struct SearchRetriever {
    searcher: Searcher,
    embedder: Option<Arc<dyn Embedder>>,
    mode: SearchMode,
    ids: HashMap<Uuid, String>,
}

#[async_trait]
impl Retriever for SearchRetriever {
    async fn retrieve(&self, query: &str, depth: usize) -> Result<Vec<Hit>, RetrieveError> {
        let dense = match (&self.embedder, self.mode) {
            (Some(embedder), SearchMode::Dense | SearchMode::Hybrid) => {
                embedder.embed(&[query.to_owned()]).await?.into_iter().next()
            }
            _ => None,
        };
        let request = SearchRequest {
            tenant_id: TENANT.to_owned(),
            text: query.to_owned(),
            dense,
            mode: self.mode,
            // Chunks, not documents: ask for enough to cover `depth` documents of a few chunks each.
            top_k: (depth * 3).min(MAX_TOP_K),
            document_ids: vec![],
            metadata: vec![],
        };
        let hits = self.searcher.search(&request).await?;
        Ok(hits
            .into_iter()
            .filter_map(|hit| self.ids.get(&hit.document_id).map(|id| Hit::new(id.clone(), f64::from(hit.score))))
            .collect())
    }
}
