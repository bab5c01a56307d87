//! The vector index as a [`Projection`]: each generation is a collection; its checkpoint and the live generation are
//! recorded next to the read model's (same tables, under the name `vector_index:<configuration>`).
//!
//! A batch's writes go to the collection first and the checkpoint moves after they are durable, so a crash between
//! the two replays the batch, whose writes are idempotent: each event takes effect once.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use dossier_events::{EventStore, RecordedEvent};

use crate::read_model::{ReadModelError, ReadModelStore};
use crate::runner::{BatchWriter, Projection, RunnerError};
use crate::vector::fold::FoldError;
use crate::vector::{Bm25, EmbeddingConfig, IndexOp, VectorFold, VectorIndex};

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
}

/// A batch is folded and applied in parts of this many events, so that folding one part (tokenising and BM25, on
/// this task) overlaps applying the previous one (on the blocking pool).
const PART_EVENTS: usize = 500;

#[async_trait]
impl BatchWriter for VectorWriter {
    async fn write(&mut self, from: u64, to: u64, batch: &[RecordedEvent]) -> Result<(), RunnerError> {
        let started = std::time::Instant::now();
        let Self { fold, log, index, collection, .. } = self;
        let mut fold_time = std::time::Duration::ZERO;
        // Ops are applied in the order their parts were folded; the checkpoint moves only after the last one. A part
        // that fails to fold (a poison event) leaves the parts before it applied: a prefix of the log, each event whole,
        // which the replay from the unmoved checkpoint writes again, unchanged (every op is idempotent).
        let mut folded: Option<Vec<IndexOp>> = None;
        for part in batch.chunks(PART_EVENTS) {
            let fold_part = async {
                let part_started = std::time::Instant::now();
                let ops = fold.fold(log.as_ref(), part).await.map_err(fold_error);
                (ops, part_started.elapsed())
            };
            let ((ops, took), applied) = match folded.take() {
                Some(previous) => {
                    // Durable with the last part's `apply`, before the checkpoint moves. `join!` polls in order: the
                    // apply goes first, so it is on the blocking pool before the fold (which does not yield while
                    // it tokenises) takes this thread; the other way round, the two ran one after the other.
                    let (applied, fold_result) = tokio::join!(index.apply_buffered(collection, previous), fold_part);
                    (fold_result, applied)
                }
                None => (fold_part.await, Ok(())),
            };
            applied?;
            fold_time += took;
            folded = Some(ops?);
        }
        if let Some(last) = folded {
            index.apply(collection, last).await?;
        }
        let applied = started.elapsed();
        self.generations.commit(&self.name, self.generation, from, to, &[]).await?;
        tracing::debug!(
            events = batch.len(),
            fold_ms = fold_time.as_secs_f64() * 1e3,
            fold_and_apply_ms = applied.as_secs_f64() * 1e3,
            commit_ms = (started.elapsed() - applied).as_secs_f64() * 1e3,
            "vector_batch_written"
        );
        Ok(())
    }
}

fn fold_error(error: FoldError) -> RunnerError {
    match error {
        FoldError::Poison(error) => RunnerError::Poison(error),
        FoldError::Store(error) => RunnerError::Store(error),
    }
}
