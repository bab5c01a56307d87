//! The embedded backend: the whole log in one SQLite file (WAL mode) under the data directory.
//!
//! Threading: one writer thread owns the write connection (see `writer.rs`); reads run on tokio's blocking pool,
//! each on a connection taken from a small pool, concurrently with the writer (WAL readers never block it). At most
//! [`READERS`] reads run at once; the others wait for a connection rather than open one. A checkpointer thread with
//! its own connection copies the WAL into the database file after commits (see `checkpoint.rs`), so the writer
//! does not stop appending to do it.

mod checkpoint;
mod file;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use uuid::Uuid;

use crate::batch::{CommitHook, PendingAppend, Submission};
use crate::envelope::{AppendOutcome, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use crate::error::{StoreError, StoreResult};
use crate::migrate::MigrationReport;
use crate::recent::RecentEvents;
use crate::rows::{MetadataCache, StoredRow, to_i64};
use crate::store::EventStore;
use crate::upcast::Upcasters;

/// The file the log lives in, under the data directory.
pub const DATABASE_FILE: &str = "dossier.db";

/// Settings every connection to dossier's SQLite file takes, whoever opens it (the log, the read model, the
/// idempotency records).
///
/// The query planner stability guarantee: without it SQLite marks a statement whose plan might depend on a bound
/// value (any `stream_id = ?1 ... ORDER BY version` here) to be re-prepared whenever its bindings are cleared, and
/// rusqlite clears them each time a cached statement goes back to its cache. The log writer re-prepared its
/// stream-head query once per transaction, and every stream read re-prepared its query.
pub fn configure(connection: &rusqlite::Connection) -> rusqlite::Result<()> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(|_| ())
}

/// SQLite's busy handler for every connection to the database: waits for another connection's lock (the read
/// model's projection shares the file and its write lock with the log) in steps of tens of microseconds, then of a
/// millisecond, and gives up (`SQLITE_BUSY`) after about ten seconds.
///
/// SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25 ms and on: an append that met a projection's
/// commit slept at least a millisecond and often ten, while the lock is usually held for less than one, and every
/// upload in that group commit waited with it.
pub fn wait_for_lock(attempt: i32) -> bool {
    lock_wait_step(attempt).map(std::thread::sleep).is_some()
}

/// How long [`wait_for_lock`]'s `attempt` sleeps; `None`: give up.
fn lock_wait_step(attempt: i32) -> Option<Duration> {
    const FINE_STEPS: i32 = 500;
    const COARSE_STEPS: i32 = 10_000;
    match attempt {
        ..FINE_STEPS => Some(Duration::from_micros(20)),
        _ if attempt < FINE_STEPS + COARSE_STEPS => Some(Duration::from_millis(1)),
        _ => None,
    }
}

/// Appends waiting for the writer before callers are slowed down.
const QUEUE_DEPTH: usize = 8_192;

/// Read connections, and reads running at once. A read beyond this waits for a connection: opening one per read
/// (as an unbounded pool does under load) parses the schema and prepares every statement again, and more threads
/// than this only contend on SQLite's allocator mutex (measured with `bench api`: a third of the CPU time of
/// `GET /documents/{id}` under 16 concurrent clients went to connection setup and that mutex).
const READERS: usize = 8;

/// How to open the embedded store.
#[derive(Clone)]
pub struct SqliteOptions {
    /// Apply pending migrations (otherwise a database that needs them is refused).
    pub migrate: bool,
    /// Create the database when the file does not exist (otherwise its absence is an error).
    pub create: bool,
    /// Upcasting steps for reads.
    pub upcasters: Upcasters,
    /// Fault injection for tests.
    pub commit_hook: Option<CommitHook>,
    /// How often a subscription at the head re-reads without a signal.
    pub poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            create: true,
            upcasters: Upcasters::standard(),
            commit_hook: None,
            poll_interval: crate::subscription::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The embedded event store; clones share one database and one writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    queue: mpsc::Sender<Submission>,
    head: watch::Receiver<u64>,
    /// The writer's side of `head`, for hints (weak: the writer's exit closes the watch).
    head_hints: Weak<watch::Sender<u64>>,
    poll_interval: Duration,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection.
    reading: Arc<Semaphore>,
    upcasters: Upcasters,
    /// What the writer committed last, for subscriptions.
    recent: Arc<RecentEvents>,
}

impl SqliteStore {
    /// Opens (and, per `options`, creates and migrates) the log in `data_dir`.
    pub async fn open(data_dir: &Path, options: SqliteOptions) -> StoreResult<Self> {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&data_dir, options))
            .await
            .map_err(|error| StoreError::Unavailable(format!("opening the embedded store panicked: {error}")))?
    }

    /// Applies pending migrations to the log in `data_dir`, creating it if needed.
    pub async fn migrate(data_dir: &Path) -> StoreResult<MigrationReport> {
        let path = data_dir.join(DATABASE_FILE);
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            create_dir(&data_dir)?;
            if path.exists() {
                file::check_header(&path)?;
            }
            let mut connection = file::connect(&path, OpenFlags::default())?;
            file::migrate(&mut connection, &path, true)
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("migrating panicked: {error}")))?
    }

    fn open_blocking(data_dir: &Path, options: SqliteOptions) -> StoreResult<Self> {
        let path = data_dir.join(DATABASE_FILE);
        let flags = if path.exists() {
            file::check_header(&path)?;
            OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE
        } else if options.create {
            create_dir(data_dir)?;
            OpenFlags::default()
        } else {
            return Err(StoreError::Unavailable(format!("{}: no such database", path.display())));
        };
        let mut connection = file::connect(&path, flags)?;
        file::migrate(&mut connection, &path, options.migrate)?;
        let head: i64 = connection
            .query_row("SELECT coalesce(max(position), 0) FROM events", [], |row| row.get(0))
            .map_err(|error| StoreError::database(format!("{}: reading the head", path.display()), error))?;
        let (head_sender, head_receiver) = watch::channel(head as u64);
        let head_sender = Arc::new(head_sender);
        let head_hints = Arc::downgrade(&head_sender);
        let (queue_sender, queue_receiver) = mpsc::channel(QUEUE_DEPTH);
        connection
            .pragma_update(None, "wal_autocheckpoint", checkpoint::WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(|error| StoreError::database(format!("{}: setting wal_autocheckpoint", path.display()), error))?;
        let checkpointer = checkpoint::start(&path)?;
        let recent = Arc::new(RecentEvents::default());
        let writer = writer::Writer {
            connection,
            checkpointer,
            path: path.clone(),
            queue: queue_receiver,
            head: head_sender,
            recent: Arc::clone(&recent),
            hook: options.commit_hook,
        };
        std::thread::Builder::new()
            .name("dossier-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|error| StoreError::Unavailable(format!("cannot start the writer thread: {error}")))?;
        tracing::info!(database = %path.display(), head, "embedded_store_opened");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                queue: queue_sender,
                head: head_receiver,
                head_hints,
                poll_interval: options.poll_interval,
                readers: Mutex::new(Vec::new()),
                reading: Arc::new(Semaphore::new(READERS)),
                upcasters: options.upcasters,
                recent,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn quick_check(&self) -> StoreResult<Vec<String>> {
        self.with_reader(|connection, location| {
            let mut statement =
                connection.prepare("PRAGMA quick_check").map_err(|e| StoreError::database(location, e))?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(|e| StoreError::database(location, e))?;
            let lines = rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::database(location, e))?;
            Ok(lines.into_iter().filter(|line| line != "ok").collect())
        })
        .await
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &str) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = Arc::clone(&self.inner);
        let permit = Arc::clone(&inner.reading).acquire_owned().await.map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner.readers.lock().map_err(|_| StoreError::Closed)?.pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => file::connect(&inner.path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)?,
            };
            let location = inner.path.display().to_string();
            let result = work(&connection, &location);
            if let Ok(mut readers) = inner.readers.lock()
                && readers.len() < READERS
            {
                readers.push(connection);
            }
            result
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("read task panicked: {error}")))?
    }
}

fn create_dir(dir: &Path) -> StoreResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|error| StoreError::Unavailable(format!("{}: cannot create data directory: {error}", dir.display())))
}

const SELECT_EVENTS: &str = "SELECT position, event_id, stream_id, version, event_type, schema_version, data, metadata,
                                    recorded_at, prev_hash, hash FROM events";

fn read_rows(
    connection: &Connection,
    location: &str,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<RecordedEvent>> {
    let fail = |error| StoreError::database(format!("{location}: reading events"), error);
    let mut statement = connection.prepare_cached(sql).map_err(fail)?;
    let mut rows = statement.query(params).map_err(fail)?;
    let mut events = Vec::new();
    let mut metadata = MetadataCache::default();
    while let Some(row) = rows.next().map_err(fail)? {
        let position: i64 = row.get(0).map_err(fail)?;
        let corrupt = |reason: &str| StoreError::Corrupt { position: position as u64, reason: reason.to_owned() };
        let text = |index: usize| -> StoreResult<&str> {
            std::str::from_utf8(row.get_ref(index).map_err(fail)?.as_bytes().map_err(|error| fail(error.into()))?)
                .map_err(|_| corrupt("text column is not UTF-8"))
        };
        let blob = |index: usize| -> StoreResult<&[u8]> {
            row.get_ref(index).map_err(fail)?.as_blob().map_err(|error| fail(error.into()))
        };
        let event_id = Uuid::from_slice(blob(1)?).map_err(|_| corrupt("event_id is not 16 bytes"))?;
        let stored = StoredRow {
            position,
            event_id,
            stream_id: text(2)?,
            version: row.get(3).map_err(fail)?,
            event_type: text(4)?,
            schema_version: row.get(5).map_err(fail)?,
            data: text(6)?,
            metadata: Some(text(7)?),
            recorded_at_micros: row.get(8).map_err(fail)?,
            prev_hash: blob(9)?,
            hash: blob(10)?,
        };
        events.push(stored.decode(&mut metadata)?);
    }
    Ok(events)
}

#[async_trait]
impl EventStore for SqliteStore {
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
        let stream = stream.as_str().to_owned();
        self.with_reader(move |connection, location| {
            let sql = format!("{SELECT_EVENTS} WHERE stream_id = ?1 AND version >= ?2 ORDER BY version LIMIT ?3");
            read_rows(connection, location, &sql, params![stream, to_i64(from_version), to_i64(limit as u64)])
        })
        .await
    }

    async fn read_all_stored(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.with_reader(move |connection, location| {
            let sql = format!("{SELECT_EVENTS} WHERE position > ?1 ORDER BY position LIMIT ?2");
            read_rows(connection, location, &sql, params![to_i64(after_position), to_i64(limit as u64)])
        })
        .await
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<Option<u64>> {
        let stream = stream.as_str().to_owned();
        self.with_reader(move |connection, location| {
            connection
                .query_row("SELECT max(version) FROM events WHERE stream_id = ?1", [stream], |row| {
                    row.get::<_, Option<i64>>(0)
                })
                .optional()
                .map(|version| version.flatten().map(|v| v as u64))
                .map_err(|error| StoreError::database(format!("{location}: reading a stream version"), error))
        })
        .await
    }

    async fn head_position(&self) -> StoreResult<u64> {
        self.with_reader(|connection, location| {
            connection
                .query_row("SELECT coalesce(max(position), 0) FROM events", [], |row| row.get::<_, i64>(0))
                .map(|head| head as u64)
                .map_err(|error| StoreError::database(format!("{location}: reading the head"), error))
        })
        .await
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
        "embedded"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.head_position().await.map(|_| ())
    }

    /// SQLite's `PRAGMA quick_check` of the file.
    async fn check_storage(&self) -> StoreResult<Vec<String>> {
        self.quick_check().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_wait_starts_in_microseconds_and_gives_up_after_about_ten_seconds() {
        let steps: Vec<Duration> = (0..).map_while(lock_wait_step).collect();
        assert!(steps[0] <= Duration::from_micros(50), "first step {:?}", steps[0]);
        assert!(steps.windows(2).all(|pair| pair[0] <= pair[1]), "steps only grow");
        let total: Duration = steps.iter().sum();
        assert!(total >= Duration::from_secs(10) && total <= Duration::from_secs(11), "gives up after {total:?}");
    }

    #[test]
    fn a_connection_waits_for_another_connections_write_lock_instead_of_failing() {
        let dir = std::env::temp_dir().join(format!("dossier-lock-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("x.db");
        let holder = file::connect(&path, OpenFlags::default()).expect("open");
        holder.execute_batch("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)").expect("lock");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            holder.execute_batch("COMMIT").expect("commit");
        });
        let waiter = file::connect(&path, OpenFlags::default()).expect("open");
        // The busy handler `file::connect` installs makes it wait; a connection with none fails at once with
        // SQLITE_BUSY. (How finely it waits is the schedule's test above.)
        waiter.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT").expect("waits, then writes");
        release.join().expect("holder");
        let rows: i64 = waiter.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).expect("count");
        assert_eq!(rows, 2);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
