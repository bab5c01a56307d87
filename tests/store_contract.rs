//! The EventStore contract, run against every backend (`embedded::*`, `postgres::*`), each test on a fresh store.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dossier_events::{
    CommitAction, CommitHook, EventMetadata, EventStore, ExpectedVersion, Hash, NewEvent, RecordedEvent, StoreError,
    StreamId,
};
use serde_json::json;
use uuid::Uuid;

use crate::contract_tests;
use crate::support::{Backend, Scratch};

contract_tests!(
    append_then_read_stream_returns_versions_positions_and_chained_hashes,
    append_with_stale_version_returns_conflict_and_appends_nothing,
    append_with_no_events_or_bad_metadata_returns_invalid,
    concurrent_appends_with_same_expected_version_exactly_one_succeeds,
    subscribe_all_with_concurrent_writers_rollbacks_and_slow_commits_sees_every_committed_event_once,
    subscribe_all_with_slow_consumer_delivers_everything_in_order,
    reopen_after_drop_returns_identical_events_and_hashes,
    idempotency_key_reused_after_restart_returns_original_outcome,
    read_stream_applies_upcasters_and_stored_read_does_not,
    hint_head_wakes_a_subscription_at_the_head_for_another_writers_commit,
    paging_through_the_log_reads_what_is_stored_now,
    reads_that_start_inside_an_append_carry_its_metadata,
    recent_commits_are_served_from_memory_exactly_as_the_log_holds_them,
);

fn event(n: usize) -> NewEvent {
    NewEvent::new("Noted", 1, json!({ "n": n, "text": format!("note {n}") }))
}

fn metadata() -> EventMetadata {
    EventMetadata::new("tenant-a", "alice")
}

fn stream(name: &str) -> StreamId {
    StreamId::new(format!("{name}-{}", Uuid::now_v7())).expect("valid stream id")
}

/// `appends` appends of `per_append` events each, every one to a new stream named after `name`; event `n` of
/// append `i` is `event(i * 10 + n)`.
async fn append_new_streams(store: &dyn EventStore, name: &str, appends: usize, per_append: usize) {
    for i in 0..appends {
        let events = (0..per_append).map(|n| event(i * 10 + n)).collect();
        store.append(&stream(name), ExpectedVersion::NoStream, events, metadata()).await.expect("append");
    }
}

async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    read_in_pages(store, 500).await
}

/// The whole log, read as a catching-up subscriber reads it: page after page.
async fn read_in_pages(store: &dyn EventStore, page_size: usize) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let page = store.read_all(all.last().map_or(0, |e: &RecordedEvent| e.position), page_size).await.expect("read");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn append_then_read_stream_returns_versions_positions_and_chained_hashes(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let first = store.append(&a, ExpectedVersion::NoStream, vec![event(1), event(2)], metadata()).await.expect("a");
    let second = store.append(&b, ExpectedVersion::Any, vec![event(3)], metadata()).await.expect("b");
    let third = store.append(&a, ExpectedVersion::Exact(2), vec![event(4)], metadata()).await.expect("a again");
    assert_eq!((first.first_version, first.last_version, first.first_position, first.last_position), (1, 2, 1, 2));
    assert_eq!((second.first_version, second.first_position), (1, 3));
    assert_eq!((third.first_version, third.first_position), (3, 4));
    assert!(!first.replayed);

    let events = store.read_stream(&a, 1, 100).await.expect("read a");
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(events[0].prev_hash, Hash::ZERO);
    assert_eq!(events[1].prev_hash, events[0].hash);
    assert_eq!(events[2].prev_hash, events[1].hash);
    for recorded in &events {
        assert_eq!(dossier_events::hash::compute_hash(recorded), recorded.hash);
        assert_eq!(*recorded.metadata, metadata_with_ids(&recorded.metadata));
    }
    assert_eq!(events[2].data.to_value(), json!({ "n": 4, "text": "note 4" }));
    assert_eq!(store.read_stream(&a, 3, 100).await.expect("from 3").len(), 1);
    assert_eq!(store.stream_version(&a).await.expect("version"), Some(3));
    assert_eq!(store.stream_version(&stream("none")).await.expect("version"), None);
    assert_eq!(store.head_position().await.expect("head"), 4);
    let all = store.read_all(1, 2).await.expect("page");
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![2, 3]);
}

/// The metadata as written, but with the ids the recorded event carries (they are generated per call).
fn metadata_with_ids(recorded: &EventMetadata) -> EventMetadata {
    EventMetadata {
        correlation_id: recorded.correlation_id,
        causation_id: recorded.causation_id,
        request_id: recorded.request_id.clone(),
        ..metadata()
    }
}

async fn append_with_stale_version_returns_conflict_and_appends_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let a = stream("a");
    store.append(&a, ExpectedVersion::NoStream, vec![event(1)], metadata()).await.expect("first");
    let stale = store.append(&a, ExpectedVersion::Exact(0), vec![event(2)], metadata()).await;
    assert!(matches!(stale, Err(StoreError::Conflict { actual: Some(1), .. })), "{stale:?}");
    let exists = store.append(&a, ExpectedVersion::NoStream, vec![event(2)], metadata()).await;
    assert!(matches!(exists, Err(StoreError::Conflict { expected: ExpectedVersion::NoStream, .. })), "{exists:?}");
    let missing = store.append(&stream("b"), ExpectedVersion::Exact(1), vec![event(2)], metadata()).await;
    assert!(matches!(missing, Err(StoreError::Conflict { actual: None, .. })), "{missing:?}");
    assert_eq!(store.head_position().await.expect("head"), 1);
    assert_eq!(read_everything(store.as_ref()).await.len(), 1);
}

async fn append_with_no_events_or_bad_metadata_returns_invalid(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let a = stream("a");
    let empty = store.append(&a, ExpectedVersion::Any, vec![], metadata()).await;
    assert!(matches!(empty, Err(StoreError::Invalid(_))), "{empty:?}");
    let mut bad = metadata();
    bad.actor = "bob\u{7}".into();
    let control = store.append(&a, ExpectedVersion::Any, vec![event(1)], bad).await;
    assert!(matches!(&control, Err(StoreError::Invalid(message)) if message.contains("actor")), "{control:?}");
    assert_eq!(store.head_position().await.expect("head"), 0);
}

async fn concurrent_appends_with_same_expected_version_exactly_one_succeeds(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let a = stream("contended");
    store.append(&a, ExpectedVersion::NoStream, vec![event(0)], metadata()).await.expect("seed");
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (store, a, barrier) = (Arc::clone(&store), a.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(&a, ExpectedVersion::Exact(1), vec![event(i), event(i + 100)], metadata()).await
            })
        })
        .collect();
    let mut successes = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(outcome) => {
                successes += 1;
                assert_eq!((outcome.first_version, outcome.last_version), (2, 3));
            }
            Err(StoreError::Conflict { actual: Some(3), .. }) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((successes, conflicts), (1, 49));
    let events = store.read_stream(&a, 1, 100).await.expect("read");
    assert_eq!(events.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let all = read_everything(store.as_ref()).await;
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3]);
}

/// A hook that rolls back 2 of every 10 transactions and holds 2 of every 10 open for 250 ms before committing.
pub fn chaos_hook() -> (CommitHook, Arc<AtomicUsize>) {
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&counter);
    let hook: CommitHook = Arc::new(move |_appends, _events| match seen.fetch_add(1, Ordering::SeqCst) % 10 {
        3 | 7 => CommitAction::Rollback,
        1 | 5 => CommitAction::DelayThenCommit(Duration::from_millis(250)),
        _ => CommitAction::Commit,
    });
    (hook, counter)
}

/// 16 concurrent writers (some transactions rolled back, some held open) while a subscriber follows the log from
/// position 0: it must see every committed event exactly once, in position order, gap-free, and none rolled back.
pub async fn assert_subscriber_sees_exactly_the_committed_events(
    store: Arc<dyn EventStore>,
    transactions: &AtomicUsize,
) {
    let mut subscription = Arc::clone(&store).subscribe_all(0);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<RecordedEvent>::new()));
    let sink = Arc::clone(&seen);
    let collector = tokio::spawn(async move {
        while let Some(event) = subscription.next().await {
            sink.lock().expect("lock").push(event.expect("subscription event"));
        }
    });
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let own = stream(&format!("writer{writer}"));
                let mut committed = Vec::new();
                let mut failed = 0;
                for i in 0..20 {
                    let new = event(writer * 100 + i);
                    let id = new.event_id;
                    match store.append(&own, ExpectedVersion::Any, vec![new], metadata()).await {
                        Ok(_) => committed.push(id),
                        Err(_) => failed += 1,
                    }
                    tokio::time::sleep(Duration::from_millis((writer as u64 * 7 + i as u64) % 5)).await;
                }
                (committed, failed)
            })
        })
        .collect();
    let mut committed = HashSet::new();
    let mut failed = 0;
    for writer in writers {
        let (ids, failures) = writer.await.expect("writer");
        committed.extend(ids);
        failed += failures;
    }
    assert!(failed > 0, "the hook should have rolled some transactions back");
    assert!(transactions.load(Ordering::SeqCst) >= 6, "the hook should have held some transactions open");
    let head = store.head_position().await.expect("head");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().expect("lock").last().map_or(0, |e| e.position) < head && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything still in flight arrives within a poll interval.
    tokio::time::sleep(Duration::from_millis(800)).await;
    collector.abort();
    let seen = seen.lock().expect("lock").clone();
    let seen_ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    let seen_set: HashSet<Uuid> = seen_ids.iter().copied().collect();
    let missed: Vec<_> = committed.difference(&seen_set).collect();
    assert!(missed.is_empty(), "subscriber missed {} of {} committed events", missed.len(), committed.len());
    let phantom: Vec<_> = seen_set.difference(&committed).collect();
    assert!(phantom.is_empty(), "subscriber saw {} events that were rolled back", phantom.len());
    assert_eq!(seen_ids.len(), seen_set.len(), "subscriber saw duplicates");
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=seen.len() as u64).collect::<Vec<_>>(), "positions must be gap-free and in order");
}

async fn subscribe_all_with_concurrent_writers_rollbacks_and_slow_commits_sees_every_committed_event_once(
    backend: Backend,
) {
    let scratch = Scratch::new(backend).await;
    let (hook, counter) = chaos_hook();
    let store = scratch.open_with(Some(hook)).await;
    assert_subscriber_sees_exactly_the_committed_events(store, &counter).await;
}

async fn subscribe_all_with_slow_consumer_delivers_everything_in_order(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let mut subscription = dossier_events::Subscription::spawn(Arc::clone(&store), 0, 8);
    for chunk in 0..30 {
        let events = (0..100).map(|i| event(chunk * 100 + i)).collect();
        store.append(&stream("bulk"), ExpectedVersion::NoStream, events, metadata()).await.expect("append");
    }
    // The consumer sleeps while 3,000 events are committed: the reader must wait for it, not drop events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut expected = 1;
    while expected <= 3_000 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("event in time")
            .expect("open subscription")
            .expect("event");
        assert_eq!(event.position, expected);
        expected += 1;
        if expected % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Live: a commit after catching up is delivered too.
    store.append(&stream("late"), ExpectedVersion::Any, vec![event(1)], metadata()).await.expect("append");
    let live = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.expect("live event in time");
    assert_eq!(live.expect("open").expect("event").position, 3_001);
}

async fn reopen_after_drop_returns_identical_events_and_hashes(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    append_new_streams(store.as_ref(), "durable", 5, 3).await;
    let before = read_everything(store.as_ref()).await;
    drop(store);
    let reopened = scratch.open().await;
    let after = read_everything(reopened.as_ref()).await;
    assert_eq!(before.len(), 15);
    assert_eq!(before, after);
    let report = dossier_events::verify::verify_log(reopened.as_ref()).await.expect("verify");
    assert_eq!((report.events, report.streams, report.first_bad), (15, 5, None));
    // The reopened store continues the log where it ended.
    let next = reopened.append(&stream("next"), ExpectedVersion::Any, vec![event(99)], metadata()).await;
    assert_eq!(next.expect("append").first_position, 16);
}

async fn idempotency_key_reused_after_restart_returns_original_outcome(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let a = stream("idem");
    let keyed = metadata().with_idempotency_key("upload-42");
    let original = store.append(&a, ExpectedVersion::NoStream, vec![event(1)], keyed.clone()).await.expect("first");
    drop(store);
    let store = scratch.open().await;
    // A retry carries new event ids and request ids, but the same request.
    let mut retry_metadata = EventMetadata::new("tenant-a", "alice").with_idempotency_key("upload-42");
    retry_metadata.request_id = "retry".into();
    let retry = store.append(&a, ExpectedVersion::NoStream, vec![event(1)], retry_metadata).await.expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry, dossier_events::AppendOutcome { replayed: true, recorded_at: None, ..original.clone() });
    let recorded = store.read_stream(&a, 1, 1).await.expect("read");
    assert_eq!(original.recorded_at, Some(recorded[0].recorded_at), "the outcome tells when the event was recorded");
    assert_eq!(store.head_position().await.expect("head"), 1);
    let different = store.append(&a, ExpectedVersion::NoStream, vec![event(2)], keyed.clone()).await;
    assert!(matches!(different, Err(StoreError::IdempotencyMismatch { .. })), "{different:?}");
    // Keys are scoped by tenant: the same key in another tenant is a new request.
    let mut other_tenant = keyed;
    other_tenant.tenant_id = "tenant-b".into();
    let other = store.append(&stream("b"), ExpectedVersion::NoStream, vec![event(1)], other_tenant).await;
    assert!(!other.expect("other tenant").replayed);
    assert_eq!(store.head_position().await.expect("head"), 2);
}

async fn read_stream_applies_upcasters_and_stored_read_does_not(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let document_id = Uuid::now_v7();
    let a = StreamId::for_document(document_id);
    let v1 = NewEvent::new(
        "DocumentUploaded",
        1,
        json!({
            "document_id": document_id, "filename": "report.pdf", "media_type": "application/pdf",
            "size": 1234, "sha256": "ab".repeat(32), "metadata": {}
        }),
    );
    store.append(&a, ExpectedVersion::NoStream, vec![v1], metadata()).await.expect("append v1");
    let stored = store.read_stream_stored(&a, 1, 10).await.expect("stored");
    assert_eq!(stored[0].schema_version, 1);
    let upcast = store.read_stream(&a, 1, 10).await.expect("upcast");
    assert_eq!(upcast[0].schema_version, 2);
    assert_eq!(upcast[0].data.to_value()["blob"]["size"], json!(1234));
    assert!(dossier_events::document::DocumentEvent::from_recorded(&upcast[0]).is_ok());
    // The chain covers what was stored, so verification still passes.
    let report = dossier_events::verify::verify_log(store.as_ref()).await.expect("verify");
    assert_eq!(report.first_bad, None);
    let ordered: BTreeSet<u64> = upcast.iter().map(|e| e.position).collect();
    assert_eq!(ordered.len(), 1);
}

async fn hint_head_wakes_a_subscription_at_the_head_for_another_writers_commit(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let writer = scratch.open().await;
    // Another process's store, as a server with Redis opens it: it polls once a minute and does not LISTEN.
    let follower = scratch.open_unannounced(Duration::from_secs(60)).await;
    let mut subscription = Arc::clone(&follower).subscribe_all(0);
    // Let it read the empty log and wait at the head (were it still reading, it would find the event unprompted).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outcome = writer.append(&stream("hinted"), ExpectedVersion::Any, vec![event(1)], metadata()).await.expect("a");
    let unprompted = tokio::time::timeout(Duration::from_millis(500), subscription.next()).await;
    assert!(unprompted.is_err(), "nothing but a hint or the poll can wake it: {unprompted:?}");
    follower.hint_head(outcome.last_position);
    let woken = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.expect("woken by the hint");
    assert_eq!(woken.expect("open").expect("event").position, outcome.last_position);
    // Hints only move the head forward.
    follower.hint_head(outcome.last_position + 10);
    follower.hint_head(0);
    assert_eq!(*follower.watch_head().borrow(), outcome.last_position + 10);
}

/// Catch-up paging returns exactly the log, page by page; a page fetched ahead for a reader who never asked for it is
/// not served later, after the row changed (the Postgres store reads ahead for catching-up readers).
async fn paging_through_the_log_reads_what_is_stored_now(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    append_new_streams(store.as_ref(), "paged", 4, 10).await;
    let whole = store.read_all(0, 100).await.expect("read in one page");
    assert_eq!(whole.len(), 40);
    let paged = read_in_pages(store.as_ref(), 10).await;
    let positions = |events: &[RecordedEvent]| events.iter().map(|e| (e.position, e.event_id)).collect::<Vec<_>>();
    assert_eq!(positions(&paged), positions(&whole), "paging must return the log in order, once");

    // A reader takes the first page and goes away; the row after it changes; a later reader must see the change.
    store.read_all(0, 10).await.expect("first page");
    let edited = r#"{"n":999,"text":"edited"}"#;
    let changed = scratch.execute_sql(&format!("UPDATE events SET data = '{edited}' WHERE position = 15")).await;
    assert_eq!(changed, 1);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let second = store.read_all(10, 10).await.expect("second page");
    assert_eq!(second[4].position, 15);
    assert_eq!(second[4].data.as_str(), edited, "a page read before the edit was served after it");
}

/// Every event carries its own append's metadata, whichever event a read starts at (the Postgres store writes an
/// append's metadata once, on its first event).
async fn reads_that_start_inside_an_append_carry_its_metadata(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    let (a, b) = (stream("a"), stream("b"));
    let appends = [(&a, 5, "alice"), (&b, 3, "bob"), (&a, 2, "carol"), (&a, 2, "carol")];
    for (stream, count, actor) in appends {
        let events = (0..count).map(event).collect();
        store
            .append(stream, ExpectedVersion::Any, events, EventMetadata::new("tenant-a", actor))
            .await
            .expect("append");
    }
    let whole = store.read_all(0, 100).await.expect("read all");
    let actors: Vec<&str> = whole.iter().map(|e| e.metadata.actor.as_str()).collect();
    let expected = [["alice"; 5].as_slice(), &["bob"; 3], &["carol"; 4]].concat();
    assert_eq!(actors, expected);
    let identity = |e: &RecordedEvent| (e.position, e.metadata.actor.clone(), e.metadata.request_id.clone());
    for after in 0..whole.len() {
        for limit in 1..=3 {
            let page = store.read_all(after as u64, limit).await.expect("page");
            let end = (after + limit).min(whole.len());
            assert_eq!(
                page.iter().map(identity).collect::<Vec<_>>(),
                whole[after..end].iter().map(identity).collect::<Vec<_>>(),
                "read_all({after}, {limit})"
            );
        }
    }
    for stream in [&a, &b] {
        let events: Vec<&RecordedEvent> = whole.iter().filter(|e| &e.stream_id == stream).collect();
        for from in 1..=events.len() {
            let read = store.read_stream(stream, from as u64, 2).await.expect("stream page");
            let end = (from + 1).min(events.len());
            assert_eq!(
                read.iter().map(identity).collect::<Vec<_>>(),
                events[from - 1..end].iter().map(|e| identity(e)).collect::<Vec<_>>(),
                "read_stream({stream}, {from}, 2)"
            );
        }
    }
}

async fn recent_commits_are_served_from_memory_exactly_as_the_log_holds_them(backend: Backend) {
    // Subscriptions take a store's own recent commits from memory (events/src/recent.rs): what they get there must be
    // what a read of the log returns, field for field, and nothing when another process wrote in between.
    let scratch = Scratch::new(backend).await;
    let store = scratch.open().await;
    assert_eq!(store.recent(0, 10), None, "nothing committed yet");
    let appends = (0..12).map(|i| {
        let store = Arc::clone(&store);
        async move {
            let events = (0..1 + i % 3).map(|n| event(i * 10 + n)).collect();
            let metadata = EventMetadata::new("tenant-a", format!("actor-{i}"));
            store.append(&stream("recent"), ExpectedVersion::NoStream, events, metadata).await.expect("append")
        }
    });
    futures::future::join_all(appends).await;
    let stored = store.read_all_stored(0, 1_000).await.expect("read");
    assert_eq!(stored.len(), 24);
    assert_eq!(store.recent(0, 1_000).as_ref(), Some(&stored), "every field as stored");
    for after in 0..stored.len() {
        let page = store.recent(after as u64, 5).unwrap_or_else(|| panic!("held after {after}"));
        assert_eq!(page, stored[after..(after + 5).min(stored.len())].to_vec(), "recent({after}, 5)");
    }
    assert_eq!(store.recent(stored.len() as u64, 5), None, "at the head: the log decides");

    // Another process appends, then this one again: the memory holds only what follows this store's own commit.
    let other = scratch.open().await;
    other.append(&stream("other"), ExpectedVersion::NoStream, vec![event(1)], metadata()).await.expect("other");
    store.append(&stream("mine"), ExpectedVersion::NoStream, vec![event(2), event(3)], metadata()).await.expect("mine");
    let head = stored.len() as u64;
    assert_eq!(store.recent(head, 10), None, "position {} is the other process's", head + 1);
    let tail = store.read_all_stored(head + 1, 10).await.expect("read");
    assert_eq!(store.recent(head + 1, 10), Some(tail), "this store's own commit is held");
    let mut subscription = Arc::clone(&store).subscribe_all(0);
    let mut delivered = Vec::new();
    while delivered.len() < 27 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.expect("in time");
        delivered.push(event.expect("open").expect("event"));
    }
    assert_eq!(delivered, store.read_all(0, 1_000).await.expect("read"), "the subscription saw the log");
}

/// Long event texts (a Chunked event carries its chunks' texts) are compressed with lz4 rather than Postgres's
/// default pglz, which cost about a quarter of the append statement's time (schema/postgres/0006).
#[tokio::test]
async fn postgres_compresses_long_event_texts_with_lz4() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let store = scratch.open().await;
    let sentences: Vec<String> = (0..200).map(|n| format!("Sentence {n} of a parsed document's chunk.")).collect();
    let long = NewEvent::new("Noted", 1, json!({ "text": sentences.join(" ") }));
    let short = event(1);
    store.append(&stream("lz4"), ExpectedVersion::NoStream, vec![long, short], metadata()).await.expect("append");
    let config = dossier_events::postgres::connect::parse_url(&scratch.database_url().expect("postgres scratch"))
        .expect("valid url");
    let pool = dossier_events::postgres::connect::pool(&config, 1, 0).expect("pool");
    let client = pool.get().await.expect("connection");
    let rows =
        client.query("SELECT pg_column_compression(data) FROM events ORDER BY position", &[]).await.expect("query");
    let methods: Vec<Option<String>> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        methods,
        vec![Some("lz4".to_owned()), None],
        "the long text compressed with lz4, the short one not at all"
    );
}

/// Every connection a Postgres store opened (its writer's, its listener's and its read pool's) is closed once the
/// store is dropped: a pool left open kept its connections for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_postgres_store_closes_every_connection() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let store = scratch.open().await;
    append_new_streams(store.as_ref(), "pooled", 20, 2).await;
    // Readers at once, so the pool holds several connections.
    let reads = (0..6).map(|_| read_in_pages(store.as_ref(), 7));
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.len(), 40);
    }
    let open = scratch.database_connections().await;
    assert!(open >= 3, "the writer, the listener and the pool: {open} connections");
    drop(store);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = open;
    while left > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = scratch.database_connections().await;
    }
    assert_eq!(left, 0, "{left} of {open} connections still open 10 s after the store was dropped");
}
