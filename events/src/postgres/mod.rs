//! The Postgres backend (tokio-postgres, a deadpool read pool, one writer on a thread of its own, LISTEN/NOTIFY hints).

pub mod connect;
mod listener;
mod read_ahead;
mod writer;

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Config;
use tokio_postgres::types::ToSql;

use crate::batch::{CommitHook, PendingAppend, Submission};
use crate::envelope::{AppendOutcome, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use crate::error::{StoreError, StoreResult};
use crate::hash::unix_micros;
use crate::migrate::MigrationReport;
use crate::recent::RecentEvents;
use crate::rows::{MetadataCache, StoredRow, to_i64};
use crate::store::EventStore;
use crate::upcast::Upcasters;

use connect::{cause, describe};

/// Appends waiting for the writer before callers are slowed down.
const QUEUE_DEPTH: usize = 8_192;

/// How to connect the Postgres store.
#[derive(Clone)]
pub struct PostgresOptions {
    /// Read connections kept open.
    pub pool_size: usize,
    /// Extra read connections allowed under load.
    pub pool_overflow: usize,
    /// Apply pending migrations (otherwise a database that needs them is refused).
    pub migrate: bool,
    /// Upcasting steps for reads.
    pub upcasters: Upcasters,
    /// Fault injection for tests.
    pub commit_hook: Option<CommitHook>,
    /// Hold a `LISTEN dossier_log` connection so subscriptions wake at once for other processes' commits (off
    /// when something else announces them, such as Redis).
    pub listen: bool,
    /// How often a subscription at the head re-reads without a signal.
    pub poll_interval: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 5,
            pool_overflow: 15,
            migrate: true,
            upcasters: Upcasters::standard(),
            commit_hook: None,
            listen: true,
            poll_interval: crate::subscription::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The Postgres event store; clones share one pool and one writer.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    pool: Pool,
    queue: mpsc::Sender<Submission>,
    head: watch::Receiver<u64>,
    /// The writer's side of `head`, for hints (weak: the writer's exit closes the watch).
    head_hints: Weak<watch::Sender<u64>>,
    poll_interval: Duration,
    upcasters: Upcasters,
    read_ahead: read_ahead::ReadAhead,
    /// What the writer committed last, for subscriptions.
    recent: Arc<RecentEvents>,
}

impl PostgresStore {
    /// Connects using a `postgres://` URL.
    pub async fn connect(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        Self::connect_with(connect::parse_url(url)?, options).await
    }

    /// Applies pending migrations to the database at `url`.
    pub async fn migrate(url: &str) -> StoreResult<MigrationReport> {
        connect::migrate(&connect::parse_url(url)?, true).await
    }

    /// Connects using a parsed configuration: checks reachability and the schema, then starts the writer.
    pub async fn connect_with(config: Config, options: PostgresOptions) -> StoreResult<Self> {
        let location = describe(&config);
        connect::migrate(&config, options.migrate).await?;
        let pool = connect::pool(&config, options.pool_size, options.pool_overflow)?;
        let head = {
            let client = pool.get().await.map_err(|error| unavailable(&location, &error))?;
            let row = client
                .query_one("SELECT position FROM dossier_log_head WHERE id", &[])
                .await
                .map_err(|error| StoreError::Unavailable(format!("{location}: reading the head: {}", cause(&error))))?;
            row.get::<_, i64>(0) as u64
        };
        let (head_sender, head_receiver) = watch::channel(head);
        let head_sender = Arc::new(head_sender);
        let head_hints = Arc::downgrade(&head_sender);
        let (queue_sender, queue_receiver) = mpsc::channel(QUEUE_DEPTH);
        let recent = Arc::new(RecentEvents::default());
        let writer_pid = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let writer = writer::Writer {
            config: config.clone(),
            queue: queue_receiver,
            head: Arc::clone(&head_sender),
            recent: Arc::clone(&recent),
            pid: Arc::clone(&writer_pid),
            hook: options.commit_hook,
        };
        // Its own thread and runtime (ADR 0019): the writer is the one task every append waits for, and each batch
        // takes several hops between it and its connection's driver; on the shared runtime every hop queued behind
        // the request tasks.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| StoreError::Unavailable(format!("cannot start the writer's runtime: {error}")))?;
        std::thread::Builder::new()
            .name("dossier-pg-writer".into())
            .spawn(move || runtime.block_on(writer.run()))
            .map_err(|error| StoreError::Unavailable(format!("cannot start the writer thread: {error}")))?;
        if options.listen {
            tokio::spawn(listener::run(config, head_sender, writer_pid));
        }
        tracing::info!(database = %location, head, listen = options.listen, "postgres_store_opened");
        Ok(Self {
            inner: Arc::new(Inner {
                location,
                pool,
                queue: queue_sender,
                head: head_receiver,
                head_hints,
                poll_interval: options.poll_interval,
                upcasters: options.upcasters,
                read_ahead: read_ahead::ReadAhead::default(),
                recent,
            }),
        })
    }

    /// `host:port/database`, for messages.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<tokio_postgres::Row>> {
        let location = &self.inner.location;
        let client = self.inner.pool.get().await.map_err(|error| unavailable(location, &error))?;
        let statement = client
            .prepare_cached(sql)
            .await
            .map_err(|error| StoreError::Unavailable(format!("{location}: {}", cause(&error))))?;
        client
            .query(&statement, params)
            .await
            .map_err(|error| StoreError::Unavailable(format!("{location}: {}", cause(&error))))
    }

    /// Runs an event query and decodes rows as they stream in, so decoding overlaps the server producing them.
    async fn read_events(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<RecordedEvent>> {
        let location = &self.inner.location;
        let failed = |error: tokio_postgres::Error| StoreError::Unavailable(format!("{location}: {}", cause(&error)));
        let client = self.inner.pool.get().await.map_err(|error| unavailable(location, &error))?;
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        let rows = client.query_raw(&statement, params.iter().copied()).await.map_err(failed)?;
        futures::pin_mut!(rows);
        let mut events = Vec::with_capacity(PAGE_HINT);
        let mut metadata = MetadataCache::default();
        while let Some(row) = rows.next().await {
            let row = row.map_err(failed)?;
            let stored = StoredRow {
                position: row.try_get(0).map_err(failed)?,
                event_id: row.try_get(1).map_err(failed)?,
                stream_id: row.try_get(2).map_err(failed)?,
                version: row.try_get(3).map_err(failed)?,
                event_type: row.try_get(4).map_err(failed)?,
                schema_version: i64::from(row.try_get::<_, i32>(5).map_err(failed)?),
                data: row.try_get(6).map_err(failed)?,
                metadata: row.try_get(7).map_err(failed)?,
                recorded_at_micros: unix_micros(row.try_get(8).map_err(failed)?),
                prev_hash: row.try_get(9).map_err(failed)?,
                hash: row.try_get(10).map_err(failed)?,
            };
            events.push(stored.decode(&mut metadata)?);
        }
        Ok(events)
    }
}

fn unavailable(location: &str, error: &deadpool_postgres::PoolError) -> StoreError {
    StoreError::Unavailable(format!("cannot get a Postgres connection to {location}: {error}"))
}

impl PostgresStore {
    /// One page of the global log, straight from the database.
    async fn read_page(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let sql = format!(
            "{} WHERE e.position > $1 ORDER BY e.position LIMIT $2",
            select_events("e.position = $1::bigint + 1")
        );
        self.read_events(&sql, &[&to_i64(after_position), &to_i64(limit as u64)]).await
    }
}

/// Rows a read usually returns (a subscription page), to size its buffer up front.
const PAGE_HINT: usize = 1_000;

/// The columns of `events AS e`, in [`StoredRow`] order. An event whose metadata is NULL has its append's metadata,
/// stored on the event before it (schema/postgres/0005); decoding carries it forward from the row before, and for
/// the first row of a result, which `first_row` identifies, the query looks it up.
fn select_events(first_row: &str) -> String {
    format!(
        "SELECT e.position, e.event_id, e.stream_id, e.version, e.event_type, e.schema_version, e.data,
                CASE WHEN e.metadata IS NULL AND {first_row}
                     THEN (SELECT p.metadata FROM events AS p WHERE p.position < e.position AND p.metadata IS NOT NULL
                           ORDER BY p.position DESC LIMIT 1)
                     ELSE e.metadata END,
                e.recorded_at, e.prev_hash, e.hash
         FROM events AS e"
    )
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> StoreResult<AppendOutcome> {
        let append = PendingAppend::new(stream, expected, events, metadata)?;
        let (reply, result) = oneshot::channel();
        self.inner.queue.send(Submission { append, reply }).await.map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_stream_stored(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        let sql = format!(
            "{} WHERE e.stream_id = $1 AND e.version >= $2 ORDER BY e.version LIMIT $3",
            select_events("e.version = $2")
        );
        self.read_events(&sql, &[&stream.as_str(), &to_i64(from_version), &to_i64(limit as u64)]).await
    }

    async fn read_all_stored(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let ahead = match self.inner.read_ahead.take(after_position, limit) {
            Some(page) => page.await.ok().and_then(Result::ok),
            None => None,
        };
        // A page read ahead that failed is read again here, so the caller sees this read's own error, if any.
        let page = match ahead {
            Some(page) => page,
            None => self.read_page(after_position, limit).await?,
        };
        let head = *self.inner.head.borrow();
        if let Some(next_after) = read_ahead::next_request(&page, limit, head) {
            let store = self.clone();
            let next = tokio::spawn(async move { store.read_page(next_after, limit).await });
            self.inner.read_ahead.put(next_after, limit, next);
        }
        Ok(page)
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<Option<u64>> {
        let rows = self.query("SELECT max(version) FROM events WHERE stream_id = $1", &[&stream.as_str()]).await?;
        Ok(rows.first().and_then(|row| row.get::<_, Option<i64>>(0)).map(|version| version as u64))
    }

    async fn head_position(&self) -> StoreResult<u64> {
        let rows = self.query("SELECT position FROM dossier_log_head WHERE id", &[]).await?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    fn hint_head(&self, position: u64) {
        crate::head::hint(&self.inner.head_hints, position);
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    fn recent(&self, after_position: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.inner.recent.after(after_position, limit)
    }

    fn upcasters(&self) -> &Upcasters {
        &self.inner.upcasters
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.query("SELECT 1", &[]).await.map(|_| ())
    }
}
