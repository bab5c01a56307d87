//! The process manager's decisions, pure: what a document waits for next, and which command records a stage's
//! result. The document actor carries them out (starting stages, scheduling retries, appending commands).

use std::time::Duration;

use dossier_events::document::{DocumentCommand, DocumentState, DocumentStatus, Stage};
use time::OffsetDateTime;

use crate::runtime::pipeline::{StageError, StageOutput};

/// Attempts per stage before the document fails.
pub const MAX_ATTEMPTS: u32 = 3;

/// First retry delay; doubled per attempt, with jitter, never below the server's `Retry-After`.
pub const RETRY_BASE: Duration = Duration::from_millis(500);

/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// What a document needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Nothing: not uploaded, or ready, failed or deleted.
    Nothing,
    /// Record `MarkReady` (embedded, or chunked with no embedder).
    MarkReady,
    /// Wait for a recorded retry time, then decide again.
    WaitUntil(OffsetDateTime),
    /// Run a stage.
    Run {
        /// The stage.
        stage: Stage,
        /// Which attempt (from 1).
        attempt: u32,
    },
}

/// Decides what `state` needs next at time `now`.
pub fn next_step(state: &DocumentState, has_embedder: bool, now: OffsetDateTime) -> NextStep {
    let Some(status) = state.status else { return NextStep::Nothing };
    if status == DocumentStatus::Embedded || (status == DocumentStatus::Chunked && !has_embedder) {
        return NextStep::MarkReady;
    }
    let Some(stage) = state.pending_stage() else { return NextStep::Nothing };
    if let Some(retry_at) = state.retry_at
        && retry_at > now
    {
        return NextStep::WaitUntil(retry_at);
    }
    NextStep::Run { stage, attempt: state.failed_attempts + 1 }
}

/// The command that records a stage attempt's result. `jitter` in [0, 1) spreads retries.
pub fn record_result(
    stage: Stage,
    attempt: u32,
    result: Result<StageOutput, StageError>,
    jitter: f64,
    now: OffsetDateTime,
) -> DocumentCommand {
    match result {
        Ok(StageOutput::Parsed { text_sha256, text_length, title, page_count, parser }) => {
            DocumentCommand::RecordParse { text_sha256, text_length, title, page_count, parser }
        }
        Ok(StageOutput::Chunked { chunker, chunks }) => DocumentCommand::RecordChunks { chunker, chunks },
        Ok(StageOutput::Embedded { model, dimensions, vectors }) => {
            DocumentCommand::RecordEmbeddings { model, dimensions, vectors }
        }
        Err(StageError::Transient { reason, retry_after }) if attempt < MAX_ATTEMPTS => {
            let delay = crate::embed::backoff_delay(attempt, RETRY_BASE, RETRY_MAX, retry_after, jitter);
            DocumentCommand::RecordStageFailure { stage, attempt, error: reason, retry_at: Some(now + delay) }
        }
        Err(error) => DocumentCommand::Fail { stage, reason: error.reason().to_owned(), attempts: attempt },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_events::document::{BlobRef, Chunk, ChunkerSettings, DocumentEvent, decide, replay};
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    /// Given the commands already accepted, the state they lead to.
    fn given(commands: Vec<DocumentCommand>) -> DocumentState {
        let mut events: Vec<DocumentEvent> = Vec::new();
        for command in commands {
            let state = replay(&events);
            events.extend(decide(&state, command).expect("accepted"));
        }
        replay(&events)
    }

    fn upload() -> DocumentCommand {
        DocumentCommand::Upload {
            document_id: Uuid::nil(),
            filename: "a.txt".into(),
            media_type: "text/plain".into(),
            blob: BlobRef { sha256: "ab".repeat(32), size: 3 },
            metadata: Default::default(),
        }
    }

    fn parse() -> DocumentCommand {
        DocumentCommand::RecordParse {
            text_sha256: "cd".repeat(32),
            text_length: 3,
            title: None,
            page_count: None,
            parser: "plain-text".into(),
        }
    }

    fn chunks() -> DocumentCommand {
        DocumentCommand::RecordChunks {
            chunker: ChunkerSettings { max_chars: 10, overlap: 0 },
            chunks: vec![Chunk { index: 0, text: "abc".into(), byte_start: 0, byte_end: 3 }],
        }
    }

    fn transient(retry_after: Option<Duration>) -> Result<StageOutput, StageError> {
        Err(StageError::Transient { reason: "HTTP 503".into(), retry_after })
    }

    #[test]
    fn next_step_after_upload_runs_parse_attempt_one() {
        assert_eq!(next_step(&given(vec![upload()]), false, NOW), NextStep::Run { stage: Stage::Parse, attempt: 1 });
    }

    #[test]
    fn next_step_when_chunked_depends_on_embedder() {
        let state = given(vec![upload(), parse(), chunks()]);
        assert_eq!(next_step(&state, false, NOW), NextStep::MarkReady);
        assert_eq!(next_step(&state, true, NOW), NextStep::Run { stage: Stage::Embed, attempt: 1 });
    }

    #[test]
    fn next_step_with_pending_retry_waits_then_runs_next_attempt() {
        let retry_at = NOW + Duration::from_secs(2);
        let failure = DocumentCommand::RecordStageFailure {
            stage: Stage::Parse,
            attempt: 1,
            error: "x".into(),
            retry_at: Some(retry_at),
        };
        let state = given(vec![upload(), failure]);
        assert_eq!(next_step(&state, false, NOW), NextStep::WaitUntil(retry_at));
        let later = retry_at + Duration::from_millis(1);
        assert_eq!(next_step(&state, false, later), NextStep::Run { stage: Stage::Parse, attempt: 2 });
    }

    #[test]
    fn next_step_when_ready_failed_or_absent_is_nothing() {
        let ready = given(vec![upload(), parse(), chunks(), DocumentCommand::MarkReady]);
        assert_eq!(next_step(&ready, false, NOW), NextStep::Nothing);
        let failed =
            given(vec![upload(), DocumentCommand::Fail { stage: Stage::Parse, reason: "bad".into(), attempts: 1 }]);
        assert_eq!(next_step(&failed, false, NOW), NextStep::Nothing);
        assert_eq!(next_step(&DocumentState::default(), false, NOW), NextStep::Nothing);
    }

    #[test]
    fn record_result_transient_before_last_attempt_schedules_retry_not_before_retry_after() {
        let command = record_result(Stage::Embed, 1, transient(Some(Duration::from_secs(7))), 0.0, NOW);
        match command {
            DocumentCommand::RecordStageFailure { stage, attempt, retry_at: Some(at), .. } => {
                assert_eq!((stage, attempt), (Stage::Embed, 1));
                assert!(at >= NOW + Duration::from_secs(7), "{at}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn record_result_transient_on_last_attempt_or_permanent_fails_document() {
        let last = record_result(Stage::Embed, MAX_ATTEMPTS, transient(None), 0.5, NOW);
        assert!(matches!(last, DocumentCommand::Fail { attempts: MAX_ATTEMPTS, .. }), "{last:?}");
        let permanent =
            record_result(Stage::Parse, 1, Err(StageError::Permanent { reason: "encrypted".into() }), 0.5, NOW);
        assert!(
            matches!(&permanent, DocumentCommand::Fail { stage: Stage::Parse, attempts: 1, reason } if reason == "encrypted"),
            "{permanent:?}"
        );
    }

    #[test]
    fn record_result_then_decide_walks_the_whole_pipeline() {
        // Given/when/then over the full loop: each decision's command is accepted by the aggregate.
        let mut events: Vec<DocumentEvent> = decide(&DocumentState::default(), upload()).expect("upload");
        let outputs = [
            StageOutput::Parsed {
                text_sha256: "cd".repeat(32),
                text_length: 3,
                title: None,
                page_count: None,
                parser: "p".into(),
            },
            StageOutput::Chunked {
                chunker: ChunkerSettings { max_chars: 10, overlap: 0 },
                chunks: vec![Chunk { index: 0, text: "abc".into(), byte_start: 0, byte_end: 3 }],
            },
            StageOutput::Embedded { model: "m".into(), dimensions: 2, vectors: vec![vec![0.6, 0.8]] },
        ];
        for output in outputs {
            let NextStep::Run { stage, attempt } = next_step(&replay(&events), true, NOW) else {
                panic!("stage expected")
            };
            let command = record_result(stage, attempt, Ok(output), 0.0, NOW);
            events.extend(decide(&replay(&events), command).expect("accepted"));
        }
        assert_eq!(next_step(&replay(&events), true, NOW), NextStep::MarkReady);
        events.extend(decide(&replay(&events), DocumentCommand::MarkReady).expect("ready"));
        assert_eq!(replay(&events).status, Some(DocumentStatus::Ready));
    }
}
