//! Upload, and what every command does before an upload and after a deletion.

use serde_json::json;

use crate::document::tests::fixtures::{BLOB_SHA256, STATUSES, every_command, history, metadata, upload, uploaded};
use crate::document::tests::given::given;
use crate::document::{
    BlobRef, DocumentCommand, DocumentError, DocumentStatus, DocumentUploaded, MAX_FILENAME_LEN, MAX_METADATA_KEY_LEN,
    Metadata,
};

fn upload_of(filename: &str, media_type: &str, sha256: &str, metadata: Metadata) -> DocumentCommand {
    DocumentCommand::Upload {
        document_id: super::fixtures::document_id(),
        filename: filename.to_owned(),
        media_type: media_type.to_owned(),
        blob: BlobRef { sha256: sha256.to_owned(), size: 2048 },
        metadata,
    }
}

fn uploaded_of(filename: &str, media_type: &str) -> DocumentUploaded {
    DocumentUploaded {
        document_id: super::fixtures::document_id(),
        filename: filename.to_owned(),
        media_type: media_type.to_owned(),
        blob: BlobRef { sha256: BLOB_SHA256.to_owned(), size: 2048 },
        metadata: metadata(),
    }
}

#[test]
fn decide_upload_on_empty_stream_emits_document_uploaded() {
    given([]).when(upload()).then_expect([uploaded()]);
}

#[test]
fn decide_upload_with_upper_case_sha256_records_lower_case() {
    given([])
        .when(upload_of("report.pdf", "application/pdf", &BLOB_SHA256.to_ascii_uppercase(), metadata()))
        .then_expect([uploaded()]);
}

#[test]
fn decide_upload_when_document_exists_returns_already_exists() {
    for status in STATUSES.into_iter().filter(|&status| status != DocumentStatus::Deleted) {
        given(history(status))
            .when(upload())
            .then_error_eq(DocumentError::AlreadyExists { document_id: super::fixtures::document_id() });
    }
}

#[test]
fn decide_upload_after_delete_returns_deleted() {
    given(history(DocumentStatus::Deleted)).when(upload()).then_error_eq(DocumentError::Deleted);
}

#[test]
fn decide_upload_with_bad_filename_returns_invalid_filename() {
    let too_long = "a".repeat(MAX_FILENAME_LEN + 1);
    for filename in ["", too_long.as_str(), "../etc/passwd", "dir/report.pdf", "C:\\report.pdf", "a\nb.pdf", "..", "."]
    {
        given([])
            .when(upload_of(filename, "application/pdf", BLOB_SHA256, metadata()))
            .then_error(|error| matches!(error, DocumentError::InvalidFilename { .. }));
    }
}

#[test]
fn decide_upload_with_longest_or_unicode_filename_emits_document_uploaded() {
    let longest = format!("{}.pdf", "a".repeat(MAX_FILENAME_LEN - 4));
    for filename in [longest.as_str(), "résumé (final) v2.pdf", "..hidden", "report"] {
        given([]).when(upload_of(filename, "application/pdf", BLOB_SHA256, metadata())).then_expect([uploaded_of(
            filename,
            "application/pdf",
        )
        .into()]);
    }
}

#[test]
fn decide_upload_with_huge_filename_echoes_only_its_start() {
    let huge = "é".repeat(10_000);
    let error =
        crate::document::decide(&Default::default(), upload_of(&huge, "application/pdf", BLOB_SHA256, metadata()))
            .unwrap_err();
    let DocumentError::InvalidFilename { filename, .. } = error else { panic!("unexpected {error:?}") };
    assert!(filename.len() < 400 && filename.ends_with('…'), "{filename}");
}

#[test]
fn decide_upload_with_malformed_media_type_returns_invalid_media_type() {
    for media_type in ["", "pdf", "/pdf", "application/", "a/b/c", " text/plain", "text /plain", "text/pl ain", "-x/y"]
    {
        given([])
            .when(upload_of("report.pdf", media_type, BLOB_SHA256, metadata()))
            .then_error(|error| matches!(error, DocumentError::InvalidMediaType { .. }));
    }
}

#[test]
fn decide_upload_with_media_type_parameters_or_vendor_tree_emits_document_uploaded() {
    for media_type in
        ["text/plain; charset=utf-8", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"]
    {
        given([]).when(upload_of("report.pdf", media_type, BLOB_SHA256, metadata())).then_expect([uploaded_of(
            "report.pdf",
            media_type,
        )
        .into()]);
    }
}

#[test]
fn decide_upload_with_malformed_blob_sha256_returns_invalid_digest() {
    let not_hex = "g".repeat(64);
    let too_long = format!("{BLOB_SHA256}0");
    for sha256 in ["", "abc", not_hex.as_str(), too_long.as_str()] {
        given([])
            .when(upload_of("report.pdf", "application/pdf", sha256, metadata()))
            .then_error(|error| matches!(error, DocumentError::InvalidDigest { field: "blob.sha256", .. }));
    }
}

#[test]
fn decide_upload_with_bad_metadata_key_returns_invalid_metadata_key() {
    for key in [String::new(), "k".repeat(MAX_METADATA_KEY_LEN + 1), "tab\there".to_owned()] {
        let metadata = Metadata::from_iter([(key, json!(1))]);
        given([])
            .when(upload_of("report.pdf", "application/pdf", BLOB_SHA256, metadata))
            .then_error(|error| matches!(error, DocumentError::InvalidMetadataKey { .. }));
    }
}

#[test]
fn decide_upload_with_longest_metadata_key_emits_document_uploaded() {
    let metadata = Metadata::from_iter([("k".repeat(MAX_METADATA_KEY_LEN), json!(1))]);
    let mut expected = uploaded_of("report.pdf", "application/pdf");
    expected.metadata = metadata.clone();
    given([]).when(upload_of("report.pdf", "application/pdf", BLOB_SHA256, metadata)).then_expect([expected.into()]);
}

#[test]
fn decide_command_before_upload_returns_not_found() {
    for command in every_command().into_iter().filter(|command| !matches!(command, DocumentCommand::Upload { .. })) {
        given([]).when(command).then_error_eq(DocumentError::NotFound);
    }
}

#[test]
fn decide_any_command_after_delete_returns_deleted() {
    for command in every_command() {
        given(history(DocumentStatus::Deleted)).when(command).then_error_eq(DocumentError::Deleted);
    }
}
