//! The ingestion runtime on each backend: uploads flow through parse → chunk → ready, deduplication, rejections,
//! and supervision (crash → restart, budget → escalation, isolation between documents).

use std::sync::Arc;
use std::time::Duration;

use dossier_actors::runtime::document::CommandRequest;
use dossier_actors::runtime::error::CommandError;
use dossier_actors::runtime::restart::RestartPolicy;
use dossier_actors::runtime::{Runtime, RuntimeConfig, UploadRequest};
use dossier_events::document::{DocumentCommand, DocumentError, DocumentStatus};
use dossier_events::{EventMetadata, EventStore, StreamId};
use uuid::Uuid;

use crate::contract_tests;
use crate::support::counting_store::CountingStore;
use crate::support::{Backend, Scratch};

contract_tests!(
    upload_markdown_reaches_ready_through_each_stage_once,
    upload_of_a_new_document_reads_no_stream_and_tells_when_it_was_recorded,
    upload_command_for_an_existing_document_is_rejected_by_a_fresh_actor,
    upload_same_bytes_twice_returns_existing_document,
    upload_empty_oversized_or_badly_named_is_rejected_and_writes_nothing,
    upload_unparseable_file_fails_at_once_with_recorded_reason,
    crashed_document_actor_restarts_and_other_documents_are_unaffected,
    reprocess_ready_document_runs_pipeline_again_then_delete_allows_only_reads,
    idle_document_actors_are_passivated_and_come_back_with_their_state,
);

pub fn config(scratch: &Scratch) -> RuntimeConfig {
    let mut config = RuntimeConfig::new(scratch.data_dir());
    config.chunking.max_chars = 200;
    config.chunking.overlap = 20;
    config.max_upload_bytes = 64 * 1024;
    config
}

pub fn upload(name: &str, bytes: &[u8]) -> UploadRequest {
    UploadRequest {
        filename: name.to_owned(),
        media_type: None,
        bytes: bytes.to_vec(),
        metadata: serde_json::Map::new(),
        event_metadata: EventMetadata::new("tenant-a", "alice"),
    }
}

/// Waits until the document is ready or failed.
pub async fn settle(runtime: &Runtime, document_id: Uuid) -> DocumentStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = runtime.snapshot(document_id).await.expect("snapshot").expect("document exists");
        let status = snapshot.state.status.expect("status");
        if matches!(status, DocumentStatus::Ready | DocumentStatus::Failed) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "document stuck in {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn event_types(store: &dyn EventStore, document_id: Uuid) -> Vec<String> {
    let events = store.read_stream(&StreamId::for_document(document_id), 1, 1_000).await.expect("read");
    events.into_iter().map(|event| event.event_type).collect()
}

const MARKDOWN: &str = "# Field notes\n\nThe heron waits at the edge of the reeds. It is patient.\n\n\
    ## Weather\n\nRain came in the afternoon and the river rose by a hand's width before dusk.\n\n\
    ## Birds\n\nA kingfisher, two herons and a flock of starlings crossed the water.\n";

async fn upload_markdown_reaches_ready_through_each_stage_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let outcome = runtime.upload(upload("notes.md", MARKDOWN.as_bytes())).await.expect("upload");
    assert!(!outcome.deduplicated);
    assert_eq!(outcome.state.media_type.as_deref(), Some("text/markdown"));
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Ready);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(types, ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "DocumentReady"]);
    let snapshot = runtime.snapshot(outcome.document_id).await.expect("snapshot").expect("exists");
    assert!(snapshot.state.chunk_count >= 2, "200-char chunks: {}", snapshot.state.chunk_count);
    assert_eq!(snapshot.state.parse.as_ref().and_then(|p| p.title.as_deref()), Some("Field notes"));
    // The pipeline's events carry the upload's correlation id and name the pipeline as actor.
    let events = store.read_stream(&StreamId::for_document(outcome.document_id), 1, 10).await.expect("read");
    assert!(events.iter().all(|e| e.metadata.correlation_id == events[0].metadata.correlation_id));
    assert_eq!(events[1].metadata.actor, "system:pipeline");
    assert_eq!(events[1].metadata.causation_id, events[0].event_id);
    runtime.shutdown();
}

async fn upload_of_a_new_document_reads_no_stream_and_tells_when_it_was_recorded(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let inner = scratch.open().await;
    let store = Arc::new(CountingStore::new(Arc::clone(&inner)));
    let runtime = Runtime::start(Arc::clone(&store) as Arc<dyn EventStore>, config(&scratch)).await.expect("runtime");
    let before = store.stream_reads();
    let outcome = runtime.upload(upload("notes.md", MARKDOWN.as_bytes())).await.expect("upload");
    assert_eq!(store.stream_reads(), before, "the new document's actor read its (empty) stream");
    let events = inner.read_stream(&StreamId::for_document(outcome.document_id), 1, 10).await.expect("read");
    let recorded = outcome.recorded.expect("the outcome tells when the upload was recorded");
    assert_eq!((recorded.first, recorded.last), (events[0].recorded_at, events[0].recorded_at));
    assert_eq!(outcome.state.version, 1);
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Ready);
    runtime.shutdown();
}

async fn upload_command_for_an_existing_document_is_rejected_by_a_fresh_actor(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let existing = runtime.upload(upload("notes.md", MARKDOWN.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, existing.document_id).await, DocumentStatus::Ready);
    runtime.shutdown();
    // A new runtime has no actor for the document; an upload command starts one that skips reading the stream,
    // and the append's expected version (no stream) is what refuses it.
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let command = DocumentCommand::Upload {
        document_id: existing.document_id,
        filename: "again.md".into(),
        media_type: "text/markdown".into(),
        blob: existing.state.blob.clone().expect("blob"),
        metadata: serde_json::Map::new(),
    };
    let metadata = EventMetadata::new("tenant-a", "alice");
    let request = CommandRequest { document_id: existing.document_id, command, metadata, expected_version: None };
    let refused = runtime.execute(request).await;
    assert!(
        matches!(refused, Err(CommandError::Rejected(DocumentError::AlreadyExists { document_id })) if document_id == existing.document_id),
        "{refused:?}"
    );
    let types = event_types(store.as_ref(), existing.document_id).await;
    assert_eq!(types, ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "DocumentReady"]);
    // The actor now holds the stream as it is.
    let snapshot = runtime.snapshot(existing.document_id).await.expect("snapshot").expect("exists");
    assert_eq!(snapshot.state.status, Some(DocumentStatus::Ready));
    assert_eq!(snapshot.state.version, 4);
    runtime.shutdown();
}

async fn upload_same_bytes_twice_returns_existing_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let first = runtime.upload(upload("a.txt", b"same bytes")).await.expect("first");
    let second = runtime.upload(upload("b.txt", b"same bytes")).await.expect("second");
    assert!(second.deduplicated);
    assert_eq!(second.document_id, first.document_id);
    // Another tenant gets its own document.
    let mut other = upload("a.txt", b"same bytes");
    other.event_metadata.tenant_id = "tenant-b".into();
    let third = runtime.upload(other).await.expect("other tenant");
    assert!(!third.deduplicated);
    assert_ne!(third.document_id, first.document_id);
    runtime.shutdown();
    // The index survives a restart: recovery rebuilds it from the log.
    // Recovery has filled the index from the log before start returns.
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let again = runtime.upload(upload("c.txt", b"same bytes")).await.expect("again");
    assert!(again.deduplicated);
    assert_eq!(again.document_id, first.document_id);
    runtime.shutdown();
}

async fn upload_empty_oversized_or_badly_named_is_rejected_and_writes_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let empty = runtime.upload(upload("empty.txt", b"")).await.expect_err("empty");
    assert!(empty.to_string().contains("empty"), "{empty}");
    let big = runtime.upload(upload("big.txt", &vec![b'a'; 64 * 1024 + 1])).await.expect_err("too big");
    assert!(big.to_string().contains("over the limit"), "{big}");
    for name in ["../etc/passwd", "a/b.txt", "bell\u{7}.txt"] {
        let error = runtime.upload(upload(name, b"fine text")).await.expect_err(name);
        assert!(error.to_string().to_lowercase().contains("filename"), "{name}: {error}");
    }
    assert_eq!(store.head_position().await.expect("head"), 0);
    assert!(!scratch.data_dir().join("blobs").exists(), "no blob may be written for a refused upload");
    runtime.shutdown();
}

async fn upload_unparseable_file_fails_at_once_with_recorded_reason(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    let image = runtime.upload(upload("picture.png", &bytes)).await.expect("upload is recorded");
    assert_eq!(settle(&runtime, image.document_id).await, DocumentStatus::Failed);
    let snapshot = runtime.snapshot(image.document_id).await.expect("snapshot").expect("exists");
    let failure = snapshot.state.failure.expect("failure");
    assert_eq!(failure.attempts, 1, "permanent errors are not retried");
    assert!(failure.reason.to_lowercase().contains("unsupported"), "{}", failure.reason);
    let types = event_types(store.as_ref(), image.document_id).await;
    assert_eq!(types, ["DocumentUploaded", "DocumentFailed"]);
    let invalid = runtime.upload(upload("broken.txt", b"valid start \xff\xfe end")).await.expect("upload");
    assert_eq!(settle(&runtime, invalid.document_id).await, DocumentStatus::Failed);
    runtime.shutdown();
}

async fn crashed_document_actor_restarts_and_other_documents_are_unaffected(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let mut config = config(&scratch);
    config.document_restarts = RestartPolicy {
        max_restarts: 2,
        window: Duration::from_secs(60),
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    };
    let runtime = Runtime::start(Arc::clone(&store), config).await.expect("runtime");
    let a = runtime.upload(upload("a.md", MARKDOWN.as_bytes())).await.expect("a");
    let b = runtime.upload(upload("b.txt", b"another document entirely")).await.expect("b");
    settle(&runtime, a.document_id).await;
    settle(&runtime, b.document_id).await;

    runtime.crash(a.document_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while runtime.stats().await.expect("stats").restarts < 1 {
        assert!(tokio::time::Instant::now() < deadline, "crash was not noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other document answers commands meanwhile.
    let mut set = serde_json::Map::new();
    set.insert("owner".into(), serde_json::json!("bob"));
    let request = CommandRequest {
        document_id: b.document_id,
        command: DocumentCommand::UpdateMetadata { set, unset: vec![] },
        metadata: EventMetadata::new("tenant-a", "bob"),
        expected_version: None,
    };
    assert_eq!(runtime.execute(request).await.expect("b still works").appended, 1);
    // The crashed one comes back with its state replayed from the log.
    let snapshot = runtime.snapshot(a.document_id).await.expect("snapshot").expect("exists");
    assert_eq!(snapshot.state.status, Some(DocumentStatus::Ready));

    // Past the budget (2 restarts a minute) the failure escalates and the document is left stopped.
    for _ in 0..2 {
        runtime.crash(a.document_id);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let stats = runtime.stats().await.expect("stats");
    assert_eq!((stats.restarts, stats.escalations), (2, 1), "{stats:?}");
    runtime.shutdown();
}

async fn idle_document_actors_are_passivated_and_come_back_with_their_state(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let mut config = config(&scratch);
    config.idle_timeout = Duration::from_millis(200);
    let runtime = Runtime::start(Arc::clone(&store), config).await.expect("runtime");
    let mut documents = Vec::new();
    for name in ["a.md", "b.md", "c.md"] {
        let outcome = runtime.upload(upload(name, format!("{name}\n\n{MARKDOWN}").as_bytes())).await.expect("upload");
        documents.push(outcome.document_id);
    }
    for &document_id in &documents {
        assert_eq!(settle(&runtime, document_id).await, DocumentStatus::Ready);
    }
    assert_eq!(runtime.stats().await.expect("stats").live, documents.len(), "one actor per document at work");

    // Nothing is sent to them any more: each stops once it has been idle for the timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live = runtime.stats().await.expect("stats").live;
        if live == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{live} idle document actors were never passivated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A passivated document answers again, from its stream.
    let snapshot = runtime.snapshot(documents[1]).await.expect("snapshot").expect("exists");
    assert_eq!(snapshot.state.status, Some(DocumentStatus::Ready));
    assert_eq!(snapshot.state.version, 4, "replayed from the log: uploaded, parsed, chunked, ready");
    assert_eq!(runtime.stats().await.expect("stats").live, 1, "only the document asked about is started");
    runtime.shutdown();
}

async fn reprocess_ready_document_runs_pipeline_again_then_delete_allows_only_reads(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let runtime = Runtime::start(Arc::clone(&store), config(&scratch)).await.expect("runtime");
    let outcome = runtime.upload(upload("notes.md", MARKDOWN.as_bytes())).await.expect("upload");
    settle(&runtime, outcome.document_id).await;
    let command = |command| CommandRequest {
        document_id: outcome.document_id,
        command,
        metadata: EventMetadata::new("tenant-a", "alice"),
        expected_version: None,
    };
    runtime
        .execute(command(DocumentCommand::RequestReprocess { reason: Some("new chunker".into()) }))
        .await
        .expect("reprocess");
    // Wait for the second run to finish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let state = runtime.snapshot(outcome.document_id).await.expect("snapshot").expect("exists").state;
        if state.generation == 2 && state.status == Some(DocumentStatus::Ready) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "reprocessing did not finish: {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(
        &types[3..],
        ["DocumentReady", "ReprocessRequested", "DocumentParsed", "DocumentChunked", "DocumentReady"]
    );
    // Only a document in ready or failed can be reprocessed; another tenant cannot see it at all.
    let mut foreign = command(DocumentCommand::RequestReprocess { reason: None });
    foreign.metadata.tenant_id = "tenant-b".into();
    let error = runtime.execute(foreign).await.expect_err("other tenant");
    assert!(matches!(error, CommandError::Rejected(DocumentError::NotFound)), "{error}");
    runtime.execute(command(DocumentCommand::Delete { reason: None })).await.expect("delete");
    let after = runtime.execute(command(DocumentCommand::RequestReprocess { reason: None })).await;
    assert!(matches!(after, Err(CommandError::Rejected(DocumentError::Deleted))), "{after:?}");
    assert_eq!(
        event_types(store.as_ref(), outcome.document_id).await.last().map(String::as_str),
        Some("DocumentDeleted")
    );
    runtime.shutdown();
}
