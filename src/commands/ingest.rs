//! `dossier ingest PATH...`: ingests files and directories through the same commands the API uses, shows progress,
//! and prints a summary (ready, failed with reasons, deduplicated, rejected, docs/s) as JSON on stdout.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dossier_actors::runtime::{Runtime, UploadRequest};
use dossier_events::document::DocumentStatus;
use dossier_events::{EventMetadata, EventStore};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::error::AppError;

/// Files uploaded at once.
const CONCURRENT_UPLOADS: usize = 8;

/// The closing summary.
#[derive(Debug, Default, Serialize)]
pub struct IngestSummary {
    /// Files found.
    pub files: usize,
    /// Documents that reached `ready`.
    pub ready: usize,
    /// Documents that failed, with the reason.
    pub failed: Vec<FileProblem>,
    /// Uploads that returned an existing document (same bytes in the tenant).
    pub deduplicated: usize,
    /// Files refused before anything was written.
    pub rejected: Vec<FileProblem>,
    /// Wall time.
    pub seconds: f64,
    /// Documents finished per second.
    pub docs_per_sec: f64,
}

/// A file and what went wrong with it.
#[derive(Debug, Serialize)]
pub struct FileProblem {
    /// The file.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// Collects the files under `paths` (directories recursively, hidden entries skipped), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, AppError> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let metadata = std::fs::metadata(&path).map_err(|error| AppError::io(path.display().to_string(), error))?;
        if metadata.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|error| AppError::io(path.display().to_string(), error))?;
            for entry in entries {
                let entry = entry.map_err(|error| AppError::io(path.display().to_string(), error))?;
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    pending.push(entry.path());
                }
            }
        } else if metadata.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Ingests `paths` into tenant `tenant` and waits until every document is ready or failed.
pub async fn run(
    store: Arc<dyn EventStore>,
    runtime: &Runtime,
    paths: &[PathBuf],
    tenant: &str,
    show_progress: bool,
) -> Result<IngestSummary, AppError> {
    let files = collect_files(paths)?;
    let count = files.len();
    let tenant = tenant.to_owned();
    let uploads = files.into_iter().map(move |path| {
        let tenant = tenant.clone();
        async move { (path.display().to_string(), read_upload(&path, &tenant).await) }
    });
    ingest(store, runtime, count, uploads, show_progress).await
}

/// Uploads every request (a few at a time) and waits until each document is ready or failed.
pub async fn ingest<F>(
    store: Arc<dyn EventStore>,
    runtime: &Runtime,
    count: usize,
    uploads: impl Iterator<Item = F>,
    show_progress: bool,
) -> Result<IngestSummary, AppError>
where
    F: Future<Output = (String, Result<UploadRequest, String>)>,
{
    let started = Instant::now();
    let mut summary = IngestSummary { files: count, ..IngestSummary::default() };
    let progress =
        if show_progress { indicatif::ProgressBar::new(count as u64) } else { indicatif::ProgressBar::hidden() };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} documents finished, {per_sec} ({eta} left) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Follow the log from here on, so no document can finish unseen between its upload and our wait.
    let mut subscription = Arc::clone(&store).subscribe_all(store.head_position().await?);
    let mut waiting: HashMap<Uuid, String> = HashMap::new();
    let mut finished: HashSet<Uuid> = HashSet::new();
    let uploads = futures::stream::iter(uploads.map(|prepared| async move {
        let (file, request) = prepared.await;
        let result = match request {
            Ok(request) => runtime.upload(request).await.map_err(|error| error.to_string()),
            Err(reason) => Err(reason),
        };
        (file, result)
    }))
    .buffer_unordered(CONCURRENT_UPLOADS)
    .collect::<Vec<_>>()
    .await;
    for (file, result) in uploads {
        match result {
            Ok(outcome) => {
                if outcome.deduplicated {
                    summary.deduplicated += 1;
                }
                match outcome.state.status {
                    Some(DocumentStatus::Ready) => {
                        summary.ready += 1;
                        finished.insert(outcome.document_id);
                        progress.inc(1);
                    }
                    Some(DocumentStatus::Failed) => {
                        let reason = outcome.state.failure.map(|f| f.reason).unwrap_or_default();
                        summary.failed.push(FileProblem { file, reason });
                        finished.insert(outcome.document_id);
                        progress.inc(1);
                    }
                    _ => {
                        waiting.insert(outcome.document_id, file);
                    }
                }
            }
            Err(reason) => {
                summary.rejected.push(FileProblem { file, reason });
                progress.inc(1);
            }
        }
    }
    while !waiting.is_empty() {
        let Some(event) = subscription.next().await else { break };
        let event = event?;
        let Some(document_id) = event.stream_id.document_id() else { continue };
        let Some(file) = waiting.get(&document_id) else { continue };
        match event.event_type.as_str() {
            "DocumentReady" => summary.ready += 1,
            "DocumentFailed" => {
                let reason = event.data.to_value()["reason"].as_str().unwrap_or("unknown").to_owned();
                summary.failed.push(FileProblem { file: file.clone(), reason });
            }
            _ => continue,
        }
        waiting.remove(&document_id);
        progress.inc(1);
    }
    progress.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    let done = summary.ready + summary.failed.len();
    summary.docs_per_sec = done as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}

async fn read_upload(path: &Path, tenant: &str) -> Result<UploadRequest, String> {
    let bytes = tokio::fs::read(path).await.map_err(|error| format!("cannot read: {error}"))?;
    let mut metadata = EventMetadata::new(tenant, "cli:ingest");
    metadata.request_id = format!("ingest:{}", Uuid::now_v7());
    Ok(UploadRequest {
        filename: file_name(path),
        media_type: None,
        bytes,
        metadata: serde_json::Map::new(),
        event_metadata: metadata,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "unnamed".to_owned(), |name| name.to_string_lossy().into_owned())
}
