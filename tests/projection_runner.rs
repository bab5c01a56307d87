//! The read-model projection runner on each backend: rows match the log, a poison event stops it at its position,
//! and a runner interrupted mid-way (or racing another) still applies every event exactly once.

use std::sync::Arc;
use std::time::Duration;

use dossier_actors::runtime::Runtime;
use dossier_actors::runtime::document::CommandRequest;
use dossier_events::document::{DocumentCommand, DocumentStatus};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use dossier_projections::read_model::{DocumentRow, ReadModelError, ReadModelStore};
use dossier_projections::runner::{READ_MODEL, RunnerConfig, RunnerError, RunnerState, initial_status, run_read_model};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::contract_tests;
use crate::pipeline::{config, settle, upload};
use crate::support::{Backend, Scratch};

contract_tests!(
    read_model_after_pipeline_matches_each_document,
    runner_with_poison_event_stops_at_its_position_and_stays_stopped,
    runner_interrupted_mid_way_applies_every_event_exactly_once,
);

async fn run_until(
    log: &Arc<dyn EventStore>,
    read_model: &Arc<dyn ReadModelStore>,
    generation: u32,
    until: Option<u64>,
) -> (Result<(), RunnerError>, dossier_projections::runner::ProjectionStatus) {
    let (status, watch) = watch::channel(initial_status(READ_MODEL, generation));
    let until = match until {
        Some(until) => until,
        None => log.head_position().await.expect("head"),
    };
    let config = RunnerConfig { batch_size: 7, batch_wait: Duration::from_millis(5) };
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        run_read_model(Arc::clone(log), Arc::clone(read_model), generation, config, status, Some(until)),
    )
    .await
    .expect("runner finished in time");
    let last = watch.borrow().clone();
    (result, last)
}

/// Every document of a tenant in a generation, with its chunks.
async fn dump(read_model: &dyn ReadModelStore, generation: u32) -> Vec<(DocumentRow, Vec<String>)> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = read_model.list_documents(generation, "tenant-a", None, after, 100).await.expect("list");
        for row in page.documents {
            let chunks = read_model.chunks(generation, row.document_id, 0, 1_000).await.expect("chunks");
            out.push((row, chunks.into_iter().map(|c| c.text).collect()));
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

async fn ingest_sample(log: &Arc<dyn EventStore>, scratch: &Scratch) -> (Uuid, Uuid, Uuid) {
    let runtime = Runtime::start(Arc::clone(log), config(scratch)).await.expect("runtime");
    let ready = runtime.upload(upload("notes.md", b"# Notes\n\nThe heron waits. ".repeat(30).as_slice())).await;
    let ready = ready.expect("upload").document_id;
    let failed = runtime.upload(upload("image.png", b"\x89PNG\r\n\x1a\n\0\0\0\0")).await.expect("upload").document_id;
    let deleted = runtime.upload(upload("gone.txt", b"to be deleted")).await.expect("upload").document_id;
    for id in [ready, failed, deleted] {
        settle(&runtime, id).await;
    }
    let command = |document_id, command| CommandRequest {
        document_id,
        command,
        metadata: EventMetadata::new("tenant-a", "alice"),
        expected_version: None,
    };
    let mut set = serde_json::Map::new();
    set.insert("owner".into(), json!("ana"));
    runtime.execute(command(ready, DocumentCommand::UpdateMetadata { set, unset: vec![] })).await.expect("metadata");
    runtime.execute(command(deleted, DocumentCommand::Delete { reason: None })).await.expect("delete");
    runtime.shutdown();
    (ready, failed, deleted)
}

async fn read_model_after_pipeline_matches_each_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let log = scratch.open().await;
    let read_model = scratch.open_read_model().await;
    let (ready, failed, deleted) = ingest_sample(&log, &scratch).await;
    let (result, status) = run_until(&log, &read_model, 1, None).await;
    result.expect("runner");
    let head = log.head_position().await.expect("head");
    assert_eq!((status.checkpoint, status.lag_events), (head, 0));
    assert_eq!(read_model.checkpoint(READ_MODEL, 1).await.expect("checkpoint").expect("exists").position, head);

    let row = read_model.get_document(1, "tenant-a", ready).await.expect("get").expect("ready row");
    assert_eq!(row.status, DocumentStatus::Ready.as_str());
    assert_eq!(row.metadata.get("owner"), Some(&json!("ana")));
    let version = log.stream_version(&StreamId::for_document(ready)).await.expect("version").expect("exists");
    assert_eq!(row.stream_version, version);
    let chunks = read_model.chunks(1, ready, 0, 100).await.expect("chunks");
    assert_eq!(chunks.len() as u32, row.chunk_count);
    assert!(row.chunk_count >= 2);
    let failed_row = read_model.get_document(1, "tenant-a", failed).await.expect("get").expect("failed row");
    assert_eq!(failed_row.status, "failed");
    assert!(failed_row.failure_reason.is_some_and(|reason| reason.to_lowercase().contains("unsupported")));
    let deleted_row = read_model.get_document(1, "tenant-a", deleted).await.expect("get").expect("row");
    assert!(deleted_row.deleted);
    assert!(read_model.chunks(1, deleted, 0, 100).await.expect("chunks").is_empty());
    let listed: Vec<Uuid> = dump(read_model.as_ref(), 1).await.into_iter().map(|(row, _)| row.document_id).collect();
    assert_eq!(listed.len(), 2, "deleted documents are not listed");
    assert!(read_model.get_document(1, "tenant-b", ready).await.expect("get").is_none());
}

async fn runner_with_poison_event_stops_at_its_position_and_stays_stopped(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let log = scratch.open().await;
    let read_model = scratch.open_read_model().await;
    let (ready, _, _) = ingest_sample(&log, &scratch).await;
    let stream = StreamId::for_document(ready);
    let bogus = NewEvent::new("DocumentTeleported", 1, json!({ "to": "mars" }));
    let poison = log.append(&stream, ExpectedVersion::Any, vec![bogus], EventMetadata::new("tenant-a", "mallory"));
    let poison = poison.await.expect("append").first_position;
    let after = NewEvent::new("DocumentReady", 1, json!({}));
    log.append(
        &StreamId::for_document(Uuid::now_v7()),
        ExpectedVersion::Any,
        vec![after],
        EventMetadata::new("t", "u"),
    )
    .await
    .expect("append");

    let (result, status) = run_until(&log, &read_model, 1, None).await;
    let error = result.expect_err("poison");
    assert!(matches!(error, RunnerError::Poison(_)), "{error}");
    assert!(error.to_string().contains(&format!("position {poison}")), "{error}");
    assert!(matches!(&status.state, RunnerState::Stopped { position, .. } if *position == poison), "{status:?}");
    let checkpoint = read_model.checkpoint(READ_MODEL, 1).await.expect("checkpoint").expect("exists");
    assert!(checkpoint.position < poison, "nothing of the poison batch is applied");
    assert_eq!(checkpoint.state, "stopped");
    // Restarting does not skip it.
    let (again, status) = run_until(&log, &read_model, 1, None).await;
    again.expect("a stopped projection stays stopped without error");
    assert!(matches!(status.state, RunnerState::Stopped { .. }));
    assert_eq!(
        read_model.checkpoint(READ_MODEL, 1).await.expect("checkpoint").expect("exists").position,
        checkpoint.position
    );
}

async fn runner_interrupted_mid_way_applies_every_event_exactly_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let log = scratch.open().await;
    let read_model = scratch.open_read_model().await;
    ingest_sample(&log, &scratch).await;
    let head = log.head_position().await.expect("head");
    // Generation 1 in three interrupted runs; generation 2 in one.
    for until in [head / 3, head / 2, head] {
        run_until(&log, &read_model, 1, Some(until)).await.0.expect("partial run");
    }
    run_until(&log, &read_model, 2, Some(head)).await.0.expect("full run");
    let once = dump(read_model.as_ref(), 2).await;
    assert!(!once.is_empty());
    assert_eq!(dump(read_model.as_ref(), 1).await, once);
    // A batch that starts from a stale checkpoint is refused and writes nothing.
    let stale = read_model.commit(READ_MODEL, 1, head / 2, head, &[]).await;
    assert!(matches!(stale, Err(ReadModelError::Fenced { .. })), "{stale:?}");
}
