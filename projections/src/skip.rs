//! The admin command that moves a stopped projection past its poison event.
//!
//! A projection never skips an event by itself. An operator who decides an event can be ignored runs
//! `dossier projections skip <name> --position P`; the decision is first recorded in the log (event
//! `ProjectionEventSkipped` on the stream `projection-<name>`, with who, why, and the event skipped), then the
//! projection is marked running again. Its checkpoint does not move: the batch that held the event is applied again,
//! without it, because runners, rebuilds and verification all leave out the positions recorded as skipped.

use std::collections::HashSet;

use dossier_events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use serde::Serialize;
use serde_json::json;

use crate::read_model::{ReadModelError, ReadModelStore};
use crate::runner::RunnerError;

/// The type of the event that records a skip.
pub const SKIPPED_EVENT: &str = "ProjectionEventSkipped";

/// The stream recording a projection's skips.
pub fn skip_stream(projection: &str) -> Result<StreamId, RunnerError> {
    StreamId::new(format!("projection-{projection}"))
        .map_err(|error| RunnerError::ReadModel(ReadModelError::Database(format!("{}: {}", error.field, error.reason))))
}

/// What a skip did.
#[derive(Clone, Debug, Serialize)]
pub struct SkipReport {
    /// The projection.
    pub projection: String,
    /// Its live generation.
    pub generation: u32,
    /// The event skipped.
    pub position: u64,
    /// Its type.
    pub event_type: String,
    /// Its stream.
    pub stream_id: String,
    /// The error that had stopped the projection.
    pub error: String,
    /// Where the skip is recorded.
    pub recorded_at_position: u64,
}

fn refuse(message: String) -> RunnerError {
    RunnerError::ReadModel(ReadModelError::Database(message))
}

/// Records the skip of the event at `position` and moves the stopped projection `projection` past it.
pub async fn skip_poison_event(
    log: &dyn EventStore,
    generations: &dyn ReadModelStore,
    projection: &str,
    position: u64,
    actor: &str,
    reason: &str,
) -> Result<SkipReport, RunnerError> {
    let generation = generations.live_generation(projection).await?;
    let checkpoint = generations.checkpoint(projection, generation).await?;
    let Some(checkpoint) = checkpoint.filter(|c| c.state == "stopped") else {
        return Err(refuse(format!(
            "projection {projection} (generation {generation}) is not stopped: nothing to skip"
        )));
    };
    let error = checkpoint.error.clone().unwrap_or_default();
    // The error that stopped it names the event's position ("position P: ..."): only that event can be skipped.
    if !error.contains(&format!("position {position}:")) {
        return Err(refuse(format!(
            "projection {projection} is not stopped at position {position}: it stopped with: {error}"
        )));
    }
    let poison = log.read_all(position.saturating_sub(1), 1).await?;
    let Some(poison) = poison.first().filter(|event| event.position == position) else {
        return Err(refuse(format!("there is no event at position {position}")));
    };
    let record = NewEvent::new(
        SKIPPED_EVENT,
        1,
        json!({
            "projection": projection,
            "generation": generation,
            "position": position,
            "event_type": poison.event_type,
            "stream_id": poison.stream_id.as_str(),
            "error": error,
            "reason": reason,
        }),
    );
    let mut metadata = EventMetadata::new("system", actor);
    // Running the command again after a crash finds the same record instead of writing a second one.
    metadata.idempotency_key = Some(format!("skip:{projection}:{generation}:{position}"));
    let recorded = log.append(&skip_stream(projection)?, ExpectedVersion::Any, vec![record], metadata).await?;
    if !generations.resume_stopped(projection, generation).await? {
        return Err(refuse(format!("projection {projection} moved while skipping; run the command again")));
    }
    tracing::warn!(projection, generation, position, actor, reason, "projection_event_skipped");
    Ok(SkipReport {
        projection: projection.to_owned(),
        generation,
        position,
        event_type: poison.event_type.clone(),
        stream_id: poison.stream_id.as_str().to_owned(),
        error,
        recorded_at_position: recorded.first_position,
    })
}

/// The positions an operator has skipped for `projection` (any generation).
pub async fn skipped_positions(log: &dyn EventStore, projection: &str) -> Result<HashSet<u64>, RunnerError> {
    let mut skipped = HashSet::new();
    let stream = skip_stream(projection)?;
    let mut from = 1;
    loop {
        let page = log.read_stream(&stream, from, 1_000).await?;
        let Some(last) = page.last() else { return Ok(skipped) };
        from = last.version + 1;
        for event in page.iter().filter(|event| event.event_type == SKIPPED_EVENT) {
            let data: serde_json::Value = serde_json::from_str(event.data.as_str())
                .map_err(|error| refuse(format!("{SKIPPED_EVENT} at position {}: {error}", event.position)))?;
            if let Some(position) = data.get("position").and_then(serde_json::Value::as_u64) {
                skipped.insert(position);
            }
        }
    }
}
