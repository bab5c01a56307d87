//! A deliberately naive Postgres event store whose positions come from an identity column, with no ordering guard.
//!
//! It exists only to show that the gap-free contract test can fail: a transaction that takes a position and commits
//! late becomes visible *below* positions a reader has already passed, and the reader skips it.

use std::sync::Arc;

use async_trait::async_trait;
use dossier_events::postgres::connect::{connect, parse_url};
use dossier_events::{
    AppendOutcome, CommitAction, CommitHook, EventMetadata, EventStore, ExpectedVersion, Hash, NewEvent, RecordedEvent,
    StoreError, StoreResult, StreamId, Upcasters,
};
use tokio::sync::{Mutex, watch};

pub struct NaiveStore {
    clients: Vec<Mutex<tokio_postgres::Client>>,
    reader: tokio_postgres::Client,
    head: Arc<watch::Sender<u64>>,
    receiver: watch::Receiver<u64>,
    hook: CommitHook,
    next: std::sync::atomic::AtomicUsize,
    upcasters: Upcasters,
}

impl NaiveStore {
    pub async fn connect(url: &str, writers: usize, hook: CommitHook) -> Self {
        let config = parse_url(url).expect("url");
        let reader = connect(&config).await.expect("connect");
        reader
            .batch_execute(
                "CREATE TABLE naive_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    event_id uuid NOT NULL, stream_id text NOT NULL, version bigint NOT NULL)",
            )
            .await
            .expect("create table");
        let mut clients = Vec::new();
        for _ in 0..writers {
            clients.push(Mutex::new(connect(&config).await.expect("connect")));
        }
        let (sender, receiver) = watch::channel(0);
        Self {
            clients,
            reader,
            head: Arc::new(sender),
            receiver,
            hook,
            next: Default::default(),
            upcasters: Upcasters::none(),
        }
    }
}

fn db(error: tokio_postgres::Error) -> StoreError {
    StoreError::database("naive store", error)
}

#[async_trait]
impl EventStore for NaiveStore {
    async fn append(
        &self,
        stream: &StreamId,
        _expected: ExpectedVersion,
        events: Vec<NewEvent>,
        _metadata: EventMetadata,
    ) -> StoreResult<AppendOutcome> {
        let index = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.clients.len();
        let mut client = self.clients[index].lock().await;
        let transaction = client.transaction().await.map_err(db)?;
        let mut positions = Vec::new();
        for event in &events {
            let row = transaction
                .query_one(
                    "INSERT INTO naive_events (event_id, stream_id, version)
                     SELECT $1, $2, coalesce(max(version), 0) + 1 FROM naive_events WHERE stream_id = $2
                     RETURNING position, version",
                    &[&event.event_id, &stream.as_str()],
                )
                .await
                .map_err(db)?;
            positions.push((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64));
        }
        match (self.hook)(1, events.len()) {
            CommitAction::Commit => {}
            CommitAction::DelayThenCommit(delay) => tokio::time::sleep(delay).await,
            CommitAction::Rollback => {
                transaction.rollback().await.map_err(db)?;
                return Err(StoreError::Unavailable("rolled back".into()));
            }
        }
        transaction.commit().await.map_err(db)?;
        let (first, last) = (positions[0], positions[positions.len() - 1]);
        self.head.send_modify(|head| *head = (*head).max(last.0));
        Ok(AppendOutcome {
            stream_id: stream.clone(),
            first_version: first.1,
            last_version: last.1,
            first_position: first.0,
            last_position: last.0,
            replayed: false,
            // The database's clock stamped the events; they tell.
            recorded_at: None,
        })
    }

    async fn read_stream_stored(&self, _: &StreamId, _: u64, _: usize) -> StoreResult<Vec<RecordedEvent>> {
        Err(StoreError::Invalid("not supported by the naive store".into()))
    }

    async fn read_all_stored(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let rows = self
            .reader
            .query(
                "SELECT position, event_id, stream_id, version FROM naive_events WHERE position > $1
                 ORDER BY position LIMIT $2",
                &[&(after_position as i64), &(limit as i64)],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|row| RecordedEvent {
                event_id: row.get(1),
                stream_id: StreamId::new(row.get::<_, String>(2)).expect("stream id"),
                version: row.get::<_, i64>(3) as u64,
                position: row.get::<_, i64>(0) as u64,
                event_type: "Naive".into(),
                schema_version: 1,
                data: dossier_events::EventData::from_value(&serde_json::Value::Null),
                metadata: std::sync::Arc::new(EventMetadata::new("t", "naive")),
                recorded_at: time::OffsetDateTime::UNIX_EPOCH,
                prev_hash: Hash::ZERO,
                hash: Hash::ZERO,
            })
            .collect())
    }

    async fn stream_version(&self, _: &StreamId) -> StoreResult<Option<u64>> {
        Err(StoreError::Invalid("not supported by the naive store".into()))
    }

    async fn head_position(&self) -> StoreResult<u64> {
        let row =
            self.reader.query_one("SELECT coalesce(max(position), 0) FROM naive_events", &[]).await.map_err(db)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.receiver.clone()
    }

    fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    fn backend_name(&self) -> &'static str {
        "naive"
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
