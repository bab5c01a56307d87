//! Blue/green rebuilds under load and `verify --projections` on each backend.

use std::sync::Arc;
use std::time::Duration;

use dossier_actors::runtime::Runtime;
use dossier_events::EventStore;
use dossier_projections::read_model::ReadModelStore;
use dossier_projections::rebuild::{Difference, rebuild_read_model, verify_read_model};
use dossier_projections::runner::{
    Projection, READ_MODEL, ReadModelProjection, RunnerConfig, initial_status, run_projection, run_read_model,
};
use tokio::sync::watch;

use crate::contract_tests;
use crate::pipeline::{config, settle, upload};
use crate::support::{Backend, Scratch};

contract_tests!(
    rebuild_while_writer_appends_switches_generation_and_equals_fresh_replay,
    verify_projections_after_row_edits_names_each_difference,
);

/// Follows the live generation, restarting when a rebuild hands over (as the projection actor does).
pub fn spawn_live_runner(log: Arc<dyn EventStore>, projection: Arc<dyn Projection>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let name = projection.name().to_owned();
            let generation = projection.generations().live_generation(&name).await.expect("live generation");
            let (status, _) = watch::channel(initial_status(&name, generation));
            let config = RunnerConfig { batch_size: 50, batch_wait: Duration::from_millis(5) };
            let run = run_projection(Arc::clone(&log), projection.as_ref(), generation, config, status, None);
            if let Err(error) = run.await {
                // A batch fenced by the switch is expected; anything else fails the test through verification.
                tracing::debug!(error = %error, "live runner ended");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// Uploads `count` documents, one every 10 ms, while a rebuild runs; yields their ids.
pub fn spawn_writer(runtime: &Runtime, count: usize) -> tokio::task::JoinHandle<Vec<uuid::Uuid>> {
    let runtime = runtime.clone();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..count {
            let text = format!("document written during the rebuild, number {i}. ").repeat(20);
            let outcome = runtime.upload(upload(&format!("live-{i}.txt"), text.as_bytes())).await.expect("upload");
            ids.push(outcome.document_id);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ids
    })
}

async fn wait_caught_up(log: &dyn dossier_events::EventStore, read_model: &dyn ReadModelStore) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let generation = read_model.live_generation(READ_MODEL).await.expect("generation");
        let checkpoint = read_model.checkpoint(READ_MODEL, generation).await.expect("checkpoint");
        let head = log.head_position().await.expect("head");
        if checkpoint.is_some_and(|c| c.position == head) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "live runner did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rebuild_while_writer_appends_switches_generation_and_equals_fresh_replay(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let log = scratch.open().await;
    let read_model = scratch.open_read_model().await;
    let runtime = Runtime::start(Arc::clone(&log), config(&scratch)).await.expect("runtime");
    for i in 0..30 {
        runtime
            .upload(upload(&format!("seed-{i}.txt"), format!("seed document {i} ").repeat(40).as_bytes()))
            .await
            .expect("seed");
    }
    let projection: Arc<dyn Projection> = Arc::new(ReadModelProjection::new(Arc::clone(&read_model)));
    let live = spawn_live_runner(Arc::clone(&log), projection);
    let writer = spawn_writer(&runtime, 40);
    let (status, _) = watch::channel(initial_status(READ_MODEL, 0));
    let config = RunnerConfig { batch_size: 20, batch_wait: Duration::from_millis(5) };
    let report = rebuild_read_model(Arc::clone(&log), Arc::clone(&read_model), config, status).await.expect("rebuild");
    assert_eq!((report.from_generation, report.to_generation), (1, 2));
    for id in writer.await.expect("writer") {
        settle(&runtime, id).await;
    }
    wait_caught_up(log.as_ref(), read_model.as_ref()).await;
    live.abort();
    runtime.shutdown();
    assert_eq!(read_model.live_generation(READ_MODEL).await.expect("generation"), 2);
    assert!(read_model.all_document_ids(1).await.expect("ids").is_empty(), "the old generation is dropped");
    assert_eq!(read_model.all_document_ids(2).await.expect("ids").len(), 70);
    let differences = verify_read_model(log.as_ref(), read_model.as_ref()).await.expect("verify");
    assert_eq!(differences, vec![], "the rebuilt read model equals a fresh replay");
}

async fn verify_projections_after_row_edits_names_each_difference(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let log = scratch.open().await;
    let read_model = scratch.open_read_model().await;
    let runtime = Runtime::start(Arc::clone(&log), config(&scratch)).await.expect("runtime");
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = runtime.upload(upload(&format!("{i}.txt"), format!("text {i} ").repeat(50).as_bytes())).await;
        ids.push(id.expect("upload").document_id);
    }
    for id in &ids {
        settle(&runtime, *id).await;
    }
    runtime.shutdown();
    let head = log.head_position().await.expect("head");
    let (status, _) = watch::channel(initial_status(READ_MODEL, 1));
    run_read_model(Arc::clone(&log), Arc::clone(&read_model), 1, RunnerConfig::default(), status, Some(head))
        .await
        .expect("projection");
    assert_eq!(verify_read_model(log.as_ref(), read_model.as_ref()).await.expect("verify"), vec![]);

    let hex = |id: uuid::Uuid| id.simple().to_string();
    let (status_edit, delete_row, delete_chunk) = match backend {
        Backend::Embedded => (
            format!("UPDATE read_documents SET status = 'failed' WHERE document_id = x'{}'", hex(ids[0])),
            format!("DELETE FROM read_documents WHERE document_id = x'{}'", hex(ids[1])),
            format!("DELETE FROM read_chunks WHERE document_id = x'{}' AND chunk_index = 0", hex(ids[2])),
        ),
        Backend::Postgres => (
            format!("UPDATE read_documents SET status = 'failed' WHERE document_id = '{}'", ids[0]),
            format!("DELETE FROM read_documents WHERE document_id = '{}'", ids[1]),
            format!("DELETE FROM read_chunks WHERE document_id = '{}' AND chunk_index = 0", ids[2]),
        ),
    };
    for sql in [status_edit, delete_row, delete_chunk] {
        assert_eq!(scratch.execute_sql(&sql).await, 1, "{sql}");
    }
    let differences = verify_read_model(log.as_ref(), read_model.as_ref()).await.expect("verify");
    assert!(
        differences.contains(&Difference::DifferentDocument { document_id: ids[0], fields: vec!["status".into()] }),
        "{differences:?}"
    );
    assert!(differences.contains(&Difference::MissingDocument { document_id: ids[1] }), "{differences:?}");
    assert!(
        differences
            .iter()
            .any(|d| matches!(d, Difference::DifferentChunks { document_id, .. } if *document_id == ids[2])),
        "{differences:?}"
    );
    // The CLI reports the same and fails.
    let mut command = scratch.dossier();
    command.args(["verify", "--projections"]);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run")).await.expect("join");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("different_document") && stdout.contains("missing_document"), "{stdout}");
}
