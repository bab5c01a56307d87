//! Blue/green rebuilds of any projection, and verification of the read model.
//!
//! A rebuild fills the next generation from position 0 while the live one keeps serving (and keeps being updated
//! by its runner); once the new generation is within one batch of the head it is switched in with one conditional
//! update and the old generation's rows are dropped. Live runners notice the switch and continue on the new
//! generation from its checkpoint. An interrupted rebuild resumes from the new generation's checkpoint; one that
//! stopped at a poison event starts over after the event is dealt with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dossier_events::EventStore;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::read_model::{ChunkRow, DocumentChange, DocumentRow, ReadModelError, ReadModelStore, apply};
use crate::runner::{
    Projection, ProjectionStatus, READ_MODEL, ReadModelProjection, RunnerConfig, RunnerError, run_projection,
};

/// What a rebuild did.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildReport {
    /// The generation replaced.
    pub from_generation: u32,
    /// The generation now live.
    pub to_generation: u32,
    /// The position the new generation had reached at the switch.
    pub checkpoint: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Rebuilds the read model into a new generation and switches it in.
pub async fn rebuild_read_model(
    log: Arc<dyn EventStore>,
    read_model: Arc<dyn ReadModelStore>,
    config: RunnerConfig,
    status: watch::Sender<ProjectionStatus>,
) -> Result<RebuildReport, RunnerError> {
    rebuild(log, &ReadModelProjection::new(read_model), config, status).await
}

/// Rebuilds a projection into a new generation and switches it in.
pub async fn rebuild(
    log: Arc<dyn EventStore>,
    projection: &dyn Projection,
    config: RunnerConfig,
    status: watch::Sender<ProjectionStatus>,
) -> Result<RebuildReport, RunnerError> {
    let started = std::time::Instant::now();
    let name = projection.name().to_owned();
    let generations = Arc::clone(projection.generations());
    let live = generations.live_generation(&name).await?;
    let next = live + 1;
    // A generation left by a rebuild that stopped at a poison event starts over; one merely interrupted resumes.
    if let Some(checkpoint) = generations.checkpoint(&name, next).await?
        && checkpoint.state != "running"
    {
        projection.drop_generation(next).await?;
    }
    status.send_modify(|s| s.generation = next);
    loop {
        let head = log.head_position().await?;
        run_projection(Arc::clone(&log), projection, next, config, status.clone(), Some(head)).await?;
        let now = log.head_position().await?;
        if now.saturating_sub(head) <= config.batch_size as u64 {
            break;
        }
    }
    // The new generation must exist even when the log is empty (the runner prepares it only when there is work).
    projection.prepare(next).await?;
    if !generations.switch_live(&name, live, next).await? {
        return Err(RunnerError::ReadModel(ReadModelError::Database(format!(
            "another rebuild switched {name} away from generation {live} first"
        ))));
    }
    projection.switched(next).await?;
    projection.drop_generation(live).await?;
    let checkpoint = generations.checkpoint(&name, next).await?.map_or(0, |c| c.position);
    tracing::info!(projection = %name, from = live, to = next, checkpoint, "projection_rebuilt");
    Ok(RebuildReport {
        from_generation: live,
        to_generation: next,
        checkpoint,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One difference between the stored read model and a replay of the log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "difference", rename_all = "snake_case")]
pub enum Difference {
    /// The replay has a document the read model lacks.
    MissingDocument {
        /// The document.
        document_id: Uuid,
    },
    /// The read model has a document the replay does not.
    ExtraDocument {
        /// The document.
        document_id: Uuid,
    },
    /// The document's row differs.
    DifferentDocument {
        /// The document.
        document_id: Uuid,
        /// Field names that differ.
        fields: Vec<String>,
    },
    /// The document's chunks differ.
    DifferentChunks {
        /// The document.
        document_id: Uuid,
        /// Chunks in the replay.
        expected: usize,
        /// Chunks stored.
        found: usize,
    },
}

/// Compares the live generation (up to its checkpoint) with a replay of the log up to the same position.
pub async fn verify_read_model(
    log: &dyn EventStore,
    read_model: &dyn ReadModelStore,
) -> Result<Vec<Difference>, RunnerError> {
    let generation = read_model.live_generation(READ_MODEL).await?;
    let checkpoint = read_model.checkpoint(READ_MODEL, generation).await?.map_or(0, |c| c.position);
    let skipped = crate::skip::skipped_positions(log, READ_MODEL).await?;
    let mut expected: BTreeMap<Uuid, DocumentChange> = BTreeMap::new();
    let mut position = 0;
    while position < checkpoint {
        let page = log.read_all(position, 1_000).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for event in page.iter().filter(|event| event.position <= checkpoint && !skipped.contains(&event.position)) {
            let Some(document_id) = event.stream_id.document_id() else { continue };
            // `apply` only touches the chunks on events that replace them, so they stay current across events.
            apply(expected.entry(document_id).or_default(), document_id, event)?;
        }
    }
    let stored = read_model.all_document_ids(generation).await?;
    let mut differences = Vec::new();
    for id in stored.iter().filter(|id| !expected.contains_key(id)) {
        differences.push(Difference::ExtraDocument { document_id: *id });
    }
    let stored: std::collections::HashSet<Uuid> = stored.into_iter().collect();
    for (document_id, change) in &expected {
        let Some(row) = &change.row else { continue };
        if !stored.contains(document_id) {
            differences.push(Difference::MissingDocument { document_id: *document_id });
            continue;
        }
        let Some(found) = read_model.get_document(generation, &row.tenant_id, *document_id).await? else {
            differences.push(Difference::MissingDocument { document_id: *document_id });
            continue;
        };
        let fields = differing_fields(row, &found);
        if !fields.is_empty() {
            differences.push(Difference::DifferentDocument { document_id: *document_id, fields });
        }
        let chunks = read_model.chunks(generation, *document_id, 0, usize::MAX).await?;
        if !same_chunks(&change.chunks, &chunks) {
            differences.push(Difference::DifferentChunks {
                document_id: *document_id,
                expected: change.chunks.len(),
                found: chunks.len(),
            });
        }
    }
    Ok(differences)
}

fn same_chunks(expected: &[ChunkRow], found: &[ChunkRow]) -> bool {
    let by_index: HashMap<u32, &ChunkRow> = expected.iter().map(|chunk| (chunk.chunk_index, chunk)).collect();
    expected.len() == found.len() && found.iter().all(|chunk| by_index.get(&chunk.chunk_index) == Some(&chunk))
}

fn differing_fields(expected: &DocumentRow, found: &DocumentRow) -> Vec<String> {
    let (Ok(serde_json::Value::Object(expected)), Ok(serde_json::Value::Object(found))) =
        (serde_json::to_value(expected), serde_json::to_value(found))
    else {
        return vec!["<unserialisable>".to_owned()];
    };
    expected.iter().filter(|(key, value)| found.get(*key) != Some(value)).map(|(key, _)| key.clone()).collect()
}
