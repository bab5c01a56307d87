//! The read model on the embedded backend: its tables live in the event log's SQLite file (schema 0002).
//!
//! Threading: every call runs on tokio's blocking pool. Writes (`commit`, `record_failure`, creating a projection)
//! go through one write connection behind a mutex; reads each take a connection from a small pool and run beside the
//! writer (WAL readers never block it), at most [`READERS`] at once (the others wait for a connection rather than
//! open one, as in the event log's embedded store). The event log's writer thread holds its own connection to the same file:
//! SQLite lets one of them write at a time (`BEGIN IMMEDIATE`) and the other waits up to the busy timeout.

use super::paging::{lower_bound, page, sql_limit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dossier_events::document::Metadata;
use dossier_events::hash::unix_micros;
use dossier_events::sqlite::DATABASE_FILE;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::read_model::row::{ChunkRow, DocumentChange, DocumentRow};
use crate::read_model::store::{Checkpoint, DocumentPage, ReadModelError, ReadModelStore};

const SWITCH_LIVE: &str = "UPDATE projections SET live_generation = ?3 WHERE name = ?1 AND live_generation = ?2";
const DROP_CHUNKS: &str = "DELETE FROM read_chunks WHERE generation = ?1";
const DROP_DOCUMENTS: &str = "DELETE FROM read_documents WHERE generation = ?1";
const DROP_CHECKPOINT: &str = "DELETE FROM projection_checkpoints WHERE name = ?1 AND generation = ?2";
const ALL_DOCUMENT_IDS: &str = "SELECT document_id FROM read_documents WHERE generation = ?1 ORDER BY document_id";
/// Read connections, and reads running at once (a read beyond this waits for a connection: opening one per read
/// parses the schema and prepares the statement again; see the event log's embedded store).
const READERS: usize = 4;

/// Fails when the file has not been migrated to a schema with the read model's tables.
const CHECK_SCHEMA: &str = "SELECT 1 FROM projections, projection_checkpoints, read_documents, read_chunks LIMIT 0";

const SELECT_LIVE_GENERATION: &str = "SELECT live_generation FROM projections WHERE name = ?1";
const CREATE_PROJECTION: &str =
    "INSERT INTO projections (name, live_generation) VALUES (?1, 1) ON CONFLICT (name) DO NOTHING";

const SELECT_CHECKPOINT: &str =
    "SELECT position, state, error FROM projection_checkpoints WHERE name = ?1 AND generation = ?2";
/// Not for a generation older than the live one: it was replaced and dropped (see the Postgres store).
const CREATE_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (name, generation, position, state, updated_at)
    SELECT ?1, ?2, 0, 'running', ?3
    WHERE NOT EXISTS (SELECT 1 FROM projections WHERE name = ?1 AND live_generation > ?2)
    ON CONFLICT (name, generation) DO NOTHING";
/// The fence: moves the checkpoint only if it is still where the batch started.
const MOVE_CHECKPOINT: &str = "UPDATE projection_checkpoints SET position = ?4, updated_at = ?5
    WHERE name = ?1 AND generation = ?2 AND position = ?3";
const RESUME_STOPPED: &str = "UPDATE projection_checkpoints SET state = 'running', error = NULL, updated_at = ?3
    WHERE name = ?1 AND generation = ?2 AND state = 'stopped'";
const RECORD_FAILURE: &str = "INSERT INTO projection_checkpoints (name, generation, position, state, error, updated_at)
    VALUES (?1, ?2, 0, 'stopped', ?3, ?4)
    ON CONFLICT (name, generation) DO UPDATE SET state = 'stopped', error = excluded.error,
                                                 updated_at = excluded.updated_at";

/// The columns [`decode_document`] reads, in its order.
macro_rules! document_columns {
    () => {
        "document_id, tenant_id, filename, media_type, size_bytes, sha256, status, stream_version, chunk_count,
         metadata, failure_reason, created_at, updated_at, deleted"
    };
}

const UPSERT_DOCUMENT: &str = concat!(
    "INSERT INTO read_documents (generation, ",
    document_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
    ON CONFLICT (generation, document_id) DO UPDATE SET
        tenant_id = excluded.tenant_id, filename = excluded.filename, media_type = excluded.media_type,
        size_bytes = excluded.size_bytes, sha256 = excluded.sha256, status = excluded.status,
        stream_version = excluded.stream_version, chunk_count = excluded.chunk_count, metadata = excluded.metadata,
        failure_reason = excluded.failure_reason, created_at = excluded.created_at, updated_at = excluded.updated_at,
        deleted = excluded.deleted"
);
const DELETE_CHUNKS: &str = "DELETE FROM read_chunks WHERE generation = ?1 AND document_id = ?2";
const INSERT_CHUNK: &str = "INSERT INTO read_chunks (generation, document_id, chunk_index, text, byte_start, byte_end)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const SELECT_DOCUMENT: &str =
    concat!("SELECT ", document_columns!(), " FROM read_documents WHERE generation = ?1 AND document_id = ?2");
const SELECT_TENANT_DOCUMENT: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = ?1 AND document_id = ?2 AND tenant_id = ?3"
);
/// A page of a tenant's visible documents from a lower bound (inclusive): served by `read_documents_by_tenant`.
const LIST_DOCUMENTS: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = ?1 AND tenant_id = ?2 AND deleted = 0 AND document_id >= ?3
    ORDER BY document_id LIMIT ?4"
);
/// The same of one status: served by `read_documents_by_tenant_status`.
const LIST_DOCUMENTS_WITH_STATUS: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = ?1 AND tenant_id = ?2 AND status = ?5 AND deleted = 0
      AND document_id >= ?3
    ORDER BY document_id LIMIT ?4"
);
const SELECT_CHUNK: &str = "SELECT document_id, chunk_index, text, byte_start, byte_end FROM read_chunks
    WHERE generation = ?1 AND document_id = ?2 AND chunk_index = ?3";
const SELECT_CHUNKS: &str = "SELECT document_id, chunk_index, text, byte_start, byte_end FROM read_chunks
    WHERE generation = ?1 AND document_id = ?2 AND chunk_index >= ?3 ORDER BY chunk_index LIMIT ?4";

/// The read model in the embedded database; clones share the connections.
#[derive(Clone)]
pub struct SqliteReadModel {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection.
    reading: Arc<tokio::sync::Semaphore>,
}

/// Why a blocking call failed, before the database's location is added.
enum Failure {
    Sqlite(rusqlite::Error),
    Invalid(String),
    Model(ReadModelError),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl SqliteReadModel {
    /// Opens the read model in the event log's database under `data_dir`.
    ///
    /// The event store creates and migrates that file: open it first. A file without the read model's tables is
    /// refused here rather than at the first batch.
    pub async fn open(data_dir: &Path) -> Result<Self, ReadModelError> {
        let path = data_dir.join(DATABASE_FILE);
        tokio::task::spawn_blocking(move || {
            let writer = connect(&path)?;
            writer.prepare(CHECK_SCHEMA).map_err(|error| {
                ReadModelError::Database(format!(
                    "{}: no read model tables ({error}): open the event store first, which migrates the file",
                    path.display()
                ))
            })?;
            tracing::info!(database = %path.display(), "embedded_read_model_opened");
            let readers = Mutex::new(Vec::new());
            let reading = Arc::new(tokio::sync::Semaphore::new(READERS));
            Ok(Self { inner: Arc::new(Inner { path, writer: Mutex::new(writer), readers, reading }) })
        })
        .await
        .map_err(|error| ReadModelError::Database(format!("opening the embedded read model panicked: {error}")))?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on the blocking pool with a pooled read connection.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let inner = Arc::clone(&self.inner);
        let permit = Arc::clone(&inner.reading)
            .acquire_owned()
            .await
            .map_err(|_| ReadModelError::Database(format!("{what}: the read model is closed")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = inner.readers.lock().map_err(|_| poisoned(&inner.path))?.pop();
            let connection = match pooled {
                Some(connection) => connection,
                None => connect(&inner.path)?,
            };
            let result = work(&connection).map_err(|failure| located(&inner.path, what, failure));
            if let Ok(mut readers) = inner.readers.lock()
                && readers.len() < READERS
            {
                readers.push(connection);
            }
            result
        })
        .await
        .map_err(|error| ReadModelError::Database(format!("{what} panicked: {error}")))?
    }

    /// Runs `work` on the blocking pool with the write connection.
    async fn write<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, ReadModelError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut connection = inner.writer.lock().map_err(|_| poisoned(&inner.path))?;
            work(&mut connection).map_err(|failure| located(&inner.path, what, failure))
        })
        .await
        .map_err(|error| ReadModelError::Database(format!("{what} panicked: {error}")))?
    }
}

/// Opens a connection to the (existing) file with the event log's pragmas.
fn connect(path: &Path) -> Result<Connection, ReadModelError> {
    let fail =
        |what: &str, error: rusqlite::Error| ReadModelError::Database(format!("{}: {what}: {error}", path.display()));
    let mut connection = Connection::open_with_flags(path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)
        .map_err(|error| fail("cannot open", error))?;
    dossier_events::sqlite::configure(&connection).map_err(|error| fail("cannot configure the connection", error))?;
    connection
        .busy_handler(Some(dossier_events::sqlite::wait_for_lock))
        .map_err(|error| fail("cannot set busy handler", error))?;
    let mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|error| fail("not a usable database", error))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ReadModelError::Database(format!("{}: cannot switch to WAL mode (got {mode})", path.display())));
    }
    // NORMAL, unlike the event log: in WAL mode a commit then does not sync (checkpoints do), and a power loss may
    // undo the last commits, but each whole. Rows and checkpoint are one transaction, so the checkpoint is never
    // ahead of the rows; an undone batch is applied again from the log. The syncs it saves were a fifth of the
    // process's and, on a shared disk, slowed the log's own (measured with `bench api`).
    connection.execute_batch("PRAGMA synchronous = NORMAL").map_err(|error| fail("cannot set pragmas", error))?;
    Ok(connection)
}

fn poisoned(path: &Path) -> ReadModelError {
    ReadModelError::Database(format!("{}: a connection lock was poisoned by a panic", path.display()))
}

fn located(path: &Path, what: &str, failure: Failure) -> ReadModelError {
    match failure {
        Failure::Sqlite(error) => ReadModelError::Database(format!("{}: {what}: {error}", path.display())),
        Failure::Invalid(reason) => ReadModelError::Database(format!("{}: {what}: {reason}", path.display())),
        Failure::Model(error) => error,
    }
}

fn signed(value: u64, what: &str) -> Result<i64, Failure> {
    i64::try_from(value).map_err(|_| Failure::Invalid(format!("{what} {value} does not fit an INTEGER")))
}

fn unsigned(value: i64, what: &str) -> Result<u64, Failure> {
    u64::try_from(value).map_err(|_| Failure::Invalid(format!("negative {what} {value}")))
}

fn now_micros() -> i64 {
    unix_micros(OffsetDateTime::now_utc())
}

fn decode_document(row: &rusqlite::Row<'_>) -> Result<DocumentRow, Failure> {
    let document_id = Uuid::from_bytes(row.get(0)?);
    let metadata: String = row.get(9)?;
    let metadata: Metadata = serde_json::from_str(&metadata)
        .map_err(|error| Failure::Invalid(format!("document {document_id}: metadata is not a JSON object: {error}")))?;
    let timestamp = |index: usize| -> Result<OffsetDateTime, Failure> {
        let micros: i64 = row.get(index)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_err(|_| Failure::Invalid(format!("document {document_id}: timestamp {micros} is out of range")))
    };
    Ok(DocumentRow {
        document_id,
        tenant_id: row.get(1)?,
        filename: row.get(2)?,
        media_type: row.get(3)?,
        size_bytes: unsigned(row.get(4)?, "size_bytes")?,
        sha256: row.get(5)?,
        status: row.get(6)?,
        stream_version: unsigned(row.get(7)?, "stream_version")?,
        chunk_count: row.get(8)?,
        metadata,
        failure_reason: row.get(10)?,
        created_at: timestamp(11)?,
        updated_at: timestamp(12)?,
        deleted: row.get(13)?,
    })
}

fn decode_chunk(row: &rusqlite::Row<'_>) -> Result<ChunkRow, Failure> {
    Ok(ChunkRow {
        document_id: Uuid::from_bytes(row.get(0)?),
        chunk_index: row.get(1)?,
        text: row.get(2)?,
        byte_start: unsigned(row.get(3)?, "byte_start")?,
        byte_end: unsigned(row.get(4)?, "byte_end")?,
    })
}

fn query_documents(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DocumentRow>, Failure> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut documents = Vec::new();
    while let Some(row) = rows.next()? {
        documents.push(decode_document(row)?);
    }
    Ok(documents)
}

/// The batch's writes and the fenced checkpoint move, in one `BEGIN IMMEDIATE` transaction (rolled back on drop).
fn commit_blocking(
    connection: &mut Connection,
    projection: &str,
    generation: u32,
    from: u64,
    to: u64,
    changes: &[DocumentChange],
) -> Result<(), Failure> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_micros();
    if from == 0 {
        transaction.prepare_cached(CREATE_CHECKPOINT)?.execute(params![projection, generation, now])?;
    }
    let moved = transaction.prepare_cached(MOVE_CHECKPOINT)?.execute(params![
        projection,
        generation,
        signed(from, "from")?,
        signed(to, "to")?,
        now
    ])?;
    if moved == 0 {
        return Err(Failure::Model(ReadModelError::Fenced {
            projection: projection.to_owned(),
            generation,
            expected: from,
        }));
    }
    {
        let mut upsert = transaction.prepare_cached(UPSERT_DOCUMENT)?;
        let mut delete = transaction.prepare_cached(DELETE_CHUNKS)?;
        let mut insert = transaction.prepare_cached(INSERT_CHUNK)?;
        for change in changes {
            if let Some(row) = &change.row {
                let id = row.document_id.as_bytes();
                let metadata = serde_json::to_string(&row.metadata).map_err(|error| {
                    Failure::Invalid(format!("document {}: metadata cannot be serialised: {error}", row.document_id))
                })?;
                upsert.execute(params![
                    generation,
                    id,
                    row.tenant_id,
                    row.filename,
                    row.media_type,
                    signed(row.size_bytes, "size_bytes")?,
                    row.sha256,
                    row.status,
                    signed(row.stream_version, "stream_version")?,
                    row.chunk_count,
                    metadata,
                    row.failure_reason,
                    unix_micros(row.created_at),
                    unix_micros(row.updated_at),
                    row.deleted,
                ])?;
                if change.reset_chunks {
                    delete.execute(params![generation, id])?;
                }
            }
            for chunk in &change.chunks {
                insert.execute(params![
                    generation,
                    chunk.document_id.as_bytes(),
                    chunk.chunk_index,
                    chunk.text,
                    signed(chunk.byte_start, "byte_start")?,
                    signed(chunk.byte_end, "byte_end")?,
                ])?;
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

#[async_trait]
impl ReadModelStore for SqliteReadModel {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn live_generation(&self, projection: &str) -> Result<u32, ReadModelError> {
        let name = projection.to_owned();
        let existing = self
            .read("reading the live generation", move |connection| {
                Ok(connection.prepare_cached(SELECT_LIVE_GENERATION)?.query_row([name], |row| row.get(0)).optional()?)
            })
            .await?;
        if let Some(generation) = existing {
            return Ok(generation);
        }
        // First use: create the projection on the writer (queries after that take the read path above).
        let name = projection.to_owned();
        self.write("creating a projection", move |connection| {
            connection.prepare_cached(CREATE_PROJECTION)?.execute([&name])?;
            Ok(connection.prepare_cached(SELECT_LIVE_GENERATION)?.query_row([&name], |row| row.get(0))?)
        })
        .await
    }

    async fn checkpoint(&self, projection: &str, generation: u32) -> Result<Option<Checkpoint>, ReadModelError> {
        let name = projection.to_owned();
        self.read("reading a checkpoint", move |connection| {
            connection
                .prepare_cached(SELECT_CHECKPOINT)?
                .query_row(params![name, generation], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?
                .map(|(position, state, error)| -> Result<Checkpoint, Failure> {
                    Ok(Checkpoint { position: unsigned(position, "position")?, state, error })
                })
                .transpose()
        })
        .await
    }

    async fn load_documents(
        &self,
        generation: u32,
        document_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, DocumentRow>, ReadModelError> {
        let ids = document_ids.to_vec();
        self.read("loading documents", move |connection| {
            let mut found = HashMap::with_capacity(ids.len());
            // In-process lookups by primary key are cheaper than building one statement for the whole batch.
            for id in ids {
                for row in query_documents(connection, SELECT_DOCUMENT, params![generation, id.as_bytes()])? {
                    found.insert(row.document_id, row);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn commit(
        &self,
        projection: &str,
        generation: u32,
        from: u64,
        to: u64,
        changes: &[DocumentChange],
    ) -> Result<(), ReadModelError> {
        let projection = projection.to_owned();
        let changes = changes.to_vec();
        self.write("committing a batch", move |connection| {
            commit_blocking(connection, &projection, generation, from, to, &changes)
        })
        .await
    }

    async fn record_failure(&self, projection: &str, generation: u32, error: &str) -> Result<(), ReadModelError> {
        let (name, error) = (projection.to_owned(), error.to_owned());
        self.write("recording a failure", move |connection| {
            connection.prepare_cached(RECORD_FAILURE)?.execute(params![name, generation, error, now_micros()])?;
            Ok(())
        })
        .await
    }

    async fn resume_stopped(&self, projection: &str, generation: u32) -> Result<bool, ReadModelError> {
        let name = projection.to_owned();
        self.write("resuming a stopped projection", move |connection| {
            Ok(connection.prepare_cached(RESUME_STOPPED)?.execute(params![name, generation, now_micros()])? == 1)
        })
        .await
    }

    async fn switch_live(&self, projection: &str, from: u32, to: u32) -> Result<bool, ReadModelError> {
        let name = projection.to_owned();
        self.write("switching generations", move |connection| {
            Ok(connection.prepare_cached(SWITCH_LIVE)?.execute(params![name, from, to])? == 1)
        })
        .await
    }

    async fn drop_generation(&self, projection: &str, generation: u32) -> Result<(), ReadModelError> {
        let name = projection.to_owned();
        self.write("dropping a generation", move |connection| {
            let transaction = connection.transaction()?;
            // The checkpoint first, as in Postgres: a later batch for this generation is fenced.
            transaction.execute(DROP_CHECKPOINT, params![name, generation])?;
            transaction.execute(DROP_CHUNKS, params![generation])?;
            transaction.execute(DROP_DOCUMENTS, params![generation])?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    async fn drop_checkpoint(&self, projection: &str, generation: u32) -> Result<(), ReadModelError> {
        let name = projection.to_owned();
        self.write("dropping a checkpoint", move |connection| {
            connection.execute(DROP_CHECKPOINT, params![name, generation])?;
            Ok(())
        })
        .await
    }

    async fn all_document_ids(&self, generation: u32) -> Result<Vec<Uuid>, ReadModelError> {
        self.read("listing document ids", move |connection| {
            let mut statement = connection.prepare_cached(ALL_DOCUMENT_IDS)?;
            let rows = statement.query_map(params![generation], |row| row.get::<_, Vec<u8>>(0))?;
            let mut ids = Vec::new();
            for bytes in rows {
                let bytes = bytes?;
                ids.push(
                    Uuid::from_slice(&bytes).map_err(|_| Failure::Invalid("a document id is not 16 bytes".into()))?,
                );
            }
            Ok(ids)
        })
        .await
    }

    async fn get_document(
        &self,
        generation: u32,
        tenant_id: &str,
        document_id: Uuid,
    ) -> Result<Option<DocumentRow>, ReadModelError> {
        let tenant = tenant_id.to_owned();
        self.read("reading a document", move |connection| {
            let rows = query_documents(
                connection,
                SELECT_TENANT_DOCUMENT,
                params![generation, document_id.as_bytes(), tenant],
            )?;
            Ok(rows.into_iter().next())
        })
        .await
    }

    async fn list_documents(
        &self,
        generation: u32,
        tenant_id: &str,
        status: Option<&str>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<DocumentPage, ReadModelError> {
        let Some(from) = lower_bound(after).filter(|_| limit > 0) else {
            return Ok(DocumentPage { documents: Vec::new(), next_after: None });
        };
        let (tenant, status) = (tenant_id.to_owned(), status.map(str::to_owned));
        // One more than asked for tells whether another page follows.
        let fetch = sql_limit(limit.saturating_add(1));
        let documents = self
            .read("listing documents", move |connection| match status {
                None => {
                    query_documents(connection, LIST_DOCUMENTS, params![generation, tenant, from.as_bytes(), fetch])
                }
                Some(status) => query_documents(
                    connection,
                    LIST_DOCUMENTS_WITH_STATUS,
                    params![generation, tenant, from.as_bytes(), fetch, status],
                ),
            })
            .await?;
        Ok(page(documents, limit))
    }

    async fn chunks(
        &self,
        generation: u32,
        document_id: Uuid,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ChunkRow>, ReadModelError> {
        let limit = sql_limit(limit);
        self.read("reading chunks", move |connection| {
            let mut statement = connection.prepare_cached(SELECT_CHUNKS)?;
            let mut rows = statement.query(params![generation, document_id.as_bytes(), from_index, limit])?;
            let mut chunks = Vec::new();
            while let Some(row) = rows.next()? {
                chunks.push(decode_chunk(row)?);
            }
            Ok(chunks)
        })
        .await
    }

    async fn chunks_by_key(
        &self,
        generation: u32,
        keys: &[(Uuid, u32)],
    ) -> Result<HashMap<(Uuid, u32), ChunkRow>, ReadModelError> {
        let keys = keys.to_vec();
        self.read("reading chunks by key", move |connection| {
            // One primary-key lookup per hit (a search asks for at most a thousand), on one connection.
            let mut statement = connection.prepare_cached(SELECT_CHUNK)?;
            let mut chunks = HashMap::with_capacity(keys.len());
            for (document_id, chunk_index) in keys {
                let mut rows = statement.query(params![generation, document_id.as_bytes(), chunk_index])?;
                if let Some(row) = rows.next()? {
                    chunks.insert((document_id, chunk_index), decode_chunk(row)?);
                }
            }
            Ok(chunks)
        })
        .await
    }
}
