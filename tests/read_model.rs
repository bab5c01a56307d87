//! The ReadModelStore contract, run against every backend (`embedded::*`, `postgres::*`), each test on a fresh
//! database migrated by the event store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_events::document::Metadata;
use dossier_projections::read_model::{ChunkRow, DocumentChange, DocumentRow, ReadModelError, ReadModelStore};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::contract_tests;
use crate::support::{Backend, Scratch};

contract_tests!(
    commit_then_get_list_and_chunks_round_trip_every_field,
    list_documents_with_status_and_cursor_pages_through_every_document_once,
    get_and_list_of_another_tenant_return_nothing,
    list_documents_skips_deleted_but_get_document_returns_them_deleted,
    commit_with_reset_chunks_replaces_stored_chunks,
    commit_with_stale_from_returns_fenced_and_writes_nothing,
    a_replaced_and_dropped_generation_refuses_a_first_batch,
    commit_to_one_generation_is_invisible_to_another,
    record_failure_then_checkpoint_returns_stopped_with_error,
    live_generation_on_first_use_returns_one,
);

const PROJECTION: &str = "read_model";

/// A timestamp with microseconds (what both backends keep), `offset_micros` after a fixed instant.
fn at(offset_micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos((1_761_000_000_123_456 + i128::from(offset_micros)) * 1_000)
        .expect("valid timestamp")
}

fn metadata(value: serde_json::Value) -> Metadata {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("metadata must be an object, got {other}"),
    }
}

/// A document of `tenant`, its fields derived from `n` so that every one is distinct.
fn document(tenant: &str, n: u64) -> DocumentRow {
    DocumentRow {
        document_id: Uuid::now_v7(),
        tenant_id: tenant.to_owned(),
        filename: format!("report-{n}.pdf"),
        media_type: "application/pdf".to_owned(),
        size_bytes: 1_000 + n,
        sha256: format!("{n:064x}"),
        status: "uploaded".to_owned(),
        stream_version: 1,
        chunk_count: 0,
        metadata: metadata(json!({ "n": n })),
        failure_reason: None,
        created_at: at(i64::try_from(n).expect("small")),
        updated_at: at(i64::try_from(n).expect("small")),
        deleted: false,
    }
}

fn chunks(document_id: Uuid, texts: &[&str]) -> Vec<ChunkRow> {
    let mut start = 0;
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let chunk = ChunkRow {
                document_id,
                chunk_index: u32::try_from(index).expect("small"),
                text: (*text).to_owned(),
                byte_start: start,
                byte_end: start + text.len() as u64,
            };
            start = chunk.byte_end;
            chunk
        })
        .collect()
}

fn upsert(row: &DocumentRow) -> DocumentChange {
    DocumentChange { row: Some(row.clone()), reset_chunks: false, chunks: Vec::new() }
}

fn with_chunks(row: &DocumentRow, chunks: Vec<ChunkRow>) -> DocumentChange {
    DocumentChange { row: Some(row.clone()), reset_chunks: true, chunks }
}

async fn all_chunks(store: &dyn ReadModelStore, generation: u32, document_id: Uuid) -> Vec<ChunkRow> {
    store.chunks(generation, document_id, 0, 1_000).await.expect("chunks")
}

async fn commit_then_get_list_and_chunks_round_trip_every_field(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let mut row = document("tenant-a", 7);
    row.filename = "Überblick «2025».pdf".to_owned();
    row.size_bytes = u64::try_from(i64::MAX).expect("fits");
    row.status = "failed".to_owned();
    row.stream_version = 12;
    row.chunk_count = 3;
    row.metadata = metadata(json!({
        "title": "Q3 report",
        "tags": ["finance", "quarterly"],
        "pages": 42,
        "ratio": 0.125,
        "draft": false,
        "owner": null,
        "nested": { "depth": { "x": [1, { "y": "z" }] } },
    }));
    row.failure_reason = Some("embedding: model unavailable".to_owned());
    row.created_at = at(1);
    row.updated_at = at(86_400_000_001);
    let stored = chunks(row.document_id, &["first chunk", "second — chunk", "third"]);
    store.commit(PROJECTION, 1, 0, 5, &[with_chunks(&row, stored.clone())]).await.expect("commit");

    let got = store.get_document(1, "tenant-a", row.document_id).await.expect("get").expect("stored");
    assert_eq!(got, row);
    assert_eq!((got.created_at.microsecond(), got.updated_at.microsecond()), (123_457, 123_457));
    let page = store.list_documents(1, "tenant-a", None, None, 10).await.expect("list");
    assert_eq!((page.documents, page.next_after), (vec![row.clone()], None));
    let loaded = store.load_documents(1, &[row.document_id, Uuid::now_v7()]).await.expect("load");
    assert_eq!((loaded.len(), loaded.get(&row.document_id)), (1, Some(&row)));
    assert!(store.load_documents(1, &[]).await.expect("load none").is_empty());

    assert_eq!(all_chunks(store.as_ref(), 1, row.document_id).await, stored);
    assert_eq!(store.chunks(1, row.document_id, 1, 1).await.expect("window"), stored[1..2].to_vec());
    assert!(store.chunks(1, row.document_id, 3, 10).await.expect("past the end").is_empty());
    assert!(store.chunks(1, Uuid::now_v7(), 0, 10).await.expect("unknown document").is_empty());
    // By key (a search's hits): the chunks that exist, whatever else was asked for.
    let (id, stranger) = (row.document_id, Uuid::now_v7());
    let keys = [(id, 2), (id, 0), (id, 3), (stranger, 0), (id, u32::MAX)];
    let found = store.chunks_by_key(1, &keys).await.expect("by key");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found.get(&(id, 0)), found.get(&(id, 2))), (Some(&stored[0]), Some(&stored[2])));
    assert!(store.chunks_by_key(2, &keys).await.expect("other generation").is_empty());
    assert!(store.chunks_by_key(1, &[]).await.expect("no keys").is_empty());

    let checkpoint = store.checkpoint(PROJECTION, 1).await.expect("checkpoint").expect("created");
    assert_eq!((checkpoint.position, checkpoint.state.as_str(), checkpoint.error), (5, "running", None));
    // The next batch continues from there, updating the row in place.
    let mut updated = row.clone();
    updated.status = "ready".to_owned();
    updated.failure_reason = None;
    updated.metadata = metadata(json!({ "title": "Q3 report, final" }));
    updated.updated_at = at(86_400_000_002);
    store.commit(PROJECTION, 1, 5, 9, &[upsert(&updated)]).await.expect("second commit");
    assert_eq!(store.get_document(1, "tenant-a", row.document_id).await.expect("get"), Some(updated));
    assert_eq!(all_chunks(store.as_ref(), 1, row.document_id).await, stored, "chunks kept without reset_chunks");
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint").map(|c| c.position), Some(9));
    // A batch of events that touch no document still moves the checkpoint.
    store.commit(PROJECTION, 1, 9, 11, &[]).await.expect("empty commit");
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint").map(|c| c.position), Some(11));
    // A value the database cannot hold is refused, not wrapped or truncated, and the batch is not applied.
    let mut huge = document("tenant-a", 8);
    huge.size_bytes = u64::MAX;
    let refused = store.commit(PROJECTION, 1, 11, 12, &[upsert(&huge)]).await;
    assert!(matches!(refused, Err(ReadModelError::Database(_))), "{refused:?}");
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint").map(|c| c.position), Some(11));
    assert_eq!(store.get_document(1, "tenant-a", huge.document_id).await.expect("get"), None);
}

async fn list_documents_with_status_and_cursor_pages_through_every_document_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let rows: Vec<DocumentRow> = (0..25)
        .map(|n| {
            let mut row = document("tenant-a", n);
            row.status = if n % 3 == 0 { "ready" } else { "uploaded" }.to_owned();
            row
        })
        .collect();
    // Committed out of id order, over two batches.
    let (early, late) = rows.split_at(12);
    let changes: Vec<DocumentChange> = late.iter().rev().map(upsert).collect();
    store.commit(PROJECTION, 1, 0, 12, &changes).await.expect("commit late");
    let changes: Vec<DocumentChange> = early.iter().map(upsert).collect();
    store.commit(PROJECTION, 1, 12, 25, &changes).await.expect("commit early");
    let mut expected: Vec<Uuid> = rows.iter().map(|row| row.document_id).collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_documents(1, "tenant-a", None, after, 10).await.expect("page");
        sizes.push(page.documents.len());
        seen.extend(page.documents.iter().map(|row| row.document_id));
        match page.next_after {
            Some(next) => {
                assert_eq!(Some(next), page.documents.last().map(|row| row.document_id));
                after = Some(next);
            }
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(seen, expected, "every document once, in id order");

    let mut ready: Vec<Uuid> = rows.iter().filter(|row| row.status == "ready").map(|row| row.document_id).collect();
    ready.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_documents(1, "tenant-a", Some("ready"), after, 4).await.expect("ready page");
        assert!(page.documents.iter().all(|row| row.status == "ready"));
        seen.extend(page.documents.iter().map(|row| row.document_id));
        let Some(next) = page.next_after else { break };
        after = Some(next);
    }
    assert_eq!(seen, ready);
    // A page that ends exactly at the last document has no cursor.
    let exact = store.list_documents(1, "tenant-a", Some("ready"), None, ready.len()).await.expect("exact");
    assert_eq!((exact.documents.len(), exact.next_after), (ready.len(), None));
    let none = store.list_documents(1, "tenant-a", Some("parsed"), None, 10).await.expect("no parsed");
    assert!(none.documents.is_empty() && none.next_after.is_none());
    let past = store.list_documents(1, "tenant-a", None, Some(Uuid::max()), 10).await.expect("after the largest id");
    assert!(past.documents.is_empty());
}

async fn get_and_list_of_another_tenant_return_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let (mine, theirs) = (document("tenant-a", 1), document("tenant-b", 2));
    let stored = chunks(theirs.document_id, &["secret"]);
    store.commit(PROJECTION, 1, 0, 2, &[upsert(&mine), with_chunks(&theirs, stored)]).await.expect("commit");

    assert_eq!(store.get_document(1, "tenant-a", theirs.document_id).await.expect("get"), None);
    let listed: Vec<Uuid> = store
        .list_documents(1, "tenant-a", None, None, 10)
        .await
        .expect("list")
        .documents
        .iter()
        .map(|row| row.document_id)
        .collect();
    assert_eq!(listed, vec![mine.document_id]);
    assert_eq!(store.get_document(1, "tenant-b", theirs.document_id).await.expect("get own"), Some(theirs));
    assert!(store.list_documents(1, "tenant-c", None, None, 10).await.expect("list").documents.is_empty());
}

async fn list_documents_skips_deleted_but_get_document_returns_them_deleted(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let (kept, mut gone) = (document("tenant-a", 1), document("tenant-a", 2));
    store
        .commit(PROJECTION, 1, 0, 2, &[upsert(&kept), with_chunks(&gone, chunks(gone.document_id, &["a", "b"]))])
        .await
        .expect("commit");
    gone.status = "deleted".to_owned();
    gone.deleted = true;
    gone.stream_version = 2;
    store.commit(PROJECTION, 1, 2, 3, &[with_chunks(&gone, Vec::new())]).await.expect("delete");

    for status in [None, Some("deleted")] {
        let page = store.list_documents(1, "tenant-a", status, None, 10).await.expect("list");
        let listed: Vec<Uuid> = page.documents.iter().map(|row| row.document_id).collect();
        let expected = if status.is_none() { vec![kept.document_id] } else { Vec::new() };
        assert_eq!(listed, expected, "status filter {status:?}");
    }
    let got = store.get_document(1, "tenant-a", gone.document_id).await.expect("get").expect("kept for audit");
    assert!(got.deleted);
    assert_eq!(got, gone);
    assert!(all_chunks(store.as_ref(), 1, gone.document_id).await.is_empty());
}

async fn commit_with_reset_chunks_replaces_stored_chunks(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let (row, other) = (document("tenant-a", 1), document("tenant-a", 2));
    let other_chunks = chunks(other.document_id, &["other"]);
    store
        .commit(
            PROJECTION,
            1,
            0,
            1,
            &[
                with_chunks(&row, chunks(row.document_id, &["one", "two", "three"])),
                with_chunks(&other, other_chunks.clone()),
            ],
        )
        .await
        .expect("first run");
    let rerun = chunks(row.document_id, &["uno", "dos"]);
    store.commit(PROJECTION, 1, 1, 2, &[with_chunks(&row, rerun.clone())]).await.expect("second run");
    assert_eq!(all_chunks(store.as_ref(), 1, row.document_id).await, rerun, "the third chunk of the first run is gone");
    assert_eq!(all_chunks(store.as_ref(), 1, other.document_id).await, other_chunks, "other documents untouched");
    // Reprocessing clears them without writing new ones.
    store.commit(PROJECTION, 1, 2, 3, &[with_chunks(&row, Vec::new())]).await.expect("reprocess");
    assert!(all_chunks(store.as_ref(), 1, row.document_id).await.is_empty());
}

async fn commit_with_stale_from_returns_fenced_and_writes_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let row = document("tenant-a", 1);
    let stored = chunks(row.document_id, &["kept"]);
    store.commit(PROJECTION, 1, 0, 10, &[with_chunks(&row, stored.clone())]).await.expect("commit");

    let mut changed = row.clone();
    changed.status = "ready".to_owned();
    let newcomer = document("tenant-a", 2);
    let stale_batch = [
        with_chunks(&changed, chunks(row.document_id, &["replaced"])),
        with_chunks(&newcomer, chunks(newcomer.document_id, &["new"])),
    ];
    for stale in [5, 0, 11] {
        let result = store.commit(PROJECTION, 1, stale, 20, &stale_batch).await;
        assert!(
            matches!(&result, Err(ReadModelError::Fenced { projection, generation: 1, expected })
                if projection == PROJECTION && *expected == stale),
            "from {stale}: {result:?}"
        );
    }
    assert_eq!(store.get_document(1, "tenant-a", row.document_id).await.expect("get"), Some(row.clone()));
    assert_eq!(store.get_document(1, "tenant-a", newcomer.document_id).await.expect("get"), None);
    assert_eq!(all_chunks(store.as_ref(), 1, row.document_id).await, stored);
    assert!(all_chunks(store.as_ref(), 1, newcomer.document_id).await.is_empty());
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint").map(|c| c.position), Some(10));
    assert_eq!(scratch.query_count("SELECT count(*) FROM read_documents").await, 1);
    assert_eq!(scratch.query_count("SELECT count(*) FROM read_chunks").await, 1);

    // A generation that never ran only accepts a batch from 0, and a refused one leaves no checkpoint behind.
    let refused = store.commit(PROJECTION, 2, 3, 4, &[upsert(&newcomer)]).await;
    assert!(matches!(refused, Err(ReadModelError::Fenced { generation: 2, expected: 3, .. })), "{refused:?}");
    assert_eq!(store.checkpoint(PROJECTION, 2).await.expect("checkpoint"), None);
    assert_eq!(scratch.query_count("SELECT count(*) FROM read_documents").await, 1);
    // The runner that holds the real position carries on.
    store.commit(PROJECTION, 1, 10, 20, &stale_batch).await.expect("current runner");
    assert_eq!(store.get_document(1, "tenant-a", row.document_id).await.expect("get"), Some(changed));
}

async fn a_replaced_and_dropped_generation_refuses_a_first_batch(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    assert_eq!(store.live_generation(PROJECTION).await.expect("live"), 1);
    let row = document("tenant-a", 1);
    store.commit(PROJECTION, 2, 0, 10, &[upsert(&row)]).await.expect("rebuilt generation");
    assert!(store.switch_live(PROJECTION, 1, 2).await.expect("switch"));
    store.drop_generation(PROJECTION, 1).await.expect("drop");

    // A live runner that read generation 1 before the switch, with no checkpoint yet, sends its first batch.
    let late = store.commit(PROJECTION, 1, 0, 10, &[upsert(&row)]).await;
    assert!(matches!(late, Err(ReadModelError::Fenced { generation: 1, expected: 0, .. })), "{late:?}");
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint"), None, "the dropped checkpoint stays gone");
    assert_eq!(store.get_document(1, "tenant-a", row.document_id).await.expect("get"), None);
    assert_eq!(scratch.query_count("SELECT count(*) FROM read_documents WHERE generation = 1").await, 0);
    // A generation newer than the live one (the next rebuild's) still starts from 0.
    store.commit(PROJECTION, 3, 0, 10, &[upsert(&row)]).await.expect("next rebuild");
}

/// Postgres only (SQLite has one writer at a time). A live runner's first batch of generation 1 is in flight, held
/// mid-transaction by another session's uncommitted row for the same document, while a rebuild switches to
/// generation 2 and drops generation 1. The switch must wait for the batch, so that the drop removes what the batch
/// wrote: nothing of generation 1 may survive the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_first_batch_in_flight_across_a_switch_and_drop_leaves_nothing_behind() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let store = scratch.open_read_model().await;
    assert_eq!(store.live_generation(PROJECTION).await.expect("live"), 1);
    let row = document("tenant-a", 1);
    store.commit(PROJECTION, 2, 0, 10, &[upsert(&row)]).await.expect("rebuilt generation");

    let blocker = scratch.postgres_client().await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .execute(
            "INSERT INTO read_documents VALUES (1, $1, 'tenant-a', 'x', 'text/plain', 0, 'x', 'uploaded', 1, 0, '{}',
                 NULL, now(), now(), false)",
            &[&row.document_id],
        )
        .await
        .expect("blocking row");
    let batch = tokio::spawn({
        let (store, row) = (Arc::clone(&store), row.clone());
        async move { store.commit(PROJECTION, 1, 0, 10, &[upsert(&row)]).await }
    });
    let observer = scratch.postgres_client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch never waited on the blocking row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rebuild = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let switched = store.switch_live(PROJECTION, 1, 2).await?;
            store.drop_generation(PROJECTION, 1).await?;
            Ok::<_, ReadModelError>(switched)
        }
    });
    // Time for the switch and the drop to run ahead of the batch, were they not made to wait for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.batch_execute("ROLLBACK").await.expect("rollback");

    let batch = batch.await.expect("batch task");
    assert!(batch.is_ok() || matches!(batch, Err(ReadModelError::Fenced { .. })), "{batch:?}");
    assert!(rebuild.await.expect("rebuild task").expect("switch and drop"), "switched");
    assert_eq!(store.live_generation(PROJECTION).await.expect("live"), 2);
    assert_eq!(scratch.query_count("SELECT count(*) FROM read_documents WHERE generation = 1").await, 0);
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint"), None, "the dropped checkpoint stays gone");
}

async fn commit_to_one_generation_is_invisible_to_another(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    let (live, rebuilt) = (document("tenant-a", 1), document("tenant-a", 2));
    let mut live_in_rebuild = live.clone();
    live_in_rebuild.status = "ready".to_owned();
    store.commit(PROJECTION, 1, 0, 3, &[with_chunks(&live, chunks(live.document_id, &["g1"]))]).await.expect("g1");
    store
        .commit(
            PROJECTION,
            2,
            0,
            7,
            &[upsert(&rebuilt), with_chunks(&live_in_rebuild, chunks(live.document_id, &["g2", "g2 again"]))],
        )
        .await
        .expect("g2");

    assert_eq!(store.get_document(1, "tenant-a", rebuilt.document_id).await.expect("get"), None);
    assert_eq!(store.get_document(1, "tenant-a", live.document_id).await.expect("get"), Some(live.clone()));
    assert_eq!(store.get_document(2, "tenant-a", live.document_id).await.expect("get"), Some(live_in_rebuild));
    let listed = store.list_documents(1, "tenant-a", None, None, 10).await.expect("list").documents;
    assert_eq!(listed, vec![live.clone()]);
    assert!(store.load_documents(1, &[rebuilt.document_id]).await.expect("load").is_empty());
    assert_eq!(all_chunks(store.as_ref(), 1, live.document_id).await, chunks(live.document_id, &["g1"]));
    assert_eq!(all_chunks(store.as_ref(), 2, live.document_id).await.len(), 2);
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("g1").map(|c| c.position), Some(3));
    assert_eq!(store.checkpoint(PROJECTION, 2).await.expect("g2").map(|c| c.position), Some(7));
    // Dropping a generation's rows does not touch the other.
    scratch.execute_sql("DELETE FROM read_documents WHERE generation = 2").await;
    assert_eq!(store.get_document(1, "tenant-a", live.document_id).await.expect("get"), Some(live));
}

async fn record_failure_then_checkpoint_returns_stopped_with_error(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    assert_eq!(store.checkpoint(PROJECTION, 1).await.expect("checkpoint"), None);
    store.commit(PROJECTION, 1, 0, 4, &[upsert(&document("tenant-a", 1))]).await.expect("commit");
    let error = "position 5: DocumentParsed for document x, which was never uploaded";
    store.record_failure(PROJECTION, 1, error).await.expect("record");
    let checkpoint = store.checkpoint(PROJECTION, 1).await.expect("checkpoint").expect("exists");
    assert_eq!((checkpoint.position, checkpoint.state.as_str()), (4, "stopped"));
    assert_eq!(checkpoint.error.as_deref(), Some(error));

    // A generation stopped before its first commit is recorded at position 0.
    store.record_failure(PROJECTION, 2, "position 1: bad event").await.expect("record");
    let checkpoint = store.checkpoint(PROJECTION, 2).await.expect("checkpoint").expect("exists");
    assert_eq!((checkpoint.position, checkpoint.state.as_str()), (0, "stopped"));
    assert_eq!(checkpoint.error.as_deref(), Some("position 1: bad event"));
    assert_eq!(store.checkpoint("other", 1).await.expect("checkpoint"), None);
}

async fn live_generation_on_first_use_returns_one(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open_read_model().await;
    assert_eq!(scratch.query_count("SELECT count(*) FROM projections").await, 0);
    assert_eq!(store.live_generation(PROJECTION).await.expect("first"), 1);
    assert_eq!(store.live_generation(PROJECTION).await.expect("again"), 1);
    assert_eq!(scratch.query_count("SELECT count(*) FROM projections").await, 1);
    // A switch to a rebuilt generation is one update, which later reads see.
    scratch.execute_sql("UPDATE projections SET live_generation = 2 WHERE name = 'read_model'").await;
    assert_eq!(store.live_generation(PROJECTION).await.expect("switched"), 2);
    // Concurrent first uses of another projection agree.
    let results = futures::future::join_all((0..8).map(|_| store.live_generation("vectors"))).await;
    let generations: HashSet<u32> = results.into_iter().map(|result| result.expect("live generation")).collect();
    assert_eq!(generations, HashSet::from([1]));
}
