//! The projection runner: follows the global log from a projection's checkpoint and applies events in batches.
//!
//! A batch closes when it holds `batch_size` events or `batch_wait` has passed since its first event. What applying
//! means is the projection's ([`Projection`]): the read model folds the batch into the rows of the documents it
//! touches and writes them with the new checkpoint in one transaction; the vector index writes idempotent point
//! upserts and deletes, then moves its checkpoint. An event the projection cannot apply (unknown type, a document
//! never uploaded, vectors of the wrong length) stops the projection: it is recorded with its position and error,
//! the checkpoint stays before it, and other projections keep running.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dossier_events::{EventStore, RecordedEvent, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::read_model::{ApplyError, DocumentChange, ReadModelError, ReadModelStore, apply};
use crate::vector::IndexError;

/// How often a live runner checks whether a rebuild replaced its generation.
const GENERATION_CHECK: Duration = Duration::from_secs(1);

/// The read model's projection name.
pub const READ_MODEL: &str = "read_model";

/// Batching of a runner.
#[derive(Clone, Copy, Debug)]
pub struct RunnerConfig {
    /// Most events per transaction.
    pub batch_size: usize,
    /// Longest a batch waits for more events after its first.
    pub batch_wait: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { batch_size: 1_000, batch_wait: Duration::from_millis(20) }
    }
}

/// Events per batch of a rebuild ([`RunnerConfig::rebuild`]).
pub const REBUILD_BATCH_SIZE: usize = 50_000;

/// The most events a runner's batch buffer is sized for in advance (larger batches grow it as they fill).
const MAX_RESERVED_BATCH: usize = 100_000;

impl RunnerConfig {
    /// The batching of a rebuild (the command, the API route and `bench rebuild` alike): large batches, because
    /// each one ends with a flush of the vector index or a commit of the read model, and the next batch is read
    /// while one is written.
    pub fn rebuild() -> Self {
        Self { batch_size: REBUILD_BATCH_SIZE, ..Self::default() }
    }
}

/// What a projection is doing.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunnerState {
    /// Starting up.
    Starting,
    /// Applying events.
    Running,
    /// Stopped at an event it cannot apply.
    Stopped {
        /// The event's position.
        position: u64,
        /// Why.
        error: String,
    },
}

/// A projection's progress, published after every batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// The generation this runner fills.
    pub generation: u32,
    /// The last position applied.
    pub checkpoint: u64,
    /// The log's head when last looked at.
    pub head: u64,
    /// Events not yet applied.
    pub lag_events: u64,
    /// Age of the newest applied event when it was applied (0 when caught up with nothing new).
    pub lag_seconds: f64,
    /// Throughput of the last batch.
    pub events_per_sec: f64,
    /// Its state.
    pub state: RunnerState,
}

/// Why a runner ended.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read model (or the checkpoint store) failed.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// An event cannot be applied; the projection stopped before it.
    #[error("projection stopped: {0}")]
    Poison(#[from] ApplyError),
}

/// A projection: where its generations and checkpoints are recorded, and how a batch is applied.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Its name (the key of its checkpoints and live generation).
    fn name(&self) -> &str;

    /// Where its live generation and checkpoints are recorded.
    fn generations(&self) -> &Arc<dyn ReadModelStore>;

    /// Makes a generation's storage ready (a collection to create); called before a runner starts on it.
    async fn prepare(&self, generation: u32) -> Result<(), RunnerError>;

    /// A writer for one run over a generation (it may keep state from batch to batch). `skipped`: positions an
    /// operator skipped, which the runner never hands it (a writer that reads the log itself must ignore them too).
    fn writer(&self, generation: u32, skipped: HashSet<u64>) -> Box<dyn BatchWriter>;

    /// Deletes a generation's storage and checkpoint.
    async fn drop_generation(&self, generation: u32) -> Result<(), RunnerError>;

    /// Called once `generation` is live (to point a server-side alias at it).
    async fn switched(&self, generation: u32) -> Result<(), RunnerError>;
}

/// Applies batches of one run of a projection.
#[async_trait]
pub trait BatchWriter: Send {
    /// Applies `batch` and moves the checkpoint from `from` to `to` (the batch's last position); returns the
    /// checkpoint now. A writer may leave the last batch's checkpoint move to the next `write` or to
    /// [`settle`](Self::settle), and return `from` (its writes are idempotent, so a crash before the move only
    /// replays that batch).
    async fn write(&mut self, from: u64, to: u64, batch: &[RecordedEvent]) -> Result<u64, RunnerError>;

    /// Moves the checkpoint to the end of the last batch written, once its writes are durable, and returns it (`None`
    /// when it was there already). The runner calls it whenever it would wait for events, and before it returns.
    async fn settle(&mut self) -> Result<Option<u64>, RunnerError> {
        Ok(None)
    }
}

/// The read model as a [`Projection`].
pub struct ReadModelProjection {
    read_model: Arc<dyn ReadModelStore>,
}

impl ReadModelProjection {
    /// The read model stored in `read_model`.
    pub fn new(read_model: Arc<dyn ReadModelStore>) -> Self {
        Self { read_model }
    }
}

#[async_trait]
impl Projection for ReadModelProjection {
    fn name(&self) -> &str {
        READ_MODEL
    }

    fn generations(&self) -> &Arc<dyn ReadModelStore> {
        &self.read_model
    }

    async fn prepare(&self, _generation: u32) -> Result<(), RunnerError> {
        Ok(())
    }

    fn writer(&self, generation: u32, _skipped: HashSet<u64>) -> Box<dyn BatchWriter> {
        Box::new(ReadModelWriter { read_model: Arc::clone(&self.read_model), generation })
    }

    async fn drop_generation(&self, generation: u32) -> Result<(), RunnerError> {
        Ok(self.read_model.drop_generation(READ_MODEL, generation).await?)
    }

    async fn switched(&self, _generation: u32) -> Result<(), RunnerError> {
        Ok(())
    }
}

struct ReadModelWriter {
    read_model: Arc<dyn ReadModelStore>,
    generation: u32,
}

#[async_trait]
impl BatchWriter for ReadModelWriter {
    async fn write(&mut self, from: u64, to: u64, batch: &[RecordedEvent]) -> Result<u64, RunnerError> {
        let changes = fold(self.read_model.as_ref(), self.generation, batch).await?;
        self.read_model.commit(READ_MODEL, self.generation, from, to, &changes).await?;
        Ok(to)
    }
}

/// Runs the read-model projection for `generation` (see [`run_projection`]).
pub async fn run_read_model(
    log: Arc<dyn EventStore>,
    read_model: Arc<dyn ReadModelStore>,
    generation: u32,
    config: RunnerConfig,
    status: watch::Sender<ProjectionStatus>,
    until: Option<u64>,
) -> Result<(), RunnerError> {
    let projection = ReadModelProjection::new(read_model);
    run_projection(log, &projection, generation, config, status, until).await
}

/// Runs a projection for `generation` until the subscription ends or an error stops it.
///
/// `until` bounds a run (a rebuild stops at a target head); `None` follows the log for ever, handing over (returning)
/// when a rebuild makes another generation live.
pub async fn run_projection(
    log: Arc<dyn EventStore>,
    projection: &dyn Projection,
    generation: u32,
    config: RunnerConfig,
    status: watch::Sender<ProjectionStatus>,
    until: Option<u64>,
) -> Result<(), RunnerError> {
    let name = projection.name().to_owned();
    let generations = Arc::clone(projection.generations());
    let mut checkpoint = generations.checkpoint(&name, generation).await?;
    if let Some(stopped) = checkpoint.as_ref().filter(|c| c.state == "stopped") {
        let error = stopped.error.clone().unwrap_or_default();
        status.send_modify(|s| s.state = RunnerState::Stopped { position: stopped.position + 1, error });
        return Ok(());
    }
    let mut position = checkpoint.take().map_or(0, |c| c.position);
    status.send_modify(|s| {
        s.checkpoint = position;
        s.state = RunnerState::Running;
    });
    if until.is_some_and(|until| position >= until) {
        return Ok(());
    }
    projection.prepare(generation).await?;
    let skipped = crate::skip::skipped_positions(log.as_ref(), &name).await?;
    let mut writer = projection.writer(generation, skipped.clone());
    // Room for a whole batch, so the next batch is read while this one is written (a rebuild's batches are large).
    let buffer = config.batch_size.max(dossier_events::subscription::DEFAULT_BUFFER);
    let mut subscription = Arc::clone(&log).subscribe_all_buffered(position, buffer);
    let mut generation_checked = Instant::now();
    // An event taken from the subscription to learn whether more were waiting, for the next batch.
    let mut ready = None;
    // One buffer for every batch: a rebuild's batches are large, and growing a new one each time copied it over and
    // over into fresh memory.
    let mut batch: Vec<RecordedEvent> = Vec::new();
    loop {
        // A runner that follows the live generation hands over when a rebuild switches another one in.
        if until.is_none() && generation_checked.elapsed() >= GENERATION_CHECK {
            generation_checked = Instant::now();
            if generations.live_generation(&name).await? != generation {
                tracing::info!(projection = %name, generation, "projection_generation_replaced");
                writer.settle().await?;
                return Ok(());
            }
        }
        let first = match ready.take() {
            Some(first) => first,
            None => match tokio::time::timeout(GENERATION_CHECK, subscription.next()).await {
                Ok(Some(first)) => first,
                Ok(None) => return Ok(()),
                Err(_) => continue,
            },
        };
        batch.clear();
        batch.reserve(config.batch_size.min(MAX_RESERVED_BATCH));
        batch.push(first?);
        let deadline = tokio::time::Instant::now() + config.batch_wait;
        while batch.len() < config.batch_size && until.is_none_or(|until| last_position(&batch) < until) {
            match tokio::time::timeout_at(deadline, subscription.next()).await {
                Ok(Some(event)) => batch.push(event?),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(until) = until {
            batch.retain(|event| event.position <= until);
        }
        let started = Instant::now();
        let to = last_position(&batch);
        if !skipped.is_empty() {
            batch.retain(|event| !skipped.contains(&event.position));
        }
        let mut checkpoint = match writer.write(position, to, &batch).await {
            Ok(checkpoint) => checkpoint,
            Err(RunnerError::Poison(error)) => {
                let message = error.to_string();
                tracing::error!(projection = %name, generation, error = %message, "projection_stopped");
                generations.record_failure(&name, generation, &message).await?;
                status.send_modify(|s| s.state = RunnerState::Stopped { position: error.position(), error: message });
                return Err(RunnerError::Poison(error));
            }
            Err(other) => return Err(other),
        };
        position = to;
        // Settled unless the next batch follows at once: before any wait, and at the end of a bounded run.
        ready = subscription.next_ready();
        if ready.is_none() || until.is_some_and(|until| to >= until) {
            checkpoint = writer.settle().await?.unwrap_or(checkpoint);
        }
        let head = log.watch_head().borrow().to_owned().max(to);
        let newest = batch.last().map(|event| event.recorded_at);
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.head = head;
            s.lag_events = head.saturating_sub(checkpoint);
            s.lag_seconds = if s.lag_events == 0 {
                0.0
            } else {
                newest.map_or(0.0, |at| (OffsetDateTime::now_utc() - at).as_seconds_f64().max(0.0))
            };
            s.events_per_sec = batch.len() as f64 / elapsed;
        });
        if until.is_some_and(|until| to >= until) {
            return Ok(());
        }
    }
}

fn last_position(batch: &[RecordedEvent]) -> u64 {
    batch.last().map_or(0, |event| event.position)
}

/// Folds a batch into per-document changes, starting from the stored rows.
async fn fold(
    read_model: &dyn ReadModelStore,
    generation: u32,
    batch: &[RecordedEvent],
) -> Result<Vec<DocumentChange>, RunnerError> {
    let mut order: Vec<Uuid> = Vec::new();
    let mut touched: HashMap<Uuid, DocumentChange> = HashMap::new();
    for event in batch {
        if let Some(document_id) = event.stream_id.document_id()
            && !touched.contains_key(&document_id)
        {
            touched.insert(document_id, DocumentChange::default());
            order.push(document_id);
        }
    }
    let stored = read_model.load_documents(generation, &order).await?;
    for (document_id, row) in stored {
        if let Some(change) = touched.get_mut(&document_id) {
            change.row = Some(row);
        }
    }
    for event in batch {
        // Only document streams feed the read model; other streams (none yet) pass by.
        let Some(document_id) = event.stream_id.document_id() else { continue };
        if let Some(change) = touched.get_mut(&document_id) {
            apply(change, document_id, event)?;
        }
    }
    Ok(order.into_iter().filter_map(|id| touched.remove(&id)).collect())
}

/// A fresh status for a projection generation.
pub fn initial_status(name: &str, generation: u32) -> ProjectionStatus {
    ProjectionStatus {
        name: name.to_owned(),
        generation,
        checkpoint: 0,
        head: 0,
        lag_events: 0,
        lag_seconds: 0.0,
        events_per_sec: 0.0,
        state: RunnerState::Starting,
    }
}
