//! The tamper-evident hash chain.
//!
//! Each event's hash is SHA-256 over a canonical, length-prefixed encoding of every envelope field except
//! `position` (assigned by the log, not the stream) and the hash itself; `prev_hash` ties it to the stream's
//! previous event. JSON values enter the encoding as [`canonical_json`], which does not depend on how a JSON
//! library orders object keys, so an event read back from any backend hashes to the same value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::envelope::{EventMetadata, RecordedEvent};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of a stream's first event.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, hex::FromHexError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps a 32-byte slice; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The fields of an event that its hash covers.
#[derive(Clone, Copy)]
pub struct HashInput<'a> {
    /// See [`RecordedEvent::event_id`].
    pub event_id: &'a uuid::Uuid,
    /// See [`RecordedEvent::stream_id`].
    pub stream_id: &'a str,
    /// See [`RecordedEvent::version`].
    pub version: u64,
    /// See [`RecordedEvent::event_type`].
    pub event_type: &'a str,
    /// See [`RecordedEvent::schema_version`].
    pub schema_version: u32,
    /// Canonical JSON of the payload.
    pub data_json: &'a str,
    /// Canonical JSON of the metadata.
    pub metadata_json: &'a str,
    /// `recorded_at` as microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// See [`RecordedEvent::prev_hash`].
    pub prev_hash: &'a Hash,
}

const DOMAIN: &[u8] = b"dossier.event.v1\0";

impl HashInput<'_> {
    /// SHA-256 over the canonical encoding.
    pub fn digest(&self) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update(self.event_id.as_bytes());
        put_bytes(&mut hasher, self.stream_id.as_bytes());
        hasher.update(self.version.to_be_bytes());
        put_bytes(&mut hasher, self.event_type.as_bytes());
        hasher.update(self.schema_version.to_be_bytes());
        put_bytes(&mut hasher, self.data_json.as_bytes());
        put_bytes(&mut hasher, self.metadata_json.as_bytes());
        hasher.update(self.recorded_at_micros.to_be_bytes());
        hasher.update(self.prev_hash.0);
        Hash(hasher.finalize().into())
    }
}

fn put_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

/// Microseconds since the Unix epoch: the precision every backend stores timestamps with.
pub fn unix_micros(at: time::OffsetDateTime) -> i64 {
    // i128 → i64 cannot overflow for any date time's range can represent within ±292,000 years.
    (at.unix_timestamp_nanos() / 1_000) as i64
}

/// The metadata as canonical JSON.
pub fn metadata_json(metadata: &EventMetadata) -> String {
    // Serialising a struct of strings and UUIDs to a Value cannot fail.
    let value = serde_json::to_value(metadata).unwrap_or(serde_json::Value::Null);
    canonical_json(&value)
}

/// Recomputes the hash an event should carry from its fields (its payload text as stored, which the store wrote in
/// canonical form: any later edit, even one that only reformats it, changes the hash).
pub fn compute_hash(event: &RecordedEvent) -> Hash {
    let metadata_json = metadata_json(&event.metadata);
    HashInput {
        event_id: &event.event_id,
        stream_id: event.stream_id.as_str(),
        version: event.version,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        data_json: event.data.as_str(),
        metadata_json: &metadata_json,
        recorded_at_micros: unix_micros(event.recorded_at),
        prev_hash: &event.prev_hash,
    }
    .digest()
}

/// Serialises a JSON value with object keys sorted by their UTF-8 bytes and no insignificant whitespace.
///
/// Numbers print as serde_json prints them (shortest round-trip form for floats), so parsing the output and
/// encoding it again gives the same bytes.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    // serde_json's string escaping is fixed by the JSON grammar it implements; a &str always serialises.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"z": [true, null, 1.5], "y": "é\n"}});
        assert_eq!(canonical_json(&value), r#"{"a":{"y":"é\n","z":[true,null,1.5]},"b":1}"#);
    }

    #[test]
    fn canonical_json_round_trips_to_same_bytes() {
        let value = json!({"f": 0.1, "big": 1e300, "neg": -7, "u": u64::MAX, "s": "\u{1}\"\\"});
        let first = canonical_json(&value);
        let reparsed: serde_json::Value = serde_json::from_str(&first).expect("valid json");
        assert_eq!(canonical_json(&reparsed), first);
    }

    #[test]
    fn digest_changes_when_any_field_changes() {
        let id = uuid::Uuid::nil();
        let prev = Hash::ZERO;
        let base = HashInput {
            event_id: &id,
            stream_id: "s",
            version: 1,
            event_type: "T",
            schema_version: 1,
            data_json: "{}",
            metadata_json: "{}",
            recorded_at_micros: 0,
            prev_hash: &prev,
        };
        let reference = base.digest();
        let other_prev = Hash([1; 32]);
        let variants = [
            HashInput { stream_id: "t", ..base },
            HashInput { version: 2, ..base },
            HashInput { event_type: "U", ..base },
            HashInput { schema_version: 2, ..base },
            HashInput { data_json: "{\"a\":1}", ..base },
            HashInput { metadata_json: "[]", ..base },
            HashInput { recorded_at_micros: 1, ..base },
            HashInput { prev_hash: &other_prev, ..base },
        ];
        for variant in variants {
            assert_ne!(variant.digest(), reference);
        }
        // Length prefixes keep field boundaries apart: moving a byte between fields changes the hash.
        let shifted = HashInput { stream_id: "sT", event_type: "", ..base };
        let unshifted = HashInput { stream_id: "s", event_type: "T", ..base };
        assert_ne!(shifted.digest(), unshifted.digest());
    }
}
