//! The embed stage against the local OpenAI-compatible stub: vectors recorded with the model and dimensions,
//! transient failures retried with backoff (each attempt an event, `Retry-After` honoured), permanent failures and
//! exhausted retries failing the document with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_actors::embed::{OpenAiEmbedder, OpenAiEmbedderConfig};
use dossier_actors::runtime::{Runtime, RuntimeConfig};
use dossier_events::document::{DocumentEvent, DocumentStatus, decode_vector};
use dossier_events::{EventStore, StreamId};

use crate::pipeline::{config, event_types, settle, upload};
use crate::support::mock_ollama::{MockOllama, embedding_for};
use crate::support::{Backend, Scratch};

const TEXT: &str = "The river rose by a hand's width before dusk. Herons waited at the edge of the reeds.";

async fn start(scratch: &Scratch, mock: &MockOllama) -> (Arc<dyn EventStore>, Runtime) {
    start_with(scratch, mock, |_| {}).await
}

async fn start_with(
    scratch: &Scratch,
    mock: &MockOllama,
    adjust: impl FnOnce(&mut RuntimeConfig),
) -> (Arc<dyn EventStore>, Runtime) {
    let store = scratch.open().await;
    let mut settings = OpenAiEmbedderConfig::new(mock.base_url(), "stub-embed");
    settings.dimensions = Some(8);
    settings.timeout = Duration::from_millis(500);
    let mut config = config(scratch);
    config.embedder = Some(Arc::new(OpenAiEmbedder::new(settings).expect("embedder")));
    adjust(&mut config);
    let runtime = Runtime::start(Arc::clone(&store), config).await.expect("runtime");
    (store, runtime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_stage_records_vectors_with_model_and_dimensions() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    let (store, runtime) = start(&scratch, &mock).await;
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Ready);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(types, ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "ChunksEmbedded", "DocumentReady"]);
    let events = store.read_stream(&StreamId::for_document(outcome.document_id), 1, 10).await.expect("read");
    let chunked = match DocumentEvent::from_recorded(&events[2]).expect("chunked") {
        DocumentEvent::DocumentChunked(chunked) => chunked,
        other => panic!("unexpected {other:?}"),
    };
    let embedded = match DocumentEvent::from_recorded(&events[3]).expect("embedded") {
        DocumentEvent::ChunksEmbedded(embedded) => embedded,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!((embedded.model.as_str(), embedded.dimensions), ("stub-embed", 8));
    assert_eq!(embedded.vectors.len(), chunked.chunks.len());
    let first = decode_vector(&embedded.vectors[0], 8).expect("vector");
    assert_eq!(first, embedding_for(&chunked.chunks[0].text, 8));
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_stage_with_two_transient_failures_retries_and_records_each_attempt() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    mock.fail_next(1);
    mock.rate_limit_next("1");
    let (store, runtime) = start(&scratch, &mock).await;
    let started = Instant::now();
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Ready);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(
        types,
        [
            "DocumentUploaded",
            "DocumentParsed",
            "DocumentChunked",
            "StageAttemptFailed",
            "StageAttemptFailed",
            "ChunksEmbedded",
            "DocumentReady"
        ]
    );
    // The second failure carried Retry-After: 1, so the third attempt came at least a second after it.
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After must be honoured");
    let events = store.read_stream(&StreamId::for_document(outcome.document_id), 4, 2).await.expect("read");
    let attempts: Vec<u64> = events.iter().map(|e| e.data.to_value()["attempt"].as_u64().unwrap_or(0)).collect();
    assert_eq!(attempts, [1, 2]);
    assert!(events[1].data.to_value()["error"].as_str().unwrap_or("").contains("429"), "{:?}", events[1].data);
    assert_eq!(mock.requests(), 3);
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_stage_failing_three_times_fails_document_with_reason() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    mock.fail_next(3);
    let (store, runtime) = start(&scratch, &mock).await;
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Failed);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(&types[3..], ["StageAttemptFailed", "StageAttemptFailed", "DocumentFailed"]);
    let failure = runtime.snapshot(outcome.document_id).await.expect("snapshot").expect("exists").state.failure;
    let failure = failure.expect("failure");
    assert_eq!(failure.attempts, 3);
    assert!(failure.reason.contains("500"), "{}", failure.reason);
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_stage_with_wrong_dimension_fails_at_once() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    mock.wrong_dimension_next(5);
    let (store, runtime) = start(&scratch, &mock).await;
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Failed);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(&types[3..], ["DocumentFailed"]);
    assert_eq!(mock.requests(), 1);
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_stage_with_hanging_server_times_out_and_retries() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    mock.hang_next(Duration::from_secs(5));
    let (store, runtime) = start(&scratch, &mock).await;
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    assert_eq!(settle(&runtime, outcome.document_id).await, DocumentStatus::Ready);
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert_eq!(types.iter().filter(|t| *t == "StageAttemptFailed").count(), 1);
    runtime.shutdown();
}

/// Waits, reading the log only (a snapshot would message the actor, which counts as activity), until the document's
/// stream ends with `DocumentReady`.
async fn wait_ready_in_log(store: &dyn EventStore, document_id: uuid::Uuid) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let types = event_types(store, document_id).await;
        if types.last().map(String::as_str) == Some("DocumentReady") {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {types:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settled_documents_are_passivated_early_but_not_while_a_retry_is_scheduled() {
    let scratch = Scratch::new(Backend::Embedded).await;
    let mock = MockOllama::start().await;
    // The embed stage's first attempt is refused with Retry-After: 1, so the document waits a second for its retry:
    // not settled, its actor must stay (its retry is a timer message to itself) although the settled timeout is
    // far shorter than the wait.
    mock.rate_limit_next("1");
    let (store, runtime) = start_with(&scratch, &mock, |config| {
        config.idle_timeout = Duration::from_secs(3_600);
        config.settled_timeout = Duration::from_millis(50);
    })
    .await;
    let outcome = runtime.upload(upload("river.txt", TEXT.as_bytes())).await.expect("upload");
    wait_ready_in_log(store.as_ref(), outcome.document_id).await;
    let types = event_types(store.as_ref(), outcome.document_id).await;
    assert!(types.contains(&"StageAttemptFailed".to_owned()), "{types:?}");

    // Ready, so settled: stopped after the settled timeout, long before the hour of the idle timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = runtime.stats().await.expect("stats").live;
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} settled document actors still live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it comes back from its stream.
    let snapshot = runtime.snapshot(outcome.document_id).await.expect("snapshot").expect("exists");
    assert_eq!(snapshot.state.status, Some(DocumentStatus::Ready));
    runtime.shutdown();
}
