//! Decoding stored rows into events, shared by the backends.

use uuid::Uuid;

use crate::batch::from_micros;
use crate::envelope::{EventMetadata, RecordedEvent, StreamId};
use crate::error::{StoreError, StoreResult};
use crate::hash::Hash;

/// The columns of one `events` row, as the drivers hand them over.
pub(crate) struct StoredRow {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub data: String,
    pub metadata: String,
    pub recorded_at_micros: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl StoredRow {
    /// Decodes the row; anything malformed is [`StoreError::Corrupt`] naming the position, stream and version.
    pub fn decode(self) -> StoreResult<RecordedEvent> {
        let position = u64::try_from(self.position).unwrap_or(0);
        let corrupt = |what: String| StoreError::Corrupt {
            position,
            reason: format!("stream {} version {}: {what}", self.stream_id, self.version),
        };
        let data = serde_json::from_str(&self.data).map_err(|error| corrupt(format!("data is not JSON: {error}")))?;
        let metadata: EventMetadata =
            serde_json::from_str(&self.metadata).map_err(|error| corrupt(format!("bad metadata: {error}")))?;
        let prev_hash = Hash::from_slice(&self.prev_hash).ok_or_else(|| corrupt("prev_hash is not 32 bytes".into()))?;
        let hash = Hash::from_slice(&self.hash).ok_or_else(|| corrupt("hash is not 32 bytes".into()))?;
        let stream_id = StreamId::new(self.stream_id.clone()).map_err(|error| corrupt(error.to_string()))?;
        let version = u64::try_from(self.version).map_err(|_| corrupt("negative version".into()))?;
        let schema_version =
            u32::try_from(self.schema_version).map_err(|_| corrupt("schema_version out of range".into()))?;
        Ok(RecordedEvent {
            event_id: self.event_id,
            stream_id,
            version,
            position,
            event_type: self.event_type,
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
