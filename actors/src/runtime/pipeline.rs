//! The pipeline's workers: run one stage (parse, chunk or embed) of one document off the actors' mailboxes.
//!
//! Each job is a tokio task bounded by a semaphore (parsing runs on the blocking pool); its result goes back to the
//! document's actor as a message, which turns it into a command. A job that panics reports a transient failure, so
//! the attempt is recorded and retried like any other.

use std::sync::Arc;

use dossier_events::document::{Chunk, ChunkerSettings, Stage};
use futures::FutureExt;
use ractor::ActorRef;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::blob::BlobStore;
use crate::chunk::{ChunkSettings, chunk};
use crate::embed::{EmbedError, Embedder};
use crate::parse::{MediaType, ParseLimits, detect, parse};
use crate::runtime::document::DocumentMsg;

/// What a stage needs to run.
#[derive(Clone, Debug)]
pub struct StageJob {
    /// The document.
    pub document_id: Uuid,
    /// Which processing run (reprocessing starts a new one); results of an older run are ignored.
    pub generation: u32,
    /// The stage.
    pub stage: Stage,
    /// Which attempt this is (from 1).
    pub attempt: u32,
    /// Digest of the uploaded bytes.
    pub blob_sha256: String,
    /// The recorded media type.
    pub media_type: String,
    /// The recorded file name.
    pub filename: String,
    /// Digest of the parsed text (chunk stage).
    pub text_sha256: Option<String>,
    /// Chunk texts (embed stage).
    pub chunk_texts: Arc<Vec<String>>,
}

/// A stage's result.
#[derive(Clone, Debug)]
pub enum StageOutput {
    /// Parsed: the text is stored as a blob.
    Parsed {
        /// Digest of the parsed text.
        text_sha256: String,
        /// Its length in bytes.
        text_length: u64,
        /// Title, if the format has one.
        title: Option<String>,
        /// Pages, if the format has them.
        page_count: Option<u32>,
        /// Which parser.
        parser: String,
    },
    /// Chunked.
    Chunked {
        /// The settings used.
        chunker: ChunkerSettings,
        /// The chunks.
        chunks: Vec<Chunk>,
    },
    /// Embedded.
    Embedded {
        /// The model.
        model: String,
        /// Vector length.
        dimensions: u32,
        /// One vector per chunk.
        vectors: Vec<Vec<f32>>,
    },
}

/// Why a stage attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub enum StageError {
    /// Worth retrying (timeouts, refused connections, 429, 5xx, a crashed worker).
    Transient {
        /// What happened.
        reason: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// Retrying cannot help (malformed, encrypted or unsupported file, a model answering nonsense).
    Permanent {
        /// What happened.
        reason: String,
    },
}

impl StageError {
    fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent { reason: reason.into() }
    }

    fn transient(reason: impl Into<String>) -> Self {
        Self::Transient { reason: reason.into(), retry_after: None }
    }

    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Transient { reason, .. } | Self::Permanent { reason } => reason,
        }
    }
}

/// The shared resources of every stage.
pub struct Pipeline {
    blobs: BlobStore,
    embedder: Option<Arc<dyn Embedder>>,
    parse_limits: ParseLimits,
    chunk_settings: ChunkSettings,
    permits: Arc<Semaphore>,
}

impl Pipeline {
    /// A pipeline running at most `workers` stages at once.
    pub fn new(
        blobs: BlobStore,
        embedder: Option<Arc<dyn Embedder>>,
        parse_limits: ParseLimits,
        chunk_settings: ChunkSettings,
        workers: usize,
    ) -> Self {
        Self { blobs, embedder, parse_limits, chunk_settings, permits: Arc::new(Semaphore::new(workers.max(1))) }
    }

    /// Whether documents get dense vectors.
    pub fn has_embedder(&self) -> bool {
        self.embedder.is_some()
    }

    /// Starts a job; its result is sent to `reply_to` as [`DocumentMsg::StageFinished`].
    ///
    /// Parsing and chunking run wholly on the background runtime, whose blocking pool they use: handed over from a
    /// request worker, each job had that worker take the pool's lock, which the background threads (lower priority,
    /// so often preempted while holding it) also take, and the workers spun on it (about 2,000 `sched_yield` calls
    /// per second in an upload burst). The embed stage stays on the caller's runtime: its HTTP connections are pooled
    /// with the query embeddings of requests, and a connection is driven by the runtime that opened it.
    pub fn start(self: &Arc<Self>, job: StageJob, reply_to: ActorRef<DocumentMsg>) {
        let pipeline = Arc::clone(self);
        let runtime = match job.stage {
            Stage::Parse | Stage::Chunk => dossier_projections::background::runtime().clone(),
            Stage::Embed => tokio::runtime::Handle::current(),
        };
        runtime.spawn(async move {
            let started = std::time::Instant::now();
            let result = match std::panic::AssertUnwindSafe(pipeline.run(&job)).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Err(StageError::transient(format!("the {} worker crashed", job.stage.as_str()))),
            };
            tracing::info!(
                document_id = %job.document_id,
                stage = job.stage.as_str(),
                attempt = job.attempt,
                ok = result.is_ok(),
                duration_ms = started.elapsed().as_millis() as u64,
                "stage_finished"
            );
            let message = DocumentMsg::StageFinished {
                generation: job.generation,
                stage: job.stage,
                attempt: job.attempt,
                result: Box::new(result),
            };
            // The actor may have been passivated or restarted meanwhile; its successor re-runs the stage.
            let _ = reply_to.send_message(message);
        });
    }

    async fn run(&self, job: &StageJob) -> Result<StageOutput, StageError> {
        let _permit = self.permits.acquire().await.map_err(|_| StageError::transient("pipeline shut down"))?;
        match job.stage {
            Stage::Parse => self.parse(job).await,
            Stage::Chunk => self.chunk(job).await,
            Stage::Embed => self.embed(job).await,
        }
    }

    async fn parse(&self, job: &StageJob) -> Result<StageOutput, StageError> {
        let blobs = self.blobs.clone();
        let limits = self.parse_limits.clone();
        let job = job.clone();
        blocking(move || {
            let bytes = blobs.get(&job.blob_sha256).map_err(|error| StageError::permanent(error.to_string()))?;
            let declared = MediaType::parse_declared(&job.media_type).map(|media_type| media_type.as_str());
            let media_type = detect(&bytes, declared, Some(&job.filename))
                .map_err(|error| StageError::permanent(error.to_string()))?;
            let parsed =
                parse(media_type, &bytes, &limits).map_err(|error| StageError::permanent(error.to_string()))?;
            let stored = blobs.put(parsed.text.as_bytes()).map_err(|error| StageError::transient(error.to_string()))?;
            Ok(StageOutput::Parsed {
                text_sha256: stored.sha256,
                text_length: stored.size,
                title: parsed.title,
                page_count: parsed.page_count,
                parser: parsed.parser.to_owned(),
            })
        })
        .await
    }

    async fn chunk(&self, job: &StageJob) -> Result<StageOutput, StageError> {
        let blobs = self.blobs.clone();
        let settings = self.chunk_settings;
        let job = job.clone();
        blocking(move || {
            let digest = job.text_sha256.as_deref().ok_or_else(|| StageError::permanent("no parsed text recorded"))?;
            let bytes = blobs.get(digest).map_err(|error| StageError::permanent(error.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|_| StageError::permanent("parsed text is not UTF-8"))?;
            let markdown = MediaType::parse_declared(&job.media_type) == Some(MediaType::Markdown);
            let chunks = chunk(&text, markdown, settings).map_err(|error| StageError::permanent(error.to_string()))?;
            if chunks.is_empty() {
                return Err(StageError::permanent("the parsed text has nothing to chunk"));
            }
            Ok(StageOutput::Chunked {
                chunker: ChunkerSettings { max_chars: settings.max_chars as u32, overlap: settings.overlap as u32 },
                chunks: chunks
                    .into_iter()
                    .map(|c| Chunk { index: c.index, text: c.text, byte_start: c.byte_start, byte_end: c.byte_end })
                    .collect(),
            })
        })
        .await
    }

    async fn embed(&self, job: &StageJob) -> Result<StageOutput, StageError> {
        let embedder = self.embedder.as_ref().ok_or_else(|| StageError::permanent("no embedder is configured"))?;
        let vectors = embedder.embed(&job.chunk_texts).await.map_err(|error| match error {
            EmbedError::Transient { reason, retry_after } => StageError::Transient { reason, retry_after },
            EmbedError::Permanent { reason } => StageError::Permanent { reason },
        })?;
        let dimensions = vectors.first().map_or(0, Vec::len) as u32;
        Ok(StageOutput::Embedded { model: embedder.model().to_owned(), dimensions, vectors })
    }
}

/// Runs blocking work on the background runtime's blocking pool (below the requests' priority; see
/// [`dossier_projections::background`]); a panic there is a transient failure of the attempt.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StageError> + Send + 'static,
) -> Result<T, StageError> {
    dossier_projections::background::runtime()
        .spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(StageError::transient(error.to_string())))
}
