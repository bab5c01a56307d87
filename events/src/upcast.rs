//! Upcasting: old event schemas are rewritten to the current one whenever events are read.
//!
//! The log is immutable, so a payload stored under an old schema stays as it was written (and keeps hashing to its
//! recorded hash); readers see it through a chain of pure functions, each lifting one event type from version `n`
//! to `n + 1`, until no step applies.

use std::collections::HashMap;

use crate::envelope::{EventData, RecordedEvent};
use crate::error::{StoreError, StoreResult};

/// One step of a chain: lifts a payload from one schema version to the next.
pub type UpcastFn = fn(serde_json::Value) -> Result<serde_json::Value, String>;

/// The upcasting steps a store applies when it reads.
#[derive(Clone, Default)]
pub struct Upcasters {
    /// Steps by event type, then by the version they lift from.
    steps: HashMap<String, HashMap<u32, UpcastFn>>,
}

impl Upcasters {
    /// No steps: events are read as stored.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every step dossier's own event types need.
    pub fn standard() -> Self {
        let mut upcasters = Self::none();
        crate::document::register_upcasters(&mut upcasters);
        upcasters
    }

    /// Adds the step lifting `event_type` from `from_version` to `from_version + 1`.
    pub fn register(&mut self, event_type: &str, from_version: u32, step: UpcastFn) -> &mut Self {
        self.steps.entry(event_type.to_owned()).or_default().insert(from_version, step);
        self
    }

    /// Lifts each event to the newest schema its type has.
    pub fn apply_all(&self, events: Vec<RecordedEvent>) -> StoreResult<Vec<RecordedEvent>> {
        events.into_iter().map(|event| self.apply(event)).collect()
    }

    /// Lifts an event to the newest schema its type has.
    pub fn apply(&self, mut event: RecordedEvent) -> StoreResult<RecordedEvent> {
        let Some(steps) = self.steps.get(event.event_type.as_str()) else { return Ok(event) };
        while let Some(step) = steps.get(&event.schema_version) {
            let corrupt = |reason: String| StoreError::Corrupt {
                position: event.position,
                reason: format!("cannot upcast {} v{}: {reason}", event.event_type, event.schema_version),
            };
            let stored = event.data.parse().map_err(|error| corrupt(format!("data is not JSON: {error}")))?;
            event.data = EventData::from_value(&step(stored).map_err(corrupt)?);
            event.schema_version += 1;
        }
        Ok(event)
    }
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<_> =
            self.steps.iter().flat_map(|(name, versions)| versions.keys().map(move |v| (name, v))).collect();
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}
