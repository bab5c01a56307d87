//! The vector index as a [`Projection`]: each generation is a collection; its checkpoint and the live generation are
//! recorded next to the read model's (same tables, under the name `vector_index:<configuration>`).
//!
//! A batch's writes go to the collection first and the checkpoint moves after they are durable, so a crash between
//! the two replays the batch, whose writes are idempotent: each event takes effect once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dossier_events::{EventStore, RecordedEvent};

use crate::read_model::{ReadModelError, ReadModelStore};
use crate::runner::{BatchWriter, Projection, RunnerError};
use crate::vector::fold::FoldError;
use crate::vector::{Bm25, EmbeddingConfig, Queued, VectorFold, VectorIndex, WriteChain};

/// The vector index's projection name (its checkpoints carry the configuration too; see [`VectorProjection::name`]).
pub const VECTOR_INDEX: &str = "vector_index";

/// The vector index of one embedding configuration.
pub struct VectorProjection {
    name: String,
    log: Arc<dyn EventStore>,
    index: Arc<dyn VectorIndex>,
    generations: Arc<dyn ReadModelStore>,
    config: EmbeddingConfig,
    bm25: Arc<Bm25>,
}

impl VectorProjection {
    /// The projection of `log` into `index`, recording generations and checkpoints in `generations`.
    pub fn new(
        log: Arc<dyn EventStore>,
        index: Arc<dyn VectorIndex>,
        generations: Arc<dyn ReadModelStore>,
        config: EmbeddingConfig,
        bm25: Arc<Bm25>,
    ) -> Self {
        Self { name: checkpoint_name(&config), log, index, generations, config, bm25 }
    }

    /// The embedding configuration.
    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    /// The index.
    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.index
    }
}

/// The name under which a configuration's checkpoints and live generation are recorded.
pub fn checkpoint_name(config: &EmbeddingConfig) -> String {
    format!("{VECTOR_INDEX}:{}", config.slug())
}

/// The live generation's collection.
pub async fn live_collection(
    generations: &dyn ReadModelStore,
    config: &EmbeddingConfig,
) -> Result<String, ReadModelError> {
    let generation = generations.live_generation(&checkpoint_name(config)).await?;
    Ok(config.collection(generation))
}

#[async_trait]
impl Projection for VectorProjection {
    fn name(&self) -> &str {
        &self.name
    }

    fn generations(&self) -> &Arc<dyn ReadModelStore> {
        &self.generations
    }

    async fn prepare(&self, generation: u32) -> Result<(), RunnerError> {
        let collection = self.config.collection(generation);
        self.index.ensure_collection(&self.config.spec(generation)).await?;
        let live = self.generations.live_generation(&self.name).await? == generation;
        // A generation being rebuilt is not searched until it is switched in: load it in bulk. (The live one is
        // also put back to serving here, in case a switch was interrupted before `switched` ran.)
        self.index.set_bulk_load(&collection, !live).await?;
        if live {
            self.index.set_alias(&self.config.alias(), &collection).await?;
        }
        Ok(())
    }

    fn writer(&self, generation: u32, skipped: HashSet<u64>) -> Box<dyn BatchWriter> {
        Box::new(VectorWriter {
            name: self.name.clone(),
            generation,
            collection: self.config.collection(generation),
            log: Arc::clone(&self.log),
            index: Arc::clone(&self.index),
            generations: Arc::clone(&self.generations),
            fold: VectorFold::new(self.config.clone(), Arc::clone(&self.bm25)).with_skipped(skipped),
            unflushed: None,
            unsettled: None,
            flushed_at: Instant::now(),
        })
    }

    async fn drop_generation(&self, generation: u32) -> Result<(), RunnerError> {
        // The checkpoint first: a runner still writing to that generation is fenced when it tries to move it.
        self.generations.drop_checkpoint(&self.name, generation).await?;
        Ok(self.index.drop_collection(&self.config.collection(generation)).await?)
    }

    async fn switched(&self, generation: u32) -> Result<(), RunnerError> {
        let collection = self.config.collection(generation);
        self.index.set_bulk_load(&collection, false).await?;
        Ok(self.index.set_alias(&self.config.alias(), &collection).await?)
    }
}

struct VectorWriter {
    name: String,
    generation: u32,
    collection: String,
    log: Arc<dyn EventStore>,
    index: Arc<dyn VectorIndex>,
    generations: Arc<dyn ReadModelStore>,
    fold: VectorFold,
    /// Batches applied or being applied since the last flush was queued (see [`FLUSH_INTERVAL`]).
    unflushed: Option<Unflushed>,
    /// The batches whose flush is queued and whose checkpoint has not moved yet (see [`BatchWriter::settle`]).
    unsettled: Option<Unsettled>,
    /// When the last flush was queued.
    flushed_at: Instant,
}

/// Consecutive batches whose writes are queued and not flushed yet: the log from `from` (exclusive) to `to`. One
/// chain spans them all, so a write that fails stops every later one and the flush: what is applied stays a prefix.
struct Unflushed {
    from: u64,
    to: u64,
    parts: VecDeque<Queued>,
    chain: WriteChain,
}

/// Batches whose writes and flush are queued, and the checkpoint move that waits for them.
struct Unsettled {
    from: u64,
    to: u64,
    parts: VecDeque<Queued>,
    flush: Queued,
}

/// A batch is folded and applied in parts of this many events, so that folding the next parts (tokenising and BM25,
/// on this task) overlaps applying the earlier ones (on the index's writer).
const PART_EVENTS: usize = 500;

/// Parts folded ahead of the index's writer at most (each holds about 50 points with their vectors).
const PARTS_AHEAD: usize = 8;

/// While batches follow one another, the index is flushed, and the checkpoint moved, at most this often; the
/// batches in between are applied (searchable) at once and made durable by the next flush. A flush writes back
/// every page the writes dirtied (`msync`: page-table walks and TLB shootdowns on every core), and flushing after
/// each 20 ms batch of an upload burst cost about a twentieth of the machine. A crash replays at most this much more
/// of the log, whose writes are idempotent. When the runner waits for events, [`BatchWriter::settle`] flushes at once.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

#[async_trait]
impl BatchWriter for VectorWriter {
    /// Folds the batch and queues its writes on the index, then, once [`FLUSH_INTERVAL`] has passed since the last
    /// flush, a flush and the checkpoint move of the batches before that flush (which is done by then, or nearly).
    /// Returns the checkpoint, which so trails the batches not flushed yet: they move with a later batch or at
    /// [`settle`](BatchWriter::settle). The index's writer so goes from one batch to the next without waiting for
    /// the flush, the commit, or the runner.
    async fn write(&mut self, from: u64, to: u64, batch: &[RecordedEvent]) -> Result<u64, RunnerError> {
        let started = Instant::now();
        let mut fold_time = Duration::ZERO;
        // Parts are queued in the order they were folded; the checkpoint moves only after the last one was applied
        // and flushed. A part that fails to fold (a poison event), or to apply, leaves the parts before it applied
        // and none after it (the chain): a prefix of the log, each event whole, which the replay from the unmoved
        // checkpoint writes again, unchanged (every op is idempotent).
        let span = self.unflushed.get_or_insert_with(|| Unflushed {
            from,
            to: from,
            parts: VecDeque::new(),
            chain: WriteChain::default(),
        });
        for part in batch.chunks(PART_EVENTS) {
            let part_started = Instant::now();
            let folded = self.fold.fold(self.log.as_ref(), part).await;
            fold_time += part_started.elapsed();
            let ops = match folded {
                Ok(ops) => ops,
                Err(error) => {
                    // What came before it in the log settles first (its failure would be the one to report); the
                    // span still ends before this batch, so the checkpoint stops at `from`.
                    self.settle().await?;
                    return Err(fold_error(error));
                }
            };
            span.parts.push_back(self.index.apply_queued(&self.collection, ops, &span.chain).await?);
            // Only this span's parts can be pending here (earlier spans were queued before them).
            while span.parts.len() > PARTS_AHEAD {
                if let Some(oldest) = span.parts.pop_front() {
                    oldest.applied().await?;
                }
            }
        }
        span.to = to;
        let folded = started.elapsed();
        if self.flushed_at.elapsed() >= FLUSH_INTERVAL {
            self.flush().await?;
        }
        tracing::debug!(
            events = batch.len(),
            fold_ms = fold_time.as_secs_f64() * 1e3,
            queue_ms = folded.as_secs_f64() * 1e3,
            settle_previous_ms = (started.elapsed() - folded).as_secs_f64() * 1e3,
            "vector_batch_written"
        );
        Ok(self.checkpoint(to))
    }

    async fn settle(&mut self) -> Result<Option<u64>, RunnerError> {
        self.flush().await?;
        match self.unsettled.take() {
            Some(unsettled) => self.commit(unsettled).await.map(Some),
            None => Ok(None),
        }
    }
}

impl VectorWriter {
    /// Queues a flush behind the unflushed batches' writes, then moves the checkpoint of the batches flushed before.
    async fn flush(&mut self) -> Result<(), RunnerError> {
        let Some(Unflushed { from, to, parts, chain }) = self.unflushed.take() else {
            return Ok(());
        };
        let flush = self.index.flush_queued(&self.collection, &chain).await?;
        self.flushed_at = Instant::now();
        if let Some(previous) = self.unsettled.replace(Unsettled { from, to, parts, flush }) {
            self.commit(previous).await?;
        }
        Ok(())
    }

    /// Waits for batches' writes and flush, then moves their checkpoint; returns it.
    async fn commit(&mut self, batches: Unsettled) -> Result<u64, RunnerError> {
        let Unsettled { from, to, parts, flush } = batches;
        for part in parts {
            part.applied().await?;
        }
        flush.applied().await?;
        if to > from {
            self.generations.commit(&self.name, self.generation, from, to, &[]).await?;
        }
        Ok(to)
    }

    /// The checkpoint after a batch that ended at `to`: the start of the oldest batches not settled yet.
    fn checkpoint(&self, to: u64) -> u64 {
        let unsettled = self.unsettled.as_ref().map(|batches| batches.from);
        unsettled.or(self.unflushed.as_ref().map(|batches| batches.from)).unwrap_or(to)
    }
}

fn fold_error(error: FoldError) -> RunnerError {
    match error {
        FoldError::Poison(error) => RunnerError::Poison(error),
        FoldError::Store(error) => RunnerError::Store(error),
    }
}
