//! Conversions between [`DocumentEvent`]s and the log's envelopes: [`NewEvent`] to append, [`RecordedEvent`] read.
//!
//! Reading expects events already upcast ([`Upcasters::apply`](crate::Upcasters::apply)): a schema version other
//! than the current one is refused rather than guessed at, since a payload read under the wrong schema would
//! silently change what the audit trail says happened.

use crate::document::error::DocumentError;
use crate::document::events::{
    ChunksEmbedded, DocumentChunked, DocumentDeleted, DocumentEvent, DocumentFailed, DocumentParsed, DocumentPayload,
    DocumentReady, DocumentUploaded, MetadataUpdated, ReprocessRequested, StageAttemptFailed,
};
use crate::envelope::{NewEvent, RecordedEvent};

impl DocumentEvent {
    /// The event as a [`NewEvent`] to append, with a fresh UUIDv7 id and the current schema version.
    ///
    /// Fails only for events built by hand with a value JSON cannot hold (a `retry_at` outside years 0–9999, or
    /// with a sub-minute UTC offset); events returned by [`decide`](crate::document::decide) always encode.
    pub fn to_new_event(&self) -> Result<NewEvent, DocumentError> {
        let data = match self {
            Self::DocumentUploaded(payload) => serde_json::to_value(payload),
            Self::DocumentParsed(payload) => serde_json::to_value(payload),
            Self::DocumentChunked(payload) => serde_json::to_value(payload),
            Self::ChunksEmbedded(payload) => serde_json::to_value(payload),
            Self::DocumentReady(payload) => serde_json::to_value(payload),
            Self::StageAttemptFailed(payload) => serde_json::to_value(payload),
            Self::DocumentFailed(payload) => serde_json::to_value(payload),
            Self::ReprocessRequested(payload) => serde_json::to_value(payload),
            Self::MetadataUpdated(payload) => serde_json::to_value(payload),
            Self::DocumentDeleted(payload) => serde_json::to_value(payload),
        }
        .map_err(|error| DocumentError::Encode { event_type: self.event_type(), reason: error.to_string() })?;
        Ok(NewEvent::new(self.event_type(), self.schema_version(), data))
    }

    /// Reads a recorded (and already upcast) event as a document event.
    pub fn from_recorded(event: &RecordedEvent) -> Result<Self, DocumentError> {
        match event.event_type.as_str() {
            DocumentUploaded::EVENT_TYPE => decode::<DocumentUploaded>(event),
            DocumentParsed::EVENT_TYPE => decode::<DocumentParsed>(event),
            DocumentChunked::EVENT_TYPE => decode::<DocumentChunked>(event),
            ChunksEmbedded::EVENT_TYPE => decode::<ChunksEmbedded>(event),
            DocumentReady::EVENT_TYPE => decode::<DocumentReady>(event),
            StageAttemptFailed::EVENT_TYPE => decode::<StageAttemptFailed>(event),
            DocumentFailed::EVENT_TYPE => decode::<DocumentFailed>(event),
            ReprocessRequested::EVENT_TYPE => decode::<ReprocessRequested>(event),
            MetadataUpdated::EVENT_TYPE => decode::<MetadataUpdated>(event),
            DocumentDeleted::EVENT_TYPE => decode::<DocumentDeleted>(event),
            _ => Err(DocumentError::UnknownEventType {
                stream: event.stream_id.clone(),
                version: event.version,
                position: event.position,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
            }),
        }
    }
}

/// Decodes one payload type, checking its schema version first.
fn decode<P: DocumentPayload>(event: &RecordedEvent) -> Result<DocumentEvent, DocumentError> {
    if event.schema_version != P::SCHEMA_VERSION {
        return Err(DocumentError::UnsupportedSchemaVersion {
            stream: event.stream_id.clone(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            expected: P::SCHEMA_VERSION,
        });
    }
    // Parsing the stored text straight into the payload type builds no intermediate JSON tree.
    event.data.parse::<P>().map(Into::into).map_err(|error| DocumentError::MalformedEvent {
        stream: event.stream_id.clone(),
        version: event.version,
        position: event.position,
        event_type: event.event_type.clone(),
        schema_version: event.schema_version,
        reason: error.to_string(),
    })
}
