//! Failed attempts and giving up: only while processing, only for the stage the document is in.

use time::macros::datetime;

use crate::document::tests::fixtures::{STATUSES, attempt_failed, failed, history, retry_time, uploaded};
use crate::document::tests::given::given;
use crate::document::{DocumentCommand, DocumentError, DocumentFailed, DocumentStatus, Stage, StageAttemptFailed};

fn stage_failure(stage: Stage, attempt: u32) -> DocumentCommand {
    DocumentCommand::RecordStageFailure { stage, attempt, error: "timed out".to_owned(), retry_at: Some(retry_time()) }
}

fn fail(stage: Stage) -> DocumentCommand {
    DocumentCommand::Fail { stage, reason: "timed out 3 times".to_owned(), attempts: 3 }
}

/// Each status that runs a stage, with that stage.
const RUNNING: [(DocumentStatus, Stage); 3] = [
    (DocumentStatus::Uploaded, Stage::Parse),
    (DocumentStatus::Parsed, Stage::Chunk),
    (DocumentStatus::Chunked, Stage::Embed),
];

const STAGES: [Stage; 3] = [Stage::Parse, Stage::Chunk, Stage::Embed];

#[test]
fn decide_stage_failure_in_running_stage_emits_stage_attempt_failed() {
    for (status, stage) in RUNNING {
        given(history(status)).when(stage_failure(stage, 1)).then_expect([attempt_failed(stage, 1)]);
    }
}

#[test]
fn decide_stage_failure_after_earlier_failures_emits_next_attempt() {
    given([uploaded(), attempt_failed(Stage::Parse, 1), attempt_failed(Stage::Parse, 2)])
        .when(stage_failure(Stage::Parse, 3))
        .then_expect([attempt_failed(Stage::Parse, 3)]);
}

#[test]
fn decide_stage_failure_without_retry_emits_stage_attempt_failed_without_retry_at() {
    let command = DocumentCommand::RecordStageFailure {
        stage: Stage::Parse,
        attempt: 1,
        error: "boom".to_owned(),
        retry_at: None,
    };
    given([uploaded()]).when(command).then_expect([StageAttemptFailed {
        stage: Stage::Parse,
        attempt: 1,
        error: "boom".to_owned(),
        retry_at: None,
    }
    .into()]);
}

#[test]
fn decide_stage_failure_for_other_stage_returns_wrong_stage() {
    for (status, running) in RUNNING {
        for stage in STAGES.into_iter().filter(|&stage| stage != running) {
            given(history(status)).when(stage_failure(stage, 1)).then_error_eq(DocumentError::WrongStage {
                stage,
                expected: Some(running),
                status,
            });
        }
    }
}

#[test]
fn decide_stage_failure_when_embedded_returns_wrong_stage() {
    for stage in STAGES {
        given(history(DocumentStatus::Embedded))
            .when(stage_failure(stage, 1))
            .then_error_eq(DocumentError::WrongStage { stage, expected: None, status: DocumentStatus::Embedded });
    }
}

#[test]
fn decide_stage_failure_when_not_processing_returns_not_processing() {
    for status in [DocumentStatus::Ready, DocumentStatus::Failed] {
        given(history(status))
            .when(stage_failure(Stage::Parse, 1))
            .then_error_eq(DocumentError::NotProcessing { status });
    }
}

#[test]
fn decide_stage_failure_with_repeated_or_skipped_attempt_returns_attempt_out_of_sequence() {
    for attempt in [0, 1, 3] {
        given([uploaded(), attempt_failed(Stage::Parse, 1)])
            .when(stage_failure(Stage::Parse, attempt))
            .then_error_eq(DocumentError::AttemptOutOfSequence { stage: Stage::Parse, attempt, expected: 2 });
    }
}

#[test]
fn decide_stage_failure_after_stage_succeeded_counts_attempts_afresh() {
    given([uploaded(), attempt_failed(Stage::Parse, 1), crate::document::tests::fixtures::parsed()])
        .when(stage_failure(Stage::Chunk, 1))
        .then_expect([attempt_failed(Stage::Chunk, 1)]);
}

#[test]
fn decide_stage_failure_with_blank_error_returns_empty_field() {
    let command =
        DocumentCommand::RecordStageFailure { stage: Stage::Parse, attempt: 1, error: " ".to_owned(), retry_at: None };
    given([uploaded()]).when(command).then_error_eq(DocumentError::EmptyField { field: "error" });
}

#[test]
fn decide_stage_failure_with_unrecordable_retry_at_returns_invalid_retry_at() {
    let unrecordable = [datetime!(-0001-01-01 00:00 UTC), datetime!(2025-01-01 00:00 +01:00:30)];
    for retry_at in unrecordable {
        let command = DocumentCommand::RecordStageFailure {
            stage: Stage::Parse,
            attempt: 1,
            error: "x".to_owned(),
            retry_at: Some(retry_at),
        };
        given([uploaded()]).when(command).then_error(|error| matches!(error, DocumentError::InvalidRetryAt { .. }));
    }
}

#[test]
fn decide_fail_in_running_stage_emits_document_failed() {
    for (status, stage) in RUNNING {
        given(history(status)).when(fail(stage)).then_expect([failed(stage)]);
    }
}

#[test]
fn decide_fail_after_empty_parse_emits_document_failed_for_chunk_stage() {
    let command =
        DocumentCommand::Fail { stage: Stage::Chunk, reason: "the document has no text".to_owned(), attempts: 1 };
    given(history(DocumentStatus::Parsed)).when(command).then_expect([DocumentFailed {
        stage: Stage::Chunk,
        reason: "the document has no text".to_owned(),
        attempts: 1,
    }
    .into()]);
}

#[test]
fn decide_fail_for_other_stage_returns_wrong_stage() {
    given(history(DocumentStatus::Parsed)).when(fail(Stage::Embed)).then_error_eq(DocumentError::WrongStage {
        stage: Stage::Embed,
        expected: Some(Stage::Chunk),
        status: DocumentStatus::Parsed,
    });
}

#[test]
fn decide_fail_when_not_processing_returns_not_processing() {
    for status in STATUSES.into_iter().filter(|status| matches!(status, DocumentStatus::Ready | DocumentStatus::Failed))
    {
        given(history(status)).when(fail(Stage::Parse)).then_error_eq(DocumentError::NotProcessing { status });
    }
}

#[test]
fn decide_fail_with_blank_reason_returns_empty_field() {
    given([uploaded()])
        .when(DocumentCommand::Fail { stage: Stage::Parse, reason: String::new(), attempts: 3 })
        .then_error_eq(DocumentError::EmptyField { field: "reason" });
}
