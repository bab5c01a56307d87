//! `dossier bench ingest`: ingests a BEIR corpus (SciFact by default) through the real pipeline on a scratch store
//! and prints docs/s, chunks/s, peak RSS and, with an embedder, the pipeline overhead ratio (ingest throughput ÷
//! the embedder's own throughput on the same chunks).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dossier_actors::chunk::chunk;
use dossier_actors::runtime::{Runtime, UploadRequest};
use dossier_events::EventMetadata;
use serde::Serialize;

use crate::cli::BenchBackend;
use crate::commands::bench::{ScratchStore, print};
use crate::commands::ingest::ingest;
use crate::error::AppError;
use crate::eval::read_corpus;
use crate::settings::Settings;

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    backend: &'static str,
    embedder: Option<String>,
    documents: usize,
    ready: usize,
    failed: usize,
    seconds: f64,
    docs_per_sec: f64,
    chunks: usize,
    chunks_per_sec: f64,
    peak_rss_mib: f64,
    embedder_only_chunks_per_sec: Option<f64>,
    overhead_ratio: Option<f64>,
}

/// Runs the benchmark and prints one JSON object.
pub async fn run(
    settings: &Settings,
    backend: Option<BenchBackend>,
    corpus: &Path,
    limit: Option<usize>,
) -> Result<(), AppError> {
    let documents: Vec<(String, String)> = read_corpus(corpus, limit)?
        .into_iter()
        .map(|document| {
            let body = document.body();
            (document.id, body)
        })
        .collect();
    let scratch = ScratchStore::create(settings, backend).await?;
    let result = measure(settings, &scratch, documents).await;
    scratch.remove().await?;
    print(&result?)
}

async fn measure(
    settings: &Settings,
    scratch: &ScratchStore,
    documents: Vec<(String, String)>,
) -> Result<Report, AppError> {
    let mut config = crate::backend::runtime_config(settings)?;
    config.data_dir = scratch.dir.clone();
    let embedder = config.embedder.clone();
    let chunking = config.chunking;
    let runtime =
        Runtime::start(Arc::clone(&scratch.store), config).await.map_err(|error| AppError::Usage(error.to_string()))?;
    let count = documents.len();
    let texts: Vec<String> = documents.iter().map(|(_, body)| body.clone()).collect();
    let uploads = documents.into_iter().map(|(id, body)| async move {
        let request = UploadRequest {
            filename: format!("{id}.txt"),
            media_type: Some("text/plain".to_owned()),
            bytes: body.into_bytes(),
            metadata: serde_json::Map::new(),
            event_metadata: EventMetadata::new("bench", "bench:ingest"),
        };
        (id, Ok(request))
    });
    let started = Instant::now();
    let summary = ingest(Arc::clone(&scratch.store), &runtime, count, uploads, false).await;
    let seconds = started.elapsed().as_secs_f64();
    runtime.shutdown();
    let summary = summary?;
    // The same chunks the pipeline made, grouped by document as the pipeline embeds them (one call per document),
    // for the chunk count and the embedder-only baseline.
    let per_document: Vec<Vec<String>> = texts
        .iter()
        .map(|text| chunk(text, false, chunking).unwrap_or_default().into_iter().map(|piece| piece.text).collect())
        .collect();
    let chunks = per_document.iter().map(Vec::len).sum::<usize>();
    let embedder_only = match &embedder {
        Some(embedder) => {
            let started = Instant::now();
            for texts in &per_document {
                embedder.embed(texts).await.map_err(|error| AppError::Usage(error.to_string()))?;
            }
            Some(chunks as f64 / started.elapsed().as_secs_f64())
        }
        None => None,
    };
    let chunks_per_sec = chunks as f64 / seconds;
    Ok(Report {
        benchmark: "ingest",
        backend: scratch.store.backend_name(),
        embedder: embedder.as_ref().map(|embedder| embedder.model().to_owned()),
        documents: count,
        ready: summary.ready,
        failed: summary.failed.len(),
        seconds,
        docs_per_sec: count as f64 / seconds,
        chunks,
        chunks_per_sec,
        peak_rss_mib: peak_rss_mib(),
        embedder_only_chunks_per_sec: embedder_only,
        overhead_ratio: embedder_only.map(|baseline| chunks_per_sec / baseline),
    })
}

/// CPU time (user + system) this process has used so far, in seconds (Linux; 0 elsewhere).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis): utime and
    // stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is not available.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
