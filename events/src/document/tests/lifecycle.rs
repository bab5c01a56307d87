//! Reprocessing, metadata updates and deletion.

use serde_json::json;

use crate::document::tests::fixtures::{STATUSES, history, reprocess_requested};
use crate::document::tests::given::given;
use crate::document::{
    DocumentCommand, DocumentDeleted, DocumentError, DocumentStatus, MAX_METADATA_KEY_LEN, Metadata, MetadataUpdated,
};

fn update(set: &[(&str, serde_json::Value)], unset: &[&str]) -> DocumentCommand {
    DocumentCommand::UpdateMetadata {
        set: set.iter().map(|(key, value)| ((*key).to_owned(), value.clone())).collect(),
        unset: unset.iter().map(|key| (*key).to_owned()).collect(),
    }
}

#[test]
fn decide_reprocess_when_ready_or_failed_emits_reprocess_requested() {
    for status in [DocumentStatus::Ready, DocumentStatus::Failed] {
        given(history(status))
            .when(DocumentCommand::RequestReprocess { reason: Some("new parser".to_owned()) })
            .then_expect([reprocess_requested()]);
    }
}

#[test]
fn decide_reprocess_while_processing_returns_reprocess_not_allowed() {
    for status in STATUSES.into_iter().filter(|status| status.is_processing()) {
        given(history(status))
            .when(DocumentCommand::RequestReprocess { reason: None })
            .then_error_eq(DocumentError::ReprocessNotAllowed { status });
    }
}

#[test]
fn decide_update_metadata_emits_metadata_updated() {
    for status in STATUSES.into_iter().filter(|&status| status != DocumentStatus::Deleted) {
        given(history(status)).when(update(&[("owner", json!("ana"))], &["pages"])).then_expect([MetadataUpdated {
            set: Metadata::from_iter([("owner".to_owned(), json!("ana"))]),
            unset: vec!["pages".to_owned()],
        }
        .into()]);
    }
}

#[test]
fn decide_update_metadata_with_nothing_to_change_emits_nothing() {
    given(history(DocumentStatus::Ready)).when(update(&[], &[])).then_expect([]);
}

#[test]
fn decide_update_metadata_with_key_set_and_unset_returns_metadata_key_set_and_unset() {
    given(history(DocumentStatus::Ready))
        .when(update(&[("owner", json!("ana")), ("team", json!("x"))], &["pages", "team"]))
        .then_error_eq(DocumentError::MetadataKeySetAndUnset { key: "team".to_owned() });
}

#[test]
fn decide_update_metadata_with_bad_key_returns_invalid_metadata_key() {
    let too_long = "k".repeat(MAX_METADATA_KEY_LEN + 1);
    for command in [update(&[("", json!(1))], &[]), update(&[], &[""]), update(&[(&too_long, json!(1))], &[])] {
        given(history(DocumentStatus::Ready))
            .when(command)
            .then_error(|error| matches!(error, DocumentError::InvalidMetadataKey { .. }));
    }
}

#[test]
fn decide_delete_emits_document_deleted() {
    for status in STATUSES.into_iter().filter(|&status| status != DocumentStatus::Deleted) {
        given(history(status))
            .when(DocumentCommand::Delete { reason: Some("duplicate".to_owned()) })
            .then_expect([DocumentDeleted { reason: Some("duplicate".to_owned()) }.into()]);
    }
}

#[test]
fn decide_delete_twice_returns_deleted() {
    given(history(DocumentStatus::Deleted))
        .when(DocumentCommand::Delete { reason: None })
        .then_error_eq(DocumentError::Deleted);
}
