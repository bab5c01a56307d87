//! The `DocumentUploaded` v1 → v2 upcast, through the store's standard upcasters.

use serde_json::{Value, json};

use crate::document::tests::fixtures::{BLOB_SHA256, recorded, uploaded};
use crate::document::upcast::document_uploaded_v1_to_v2;
use crate::document::{DocumentEvent, DocumentPayload, DocumentUploaded};
use crate::{NewEvent, StoreError, Upcasters};

fn v1_data() -> Value {
    json!({
        "document_id": crate::document::tests::fixtures::document_id(),
        "filename": "report.pdf",
        "media_type": "application/pdf",
        "size": 2048,
        "sha256": BLOB_SHA256,
        "metadata": { "project": "apollo", "pages": 3 },
    })
}

#[test]
fn upcasters_standard_lifts_document_uploaded_v1_to_readable_v2() {
    let stored = recorded(NewEvent::new("DocumentUploaded", 1, v1_data()), 1, 5);
    let upcast = Upcasters::standard().apply(stored).unwrap();
    assert_eq!(upcast.schema_version, DocumentUploaded::SCHEMA_VERSION);
    assert_eq!(upcast.data.to_value()["blob"], json!({ "sha256": BLOB_SHA256, "size": 2048 }));
    assert_eq!(upcast.data.to_value().get("size"), None);
    assert_eq!(DocumentEvent::from_recorded(&upcast).unwrap(), uploaded());
}

#[test]
fn upcasters_standard_leaves_current_document_uploaded_alone() {
    let stored = recorded(uploaded().to_new_event().unwrap(), 1, 1);
    assert_eq!(Upcasters::standard().apply(stored.clone()).unwrap(), stored);
}

#[test]
fn upcasters_standard_with_malformed_v1_returns_corrupt() {
    let mut data = v1_data();
    data["size"] = json!("big");
    let stored = recorded(NewEvent::new("DocumentUploaded", 1, data), 1, 5);
    let error = Upcasters::standard().apply(stored).unwrap_err();
    assert!(matches!(&error, StoreError::Corrupt { position: 5, .. }), "{error:?}");
    assert!(error.to_string().contains("size"), "{error}");
}

#[test]
fn document_uploaded_v1_to_v2_keeps_unknown_fields() {
    let mut data = v1_data();
    data["uploaded_via"] = json!("cli");
    assert_eq!(document_uploaded_v1_to_v2(data).unwrap()["uploaded_via"], json!("cli"));
}

#[test]
fn document_uploaded_v1_to_v2_with_missing_field_names_it() {
    for field in ["document_id", "filename", "media_type", "size", "sha256", "metadata"] {
        let mut data = v1_data();
        data.as_object_mut().unwrap().remove(field);
        let error = document_uploaded_v1_to_v2(data).unwrap_err();
        assert_eq!(error, format!("missing field `{field}`"));
    }
}

#[test]
fn document_uploaded_v1_to_v2_with_ill_typed_field_names_it() {
    let cases = [
        ("document_id", json!("not-a-uuid")),
        ("document_id", json!(7)),
        ("filename", json!(null)),
        ("media_type", json!(["application/pdf"])),
        ("size", json!(-1)),
        ("size", json!(1.5)),
        ("sha256", json!(42)),
        ("metadata", json!("none")),
    ];
    for (field, value) in cases {
        let mut data = v1_data();
        data[field] = value;
        let error = document_uploaded_v1_to_v2(data).unwrap_err();
        assert!(error.contains(&format!("`{field}`")), "{field}: {error}");
    }
}

#[test]
fn document_uploaded_v1_to_v2_with_non_object_returns_error() {
    assert_eq!(document_uploaded_v1_to_v2(json!([1])).unwrap_err(), "expected a JSON object, got an array");
}
