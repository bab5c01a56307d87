//! The event envelope: what every stored event carries besides its payload.
//!
//! A [`NewEvent`] is what a caller asks to append; the store turns it into a [`RecordedEvent`] by giving it its
//! stream version, global position, timestamp and place in the stream's hash chain.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::hash::Hash;

/// Longest stream id the stores accept, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// Longest idempotency key, tenant id, actor or request id the stores accept, in bytes.
pub const MAX_METADATA_FIELD_LEN: usize = 255;

/// The name of one event stream, e.g. `document-0190c3c4-...`.
///
/// Non-empty, at most [`MAX_STREAM_ID_LEN`] bytes, printable (no control characters or whitespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// Why a stream id or a metadata field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    /// Which field was refused.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl StreamId {
    /// Validates and wraps a stream id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidField> {
        let id = id.into();
        check_text("stream_id", &id, MAX_STREAM_ID_LEN)?;
        if id.chars().any(char::is_whitespace) {
            return Err(InvalidField { field: "stream_id", reason: "must not contain whitespace".into() });
        }
        Ok(Self(id))
    }

    /// Wraps an id read back from the log, which was validated when it was written (any later edit of the row is
    /// caught by the hash chain), without validating it again on every read.
    pub(crate) fn from_stored(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// The stream of one document: `document-<uuid>`.
    pub fn for_document(document_id: Uuid) -> Self {
        Self(format!("document-{document_id}"))
    }

    /// The document id of a `document-<uuid>` stream, if it is one.
    pub fn document_id(&self) -> Option<Uuid> {
        self.0.strip_prefix("document-").and_then(|rest| Uuid::parse_str(rest).ok())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidField;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

/// Checks a free-text identifier: non-empty, bounded, no control characters.
pub(crate) fn check_text(field: &'static str, value: &str, max_len: usize) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField { field, reason: "must not be empty".into() });
    }
    if value.len() > max_len {
        return Err(InvalidField { field, reason: format!("is {} bytes long; the limit is {max_len}", value.len()) });
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidField { field, reason: "must not contain control characters".into() });
    }
    Ok(())
}

/// Who did what, on whose behalf, and as part of which request: recorded on every event of an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMetadata {
    /// The tenant the stream belongs to; idempotency keys are scoped by it.
    pub tenant_id: String,
    /// The acting user or system component (a JWT `sub`, or e.g. `system:pipeline`).
    pub actor: String,
    /// Shared by every event that one user intent caused, across streams and processes.
    pub correlation_id: Uuid,
    /// The event or command that directly caused this append.
    pub causation_id: Uuid,
    /// The HTTP request (or CLI invocation) that carried the command.
    pub request_id: String,
    /// Makes the append safe to retry: a key already used in the tenant returns the original result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl EventMetadata {
    /// Metadata for a fresh command with new correlation/causation/request ids.
    pub fn new(tenant_id: impl Into<String>, actor: impl Into<String>) -> Self {
        let id = Uuid::now_v7();
        Self {
            tenant_id: tenant_id.into(),
            actor: actor.into(),
            correlation_id: id,
            causation_id: id,
            request_id: id.to_string(),
            idempotency_key: None,
        }
    }

    /// The same metadata with an idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Checks every field's length and characters.
    pub fn validate(&self) -> Result<(), InvalidField> {
        check_text("tenant_id", &self.tenant_id, MAX_METADATA_FIELD_LEN)?;
        check_text("actor", &self.actor, MAX_METADATA_FIELD_LEN)?;
        check_text("request_id", &self.request_id, MAX_METADATA_FIELD_LEN)?;
        if let Some(key) = &self.idempotency_key {
            check_text("idempotency_key", key, MAX_METADATA_FIELD_LEN)?;
        }
        Ok(())
    }
}

/// An event a caller asks to append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique id of the event (UUIDv7, time-ordered).
    pub event_id: Uuid,
    /// The event's type name, e.g. `DocumentUploaded`.
    pub event_type: String,
    /// The version of `data`'s schema for this event type.
    pub schema_version: u32,
    /// The payload.
    pub data: serde_json::Value,
}

impl NewEvent {
    /// A new event with a fresh UUIDv7 id.
    pub fn new(event_type: impl Into<String>, schema_version: u32, data: serde_json::Value) -> Self {
        Self { event_id: Uuid::now_v7(), event_type: event_type.into(), schema_version, data }
    }
}

/// An event as committed to the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Unique id of the event.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version within the stream, from 1, without gaps.
    pub version: u64,
    /// Its position in the global log, from 1, without gaps, in commit order.
    pub position: u64,
    /// The event's type name.
    pub event_type: String,
    /// The version of `data`'s schema.
    pub schema_version: u32,
    /// The payload, as the canonical JSON text the hash covers.
    pub data: EventData,
    /// Who, for whom, and why (shared by every event of one append, hence the `Arc`).
    pub metadata: std::sync::Arc<EventMetadata>,
    /// When the store committed it (microsecond precision, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The hash of the stream's previous event ([`Hash::ZERO`] for version 1).
    pub prev_hash: Hash,
    /// SHA-256 over the canonical encoding of every field but `position` and `hash`.
    pub hash: Hash,
}

/// A recorded event's payload: JSON text, kept as text so that reading the log never builds a JSON tree nobody asked
/// for (consumers parse it straight into their own types) and the hash covers exactly what is stored.
///
/// The text is checked when an event is appended; text read back from the log is not parsed again (an edit of the
/// stored row, valid JSON or not, is what `dossier verify` reports).
#[derive(Clone)]
pub struct EventData(String);

impl EventData {
    /// The canonical encoding of a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(crate::hash::canonical_json(value))
    }

    /// Wraps JSON text, checking that it is JSON.
    pub fn from_json(text: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)?;
        Ok(Self(text))
    }

    /// Wraps text read back from the log.
    pub(crate) fn from_stored(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the payload into `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// Parses the payload into a JSON tree (`Null` when the stored text is not JSON).
    pub fn to_value(&self) -> serde_json::Value {
        self.parse().unwrap_or(serde_json::Value::Null)
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Embed the text as JSON, not as a string; text that is not JSON (an edited row) becomes a string.
        match serde_json::from_str::<&serde_json::value::RawValue>(&self.0) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self(raw.get().to_owned()))
    }
}

impl PartialEq for EventData {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller expects the stream's current version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `current` (`None` = absent) satisfies the expectation.
    pub fn matches(self, current: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::Exact(version) => current == Some(version),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// The result of a committed append (or of the original append, when an idempotency key replays it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOutcome {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// Version of the first appended event.
    pub first_version: u64,
    /// Version of the last appended event: the stream's version right after the append.
    pub last_version: u64,
    /// Global position of the first appended event.
    pub first_position: u64,
    /// Global position of the last appended event.
    pub last_position: u64,
    /// True when nothing was appended because the idempotency key had been used for this same request.
    pub replayed: bool,
    /// When the appended events were recorded (their `recorded_at`); `None` on a replay, whose events tell.
    #[serde(default)]
    pub recorded_at: Option<OffsetDateTime>,
}

impl AppendOutcome {
    /// The committed positions, in order.
    pub fn positions(&self) -> std::ops::RangeInclusive<u64> {
        self.first_position..=self.last_position
    }
}
