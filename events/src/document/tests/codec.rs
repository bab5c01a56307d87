//! Round trips through the store's envelopes, and refusals of events this code cannot read.

use serde_json::json;

use crate::NewEvent;
use crate::document::tests::fixtures::{every_event, recorded, uploaded};
use crate::document::{DocumentError, DocumentEvent, Stage, StageAttemptFailed};

#[test]
fn from_recorded_of_to_new_event_round_trips_every_variant() {
    let events = every_event();
    let mut types: Vec<&str> = events.iter().map(DocumentEvent::event_type).collect();
    types.dedup();
    assert_eq!(types, DocumentEvent::EVENT_TYPES, "every_event() must hold one event of every type");
    for (index, event) in events.iter().enumerate() {
        let new = event.to_new_event().unwrap();
        let position = index as u64 + 1;
        assert_eq!(DocumentEvent::from_recorded(&recorded(new, position, position)).unwrap(), *event);
    }
}

#[test]
fn from_recorded_of_event_read_back_from_json_text_round_trips() {
    // What a store does: serialise the payload to text and parse it back.
    for event in every_event() {
        let mut new = event.to_new_event().unwrap();
        new.data = serde_json::from_str(&new.data.to_string()).unwrap();
        assert_eq!(DocumentEvent::from_recorded(&recorded(new, 1, 1)).unwrap(), event);
    }
}

#[test]
fn to_new_event_names_type_and_current_schema_version() {
    let new = uploaded().to_new_event().unwrap();
    assert_eq!((new.event_type.as_str(), new.schema_version), ("DocumentUploaded", 2));
    assert_eq!(new.data["blob"]["size"], json!(2048));
    assert_eq!(new.event_id.get_version_num(), 7);
    for event in every_event().iter().skip(1) {
        assert_eq!(event.to_new_event().unwrap().schema_version, 1, "{}", event.event_type());
    }
}

#[test]
fn to_new_event_writes_stage_snake_case_and_retry_at_rfc3339() {
    let new = crate::document::tests::fixtures::attempt_failed(Stage::Chunk, 2).to_new_event().unwrap();
    assert_eq!(
        new.data,
        json!({ "stage": "chunk", "attempt": 2, "error": "timed out", "retry_at": "2025-03-01T12:00:30Z" })
    );
}

#[test]
fn to_new_event_with_unrecordable_retry_at_returns_encode() {
    let event: DocumentEvent = StageAttemptFailed {
        stage: Stage::Parse,
        attempt: 1,
        error: "x".to_owned(),
        retry_at: Some(time::macros::datetime!(2025-01-01 00:00 +01:00:30)),
    }
    .into();
    let error = event.to_new_event().unwrap_err();
    assert!(matches!(error, DocumentError::Encode { event_type: "StageAttemptFailed", .. }), "{error:?}");
}

#[test]
fn from_recorded_with_unknown_fields_ignores_them() {
    let mut new = uploaded().to_new_event().unwrap();
    new.data["added_in_a_later_release"] = json!({ "x": 1 });
    assert_eq!(DocumentEvent::from_recorded(&recorded(new, 1, 1)).unwrap(), uploaded());
}

#[test]
fn from_recorded_with_optional_fields_absent_uses_defaults() {
    let new = NewEvent::new("ReprocessRequested", 1, json!({}));
    let event = DocumentEvent::from_recorded(&recorded(new, 1, 1)).unwrap();
    assert_eq!(event, crate::document::ReprocessRequested { reason: None }.into());
}

#[test]
fn from_recorded_with_unknown_type_returns_unknown_event_type() {
    let new = NewEvent::new("DocumentTranslated", 1, json!({}));
    let error = DocumentEvent::from_recorded(&recorded(new, 4, 42)).unwrap_err();
    assert!(matches!(error, DocumentError::UnknownEventType { position: 42, version: 4, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("DocumentTranslated") && message.contains("42") && message.contains("v1"), "{message}");
}

#[test]
fn from_recorded_with_old_schema_version_returns_unsupported_schema_version() {
    let mut new = uploaded().to_new_event().unwrap();
    new.schema_version = 1;
    let error = DocumentEvent::from_recorded(&recorded(new, 1, 7)).unwrap_err();
    assert!(
        matches!(error, DocumentError::UnsupportedSchemaVersion { schema_version: 1, expected: 2, position: 7, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("DocumentUploaded v1") && message.contains("position 7"), "{message}");
}

#[test]
fn from_recorded_with_newer_schema_version_returns_unsupported_schema_version() {
    let new = NewEvent::new("DocumentReady", 2, json!({}));
    let error = DocumentEvent::from_recorded(&recorded(new, 1, 1)).unwrap_err();
    assert!(matches!(error, DocumentError::UnsupportedSchemaVersion { schema_version: 2, expected: 1, .. }));
}

#[test]
fn from_recorded_with_malformed_payload_returns_malformed_event() {
    let cases = [
        ("DocumentParsed", json!({ "text_sha256": "x", "parser": "p" })),
        ("StageAttemptFailed", json!({ "stage": "upload", "attempt": 1, "error": "x" })),
        ("ChunksEmbedded", json!({ "model": "m", "dimensions": -1, "vectors": [] })),
        ("DocumentReady", json!(null)),
    ];
    for (event_type, data) in cases {
        let error = DocumentEvent::from_recorded(&recorded(NewEvent::new(event_type, 1, data), 3, 9)).unwrap_err();
        assert!(matches!(&error, DocumentError::MalformedEvent { position: 9, .. }), "{error:?}");
        assert!(error.to_string().contains(event_type), "{error}");
    }
}
