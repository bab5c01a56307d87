//! Decoding stored rows into events, shared by the backends.

use std::sync::Arc;

use uuid::Uuid;

use crate::batch::from_micros;
use crate::envelope::{EventData, EventMetadata, RecordedEvent, StreamId};
use crate::error::{StoreError, StoreResult};
use crate::hash::Hash;

/// The columns of one `events` row, borrowed from the driver's buffers (decoding copies only what it keeps).
pub(crate) struct StoredRow<'a> {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub schema_version: i64,
    pub data: &'a str,
    /// `None`: the same as the event before it, of the same append (the Postgres store writes an append's metadata
    /// once, on its first event).
    pub metadata: Option<&'a str>,
    pub recorded_at_micros: i64,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

/// The last metadata decoded, by its text: all events of one append share it, so a page of events mostly parses
/// it once.
#[derive(Default)]
pub(crate) struct MetadataCache {
    last: Option<(String, Arc<EventMetadata>)>,
}

impl StoredRow<'_> {
    /// Decodes the row; anything malformed is [`StoreError::Corrupt`] naming the position, stream and version.
    pub fn decode(&self, cache: &mut MetadataCache) -> StoreResult<RecordedEvent> {
        let position = u64::try_from(self.position).unwrap_or(0);
        let corrupt = |what: String| StoreError::Corrupt {
            position,
            reason: format!("stream {} version {}: {what}", self.stream_id, self.version),
        };
        let data = EventData::from_stored(self.data);
        let metadata = match (&cache.last, self.metadata) {
            (Some((_, parsed)), None) => Arc::clone(parsed),
            (None, None) => return Err(corrupt("metadata is missing and no earlier event carries it".into())),
            (Some((text, parsed)), Some(metadata)) if text == metadata => Arc::clone(parsed),
            (_, Some(metadata)) => {
                let parsed: Arc<EventMetadata> = Arc::new(
                    serde_json::from_str(metadata).map_err(|error| corrupt(format!("bad metadata: {error}")))?,
                );
                cache.last = Some((metadata.to_owned(), Arc::clone(&parsed)));
                parsed
            }
        };
        let prev_hash = Hash::from_slice(self.prev_hash).ok_or_else(|| corrupt("prev_hash is not 32 bytes".into()))?;
        let hash = Hash::from_slice(self.hash).ok_or_else(|| corrupt("hash is not 32 bytes".into()))?;
        let stream_id = StreamId::from_stored(self.stream_id);
        let version = u64::try_from(self.version).map_err(|_| corrupt("negative version".into()))?;
        let schema_version =
            u32::try_from(self.schema_version).map_err(|_| corrupt("schema_version out of range".into()))?;
        Ok(RecordedEvent {
            event_id: self.event_id,
            stream_id,
            version,
            position,
            event_type: self.event_type.to_owned(),
            schema_version,
            data,
            metadata,
            recorded_at: from_micros(self.recorded_at_micros),
            prev_hash,
            hash,
        })
    }
}

/// Converts a count or position to the signed 64-bit integer the databases store.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
