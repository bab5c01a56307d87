//! The read model on Postgres (schema 0002), through a deadpool pool.
//!
//! A batch is one transaction on one pooled connection. Its statements are pipelined (tokio-postgres sends the
//! queries of concurrently polled futures back to back on a connection), and each multi-row write is a single
//! `unnest` statement, so a batch costs two round trips however many documents and chunks it holds: the writes with
//! the fenced checkpoint move, then `COMMIT` (or `ROLLBACK` when the fence did not hold).
//!
//! Threading: the handle is cheap to clone and usable from any task; each call takes a connection from the pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use dossier_events::document::Metadata;
use dossier_events::postgres::connect::{cause, describe, pool};
use postgres_types::{Json, ToSql};
use time::OffsetDateTime;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::paging::{lower_bound, page, sql_limit};
use crate::read_model::row::{ChunkRow, DocumentChange, DocumentRow};
use crate::read_model::store::{Checkpoint, DocumentPage, ReadModelError, ReadModelStore};

/// Opens a batch's transaction. Its statements are planned for their parameters at every execution: the read
/// model's tables start empty and grow fast during a rebuild, and a generic plan made while a table was small (a
/// sequential scan) would be kept, growing each batch's cost with the table until autovacuum's next ANALYZE.
///
/// Its commit does not wait for the WAL to reach the disk (`synchronous_commit = off`): the rows and the checkpoint
/// are one transaction, which a crash keeps or loses whole, and a lost batch is applied again from the log. The
/// log's appends share the server's WAL and keep their own synchronous commits; they no longer queue behind flushes
/// for a disposable projection.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL synchronous_commit = off";

/// Fails when the database has not been migrated to a schema with the read model's tables.
const CHECK_SCHEMA: &str = "SELECT 1 FROM projections, projection_checkpoints, read_documents, read_chunks LIMIT 0";

const SWITCH_LIVE: &str = "UPDATE projections SET live_generation = $3 WHERE name = $1 AND live_generation = $2";
const DROP_CHUNKS: &str = "DELETE FROM read_chunks WHERE generation = $1";
const DROP_DOCUMENTS: &str = "DELETE FROM read_documents WHERE generation = $1";
const DROP_CHECKPOINT: &str = "DELETE FROM projection_checkpoints WHERE name = $1 AND generation = $2";
const ALL_DOCUMENT_IDS: &str = "SELECT document_id FROM read_documents WHERE generation = $1 ORDER BY document_id";
const SELECT_LIVE_GENERATION: &str = "SELECT live_generation FROM projections WHERE name = $1";
const CREATE_PROJECTION: &str =
    "INSERT INTO projections (name, live_generation) VALUES ($1, 1) ON CONFLICT (name) DO NOTHING";

const SELECT_CHECKPOINT: &str =
    "SELECT position, state, error FROM projection_checkpoints WHERE name = $1 AND generation = $2";
/// A generation older than the live one was replaced and dropped: a runner that started on it before the switch must
/// not bring its checkpoint back (its first batch would then pass the fence and fill the dropped generation). The
/// projection's row is read `FOR SHARE` and stays locked until the batch ends: a switch (an `UPDATE` of that row)
/// in progress is waited for and then seen, and a switch that comes later waits for the batch, so the drop that
/// follows it sees, and deletes, everything the batch wrote.
const CREATE_CHECKPOINT: &str = "WITH live AS (SELECT live_generation FROM projections WHERE name = $1 FOR SHARE)
    INSERT INTO projection_checkpoints (name, generation, position, state)
    SELECT $1, $2, 0, 'running'
    WHERE NOT EXISTS (SELECT 1 FROM live WHERE live_generation > $2)
    ON CONFLICT (name, generation) DO NOTHING";
/// The fence: moves the checkpoint only if it is still where the batch started. A concurrent runner's batch holds
/// the row lock until it commits; this then re-reads the moved row and matches nothing.
const MOVE_CHECKPOINT: &str = "UPDATE projection_checkpoints SET position = $4, updated_at = now()
    WHERE name = $1 AND generation = $2 AND position = $3";
const RESUME_STOPPED: &str = "UPDATE projection_checkpoints SET state = 'running', error = NULL, updated_at = now()
    WHERE name = $1 AND generation = $2 AND state = 'stopped' RETURNING name";
const RECORD_FAILURE: &str = "INSERT INTO projection_checkpoints (name, generation, position, state, error)
    VALUES ($1, $2, 0, 'stopped', $3)
    ON CONFLICT (name, generation) DO UPDATE SET state = 'stopped', error = excluded.error, updated_at = now()";

/// The columns [`decode_document`] reads, in its order.
macro_rules! document_columns {
    () => {
        "document_id, tenant_id, filename, media_type, size_bytes, sha256, status, stream_version, chunk_count,
         metadata, failure_reason, created_at, updated_at, deleted"
    };
}

const UPSERT_DOCUMENTS: &str = concat!(
    "INSERT INTO read_documents (generation, ",
    document_columns!(),
    ")
    SELECT $1::integer, u.*
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[],
                $10::integer[], $11::jsonb[], $12::text[], $13::timestamptz[], $14::timestamptz[], $15::boolean[]) AS u
    ON CONFLICT (generation, document_id) DO UPDATE SET
        tenant_id = excluded.tenant_id, filename = excluded.filename, media_type = excluded.media_type,
        size_bytes = excluded.size_bytes, sha256 = excluded.sha256, status = excluded.status,
        stream_version = excluded.stream_version, chunk_count = excluded.chunk_count, metadata = excluded.metadata,
        failure_reason = excluded.failure_reason, created_at = excluded.created_at, updated_at = excluded.updated_at,
        deleted = excluded.deleted"
);
/// Each document's chunks found through the primary key (a `LATERAL` subquery per id, which the planner cannot
/// turn into a join over the whole table), then deleted by their row ids.
const DELETE_CHUNKS: &str = "DELETE FROM read_chunks WHERE ctid = ANY(ARRAY(
    SELECT c.ctid FROM unnest($2::uuid[]) AS u(id)
    CROSS JOIN LATERAL (SELECT ctid FROM read_chunks WHERE generation = $1 AND document_id = u.id OFFSET 0) AS c))";
const INSERT_CHUNKS: &str = "INSERT INTO read_chunks (generation, document_id, chunk_index, text, byte_start, byte_end)
    SELECT $1::integer, u.* FROM unnest($2::uuid[], $3::integer[], $4::text[], $5::bigint[], $6::bigint[]) AS u";

/// One primary-key lookup per id (as in [`DELETE_CHUNKS`]).
const LOAD_DOCUMENTS: &str = concat!(
    "SELECT d.* FROM unnest($2::uuid[]) AS u(id) CROSS JOIN LATERAL (SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = $1 AND document_id = u.id LIMIT 1) AS d"
);
const SELECT_TENANT_DOCUMENT: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = $1 AND document_id = $2 AND tenant_id = $3"
);
/// A page of a tenant's visible documents from a lower bound (inclusive): served by `read_documents_by_tenant`.
const LIST_DOCUMENTS: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = $1 AND tenant_id = $2 AND NOT deleted AND document_id >= $3
    ORDER BY document_id LIMIT $4"
);
/// The same of one status: served by `read_documents_by_tenant_status`.
const LIST_DOCUMENTS_WITH_STATUS: &str = concat!(
    "SELECT ",
    document_columns!(),
    " FROM read_documents WHERE generation = $1 AND tenant_id = $2 AND status = $5 AND NOT deleted
      AND document_id >= $3
    ORDER BY document_id LIMIT $4"
);
const SELECT_CHUNKS_BY_KEY: &str = "SELECT c.document_id, c.chunk_index, c.text, c.byte_start, c.byte_end
    FROM unnest($2::uuid[], $3::integer[]) AS k (document_id, chunk_index)
    JOIN read_chunks c ON c.generation = $1 AND c.document_id = k.document_id AND c.chunk_index = k.chunk_index";
const SELECT_CHUNKS: &str = "SELECT document_id, chunk_index, text, byte_start, byte_end FROM read_chunks
    WHERE generation = $1 AND document_id = $2 AND chunk_index >= $3 ORDER BY chunk_index LIMIT $4";

/// The read model in a Postgres database; clones share the pool.
#[derive(Clone)]
pub struct PostgresReadModel {
    pool: Pool,
    location: Arc<str>,
}

/// Why a call failed, before the database's location is added.
enum Failure {
    Driver(tokio_postgres::Error),
    Invalid(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Driver(error)
    }
}

impl PostgresReadModel {
    /// Connects with a pool of `pool_size` connections and checks that the read model's tables exist (the event
    /// store's migrations create them).
    pub async fn connect(config: tokio_postgres::Config, pool_size: usize) -> Result<Self, ReadModelError> {
        let location: Arc<str> = describe(&config).into();
        let pool = pool(&config, pool_size, 0).map_err(|error| ReadModelError::Database(error.to_string()))?;
        let model = Self { pool, location };
        let client = model.client().await?;
        client.batch_execute(CHECK_SCHEMA).await.map_err(|error| {
            ReadModelError::Database(format!(
                "{}: no read model tables ({}): migrate the database first",
                model.location,
                cause(&error)
            ))
        })?;
        drop(client);
        tracing::info!(database = %model.location, pool_size, "postgres_read_model_opened");
        Ok(model)
    }

    /// `host:port/database`, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn client(&self) -> Result<Object, ReadModelError> {
        self.pool.get().await.map_err(|error| {
            ReadModelError::Database(format!("cannot get a Postgres connection to {}: {error}", self.location))
        })
    }

    /// Names the database and the operation in an error.
    fn located(&self, what: &str, failure: impl Into<Failure>) -> ReadModelError {
        match failure.into() {
            Failure::Driver(error) => ReadModelError::Database(format!("{}: {what}: {}", self.location, cause(&error))),
            Failure::Invalid(reason) => ReadModelError::Database(format!("{}: {what}: {reason}", self.location)),
        }
    }

    /// Runs one prepared (and cached) statement on a pooled connection.
    async fn query(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ReadModelError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|error| self.located(what, error))?;
        client.query(&statement, params).await.map_err(|error| self.located(what, error))
    }

    async fn query_documents(
        &self,
        what: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<DocumentRow>, ReadModelError> {
        let rows = self.query(what, sql, params).await?;
        rows.iter().map(|row| decode_document(row).map_err(|failure| self.located(what, failure))).collect()
    }

    /// The batch on one connection: everything up to the fence pipelined, then `COMMIT` or `ROLLBACK`.
    async fn commit_batch(
        &self,
        batch: &Batch<'_>,
        projection: &str,
        generation: u32,
        from: u64,
        to: u64,
    ) -> Result<(), ReadModelError> {
        const WHAT: &str = "committing a batch";
        let failed = |error| self.located(WHAT, error);
        let (generation_key, from_key, to_key) =
            (int(generation, "generation")?, signed(from, "from")?, signed(to, "to")?);
        let pooled = self.client().await?;
        let (create, fence, upsert, delete, insert) = futures::try_join!(
            pooled.prepare_cached(CREATE_CHECKPOINT),
            pooled.prepare_cached(MOVE_CHECKPOINT),
            pooled.prepare_cached(UPSERT_DOCUMENTS),
            pooled.prepare_cached(DELETE_CHUNKS),
            pooled.prepare_cached(INSERT_CHUNKS),
        )
        .map_err(failed)?;
        let transaction = OpenTransaction(Some(pooled));
        let Some(client) = transaction.client() else {
            return Err(ReadModelError::Database(format!("{}: {WHAT}: connection lost", self.location)));
        };
        let documents = &batch.documents;
        let chunks = &batch.chunks;
        let fence_params: [&(dyn ToSql + Sync); 4] = [&projection, &generation_key, &from_key, &to_key];
        // One connection runs these in the order they are sent; the fence's row lock makes a concurrent runner of
        // this generation wait behind it before writing anything.
        let ((), _, moved, _, _, _) = futures::try_join!(
            client.batch_execute(BEGIN),
            async { if from == 0 { client.execute(&create, &[&projection, &generation_key]).await } else { Ok(0) } },
            client.execute(&fence, &fence_params),
            async {
                if documents.ids.is_empty() {
                    return Ok(0);
                }
                let params: [&(dyn ToSql + Sync); 15] = [
                    &generation_key,
                    &documents.ids,
                    &documents.tenants,
                    &documents.filenames,
                    &documents.media_types,
                    &documents.sizes,
                    &documents.sha256s,
                    &documents.statuses,
                    &documents.versions,
                    &documents.chunk_counts,
                    &documents.metadata,
                    &documents.failure_reasons,
                    &documents.created_at,
                    &documents.updated_at,
                    &documents.deleted,
                ];
                client.execute(&upsert, &params).await
            },
            async {
                if batch.reset.is_empty() {
                    Ok(0)
                } else {
                    client.execute(&delete, &[&generation_key, &batch.reset]).await
                }
            },
            async {
                if chunks.documents.is_empty() {
                    return Ok(0);
                }
                let params: [&(dyn ToSql + Sync); 6] =
                    [&generation_key, &chunks.documents, &chunks.indexes, &chunks.texts, &chunks.starts, &chunks.ends];
                client.execute(&insert, &params).await
            },
        )
        .map_err(failed)?;
        if moved == 0 {
            client.batch_execute("ROLLBACK").await.map_err(failed)?;
            transaction.end();
            return Err(ReadModelError::Fenced { projection: projection.to_owned(), generation, expected: from });
        }
        client.batch_execute("COMMIT").await.map_err(failed)?;
        transaction.end();
        Ok(())
    }
}

/// A pooled connection with a transaction open on it. Dropped before [`OpenTransaction::end`] (an error, or the
/// caller's future cancelled mid-batch), it closes the connection rather than return it to the pool: the server
/// rolls the transaction back, and no later caller is handed a connection in the middle of it.
struct OpenTransaction(Option<Object>);

impl OpenTransaction {
    fn client(&self) -> Option<&Client> {
        self.0.as_deref().map(|wrapper| &**wrapper)
    }

    /// The transaction has ended: the connection goes back to the pool.
    fn end(mut self) {
        drop(self.0.take());
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// A batch's writes as the columns of the `unnest` statements.
struct Batch<'a> {
    documents: DocumentColumns<'a>,
    /// Documents whose stored chunks are removed first.
    reset: Vec<Uuid>,
    chunks: ChunkColumns<'a>,
}

#[derive(Default)]
struct DocumentColumns<'a> {
    ids: Vec<Uuid>,
    tenants: Vec<&'a str>,
    filenames: Vec<&'a str>,
    media_types: Vec<&'a str>,
    sizes: Vec<i64>,
    sha256s: Vec<&'a str>,
    statuses: Vec<&'a str>,
    versions: Vec<i64>,
    chunk_counts: Vec<i32>,
    metadata: Vec<Json<&'a Metadata>>,
    failure_reasons: Vec<Option<&'a str>>,
    created_at: Vec<OffsetDateTime>,
    updated_at: Vec<OffsetDateTime>,
    deleted: Vec<bool>,
}

#[derive(Default)]
struct ChunkColumns<'a> {
    documents: Vec<Uuid>,
    indexes: Vec<i32>,
    texts: Vec<&'a str>,
    starts: Vec<i64>,
    ends: Vec<i64>,
}

impl<'a> Batch<'a> {
    /// Lays out the changes by column. Rows are sorted by id (a stable lock order) and, should one document appear
    /// twice, its last row wins: one multi-row upsert may not touch a row twice.
    fn new(changes: &'a [DocumentChange]) -> Result<Self, ReadModelError> {
        let rows: BTreeMap<Uuid, &DocumentRow> =
            changes.iter().filter_map(|change| change.row.as_ref()).map(|row| (row.document_id, row)).collect();
        let mut documents = DocumentColumns::default();
        for row in rows.into_values() {
            documents.ids.push(row.document_id);
            documents.tenants.push(&row.tenant_id);
            documents.filenames.push(&row.filename);
            documents.media_types.push(&row.media_type);
            documents.sizes.push(signed(row.size_bytes, "size_bytes")?);
            documents.sha256s.push(&row.sha256);
            documents.statuses.push(&row.status);
            documents.versions.push(signed(row.stream_version, "stream_version")?);
            documents.chunk_counts.push(int(row.chunk_count, "chunk_count")?);
            documents.metadata.push(Json(&row.metadata));
            documents.failure_reasons.push(row.failure_reason.as_deref());
            documents.created_at.push(row.created_at);
            documents.updated_at.push(row.updated_at);
            documents.deleted.push(row.deleted);
        }
        let reset = changes
            .iter()
            .filter(|change| change.reset_chunks)
            .filter_map(|change| change.row.as_ref().map(|row| row.document_id))
            .collect();
        let mut chunks = ChunkColumns::default();
        for chunk in changes.iter().flat_map(|change| &change.chunks) {
            chunks.documents.push(chunk.document_id);
            chunks.indexes.push(int(chunk.chunk_index, "chunk_index")?);
            chunks.texts.push(&chunk.text);
            chunks.starts.push(signed(chunk.byte_start, "byte_start")?);
            chunks.ends.push(signed(chunk.byte_end, "byte_end")?);
        }
        Ok(Self { documents, reset, chunks })
    }
}

fn signed(value: u64, what: &str) -> Result<i64, ReadModelError> {
    i64::try_from(value).map_err(|_| ReadModelError::Database(format!("{what} {value} does not fit a bigint")))
}

fn int(value: u32, what: &str) -> Result<i32, ReadModelError> {
    i32::try_from(value).map_err(|_| ReadModelError::Database(format!("{what} {value} does not fit an integer")))
}

fn unsigned(value: i64, what: &str) -> Result<u64, Failure> {
    u64::try_from(value).map_err(|_| Failure::Invalid(format!("negative {what} {value}")))
}

fn decode_document(row: &Row) -> Result<DocumentRow, Failure> {
    let metadata: Json<Metadata> = row.try_get(9)?;
    let chunk_count: i32 = row.try_get(8)?;
    Ok(DocumentRow {
        document_id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        filename: row.try_get(2)?,
        media_type: row.try_get(3)?,
        size_bytes: unsigned(row.try_get(4)?, "size_bytes")?,
        sha256: row.try_get(5)?,
        status: row.try_get(6)?,
        stream_version: unsigned(row.try_get(7)?, "stream_version")?,
        chunk_count: u32::try_from(chunk_count)
            .map_err(|_| Failure::Invalid(format!("negative chunk_count {chunk_count}")))?,
        metadata: metadata.0,
        failure_reason: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
        deleted: row.try_get(13)?,
    })
}

fn decode_chunk(row: &Row) -> Result<ChunkRow, Failure> {
    let chunk_index: i32 = row.try_get(1)?;
    Ok(ChunkRow {
        document_id: row.try_get(0)?,
        chunk_index: u32::try_from(chunk_index)
            .map_err(|_| Failure::Invalid(format!("negative chunk_index {chunk_index}")))?,
        text: row.try_get(2)?,
        byte_start: unsigned(row.try_get(3)?, "byte_start")?,
        byte_end: unsigned(row.try_get(4)?, "byte_end")?,
    })
}

#[async_trait]
impl ReadModelStore for PostgresReadModel {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn live_generation(&self, projection: &str) -> Result<u32, ReadModelError> {
        const WHAT: &str = "reading the live generation";
        let decode = |row: &Row| -> Result<u32, ReadModelError> {
            let generation: i32 = row.try_get(0).map_err(|error| self.located(WHAT, error))?;
            u32::try_from(generation)
                .map_err(|_| self.located(WHAT, Failure::Invalid(format!("negative generation {generation}"))))
        };
        if let Some(row) = self.query(WHAT, SELECT_LIVE_GENERATION, &[&projection]).await?.first() {
            return decode(row);
        }
        // First use: create the projection, then read whichever row won (queries after that take the path above).
        let client = self.client().await?;
        let (create, select) =
            futures::try_join!(client.prepare_cached(CREATE_PROJECTION), client.prepare_cached(SELECT_LIVE_GENERATION))
                .map_err(|error| self.located(WHAT, error))?;
        let params: [&(dyn ToSql + Sync); 1] = [&projection];
        let (_, row) = futures::try_join!(client.execute(&create, &params), client.query_one(&select, &params))
            .map_err(|error| self.located(WHAT, error))?;
        decode(&row)
    }

    async fn checkpoint(&self, projection: &str, generation: u32) -> Result<Option<Checkpoint>, ReadModelError> {
        const WHAT: &str = "reading a checkpoint";
        let generation = int(generation, "generation")?;
        let rows = self.query(WHAT, SELECT_CHECKPOINT, &[&projection, &generation]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let decoded = (|| -> Result<Checkpoint, Failure> {
            Ok(Checkpoint {
                position: unsigned(row.try_get(0)?, "position")?,
                state: row.try_get(1)?,
                error: row.try_get(2)?,
            })
        })();
        decoded.map(Some).map_err(|failure| self.located(WHAT, failure))
    }

    async fn load_documents(
        &self,
        generation: u32,
        document_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, DocumentRow>, ReadModelError> {
        if document_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let generation = int(generation, "generation")?;
        let rows = self.query_documents("loading documents", LOAD_DOCUMENTS, &[&generation, &document_ids]).await?;
        Ok(rows.into_iter().map(|row| (row.document_id, row)).collect())
    }

    async fn commit(
        &self,
        projection: &str,
        generation: u32,
        from: u64,
        to: u64,
        changes: &[DocumentChange],
    ) -> Result<(), ReadModelError> {
        let batch = Batch::new(changes)?;
        self.commit_batch(&batch, projection, generation, from, to).await
    }

    async fn record_failure(&self, projection: &str, generation: u32, error: &str) -> Result<(), ReadModelError> {
        let generation = int(generation, "generation")?;
        self.query("recording a failure", RECORD_FAILURE, &[&projection, &generation, &error]).await.map(|_| ())
    }

    async fn resume_stopped(&self, projection: &str, generation: u32) -> Result<bool, ReadModelError> {
        let generation = int(generation, "generation")?;
        let rows = self.query("resuming a stopped projection", RESUME_STOPPED, &[&projection, &generation]).await?;
        Ok(rows.len() == 1)
    }

    async fn switch_live(&self, projection: &str, from: u32, to: u32) -> Result<bool, ReadModelError> {
        let (from, to) = (int(from, "generation")?, int(to, "generation")?);
        let client = self.client().await?;
        let changed = client
            .execute(SWITCH_LIVE, &[&projection, &from, &to])
            .await
            .map_err(|error| self.located("switching generations", error))?;
        Ok(changed == 1)
    }

    async fn drop_generation(&self, projection: &str, generation: u32) -> Result<(), ReadModelError> {
        const WHAT: &str = "dropping a generation";
        let generation = int(generation, "generation")?;
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(|error| self.located(WHAT, error))?;
        // The checkpoint first: deleting it waits for a batch in flight (which holds its row lock from the fence)
        // and fences every later one, so the row deletes below see everything that generation will ever hold.
        transaction
            .execute(DROP_CHECKPOINT, &[&projection, &generation])
            .await
            .map_err(|error| self.located(WHAT, error))?;
        for sql in [DROP_CHUNKS, DROP_DOCUMENTS] {
            transaction.execute(sql, &[&generation]).await.map_err(|error| self.located(WHAT, error))?;
        }
        transaction.commit().await.map_err(|error| self.located(WHAT, error))
    }

    async fn drop_checkpoint(&self, projection: &str, generation: u32) -> Result<(), ReadModelError> {
        let generation = int(generation, "generation")?;
        let client = self.client().await?;
        client
            .execute(DROP_CHECKPOINT, &[&projection, &generation])
            .await
            .map_err(|error| self.located("dropping a checkpoint", error))?;
        Ok(())
    }

    async fn all_document_ids(&self, generation: u32) -> Result<Vec<Uuid>, ReadModelError> {
        let generation = int(generation, "generation")?;
        let rows = self.query("listing document ids", ALL_DOCUMENT_IDS, &[&generation]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn get_document(
        &self,
        generation: u32,
        tenant_id: &str,
        document_id: Uuid,
    ) -> Result<Option<DocumentRow>, ReadModelError> {
        let generation = int(generation, "generation")?;
        let rows = self
            .query_documents("reading a document", SELECT_TENANT_DOCUMENT, &[&generation, &document_id, &tenant_id])
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn list_documents(
        &self,
        generation: u32,
        tenant_id: &str,
        status: Option<&str>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<DocumentPage, ReadModelError> {
        const WHAT: &str = "listing documents";
        let Some(from) = lower_bound(after).filter(|_| limit > 0) else {
            return Ok(DocumentPage { documents: Vec::new(), next_after: None });
        };
        let generation = int(generation, "generation")?;
        // One more than asked for tells whether another page follows.
        let fetch = sql_limit(limit.saturating_add(1));
        let documents = match status {
            None => self.query_documents(WHAT, LIST_DOCUMENTS, &[&generation, &tenant_id, &from, &fetch]).await?,
            Some(status) => {
                let params: [&(dyn ToSql + Sync); 5] = [&generation, &tenant_id, &from, &fetch, &status];
                self.query_documents(WHAT, LIST_DOCUMENTS_WITH_STATUS, &params).await?
            }
        };
        Ok(page(documents, limit))
    }

    async fn chunks(
        &self,
        generation: u32,
        document_id: Uuid,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ChunkRow>, ReadModelError> {
        const WHAT: &str = "reading chunks";
        let generation = int(generation, "generation")?;
        // An index past the integer range has no chunk at or after it.
        let Ok(from_index) = i32::try_from(from_index) else { return Ok(Vec::new()) };
        let rows =
            self.query(WHAT, SELECT_CHUNKS, &[&generation, &document_id, &from_index, &sql_limit(limit)]).await?;
        rows.iter().map(|row| decode_chunk(row).map_err(|failure| self.located(WHAT, failure))).collect()
    }

    async fn chunks_by_key(
        &self,
        generation: u32,
        keys: &[(Uuid, u32)],
    ) -> Result<HashMap<(Uuid, u32), ChunkRow>, ReadModelError> {
        const WHAT: &str = "reading chunks by key";
        let generation = int(generation, "generation")?;
        // An index past the integer range has no chunk.
        let (documents, indexes): (Vec<Uuid>, Vec<i32>) =
            keys.iter().filter_map(|(document, index)| Some((*document, i32::try_from(*index).ok()?))).unzip();
        if documents.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.query(WHAT, SELECT_CHUNKS_BY_KEY, &[&generation, &documents, &indexes]).await?;
        rows.iter()
            .map(|row| {
                let chunk = decode_chunk(row).map_err(|failure| self.located(WHAT, failure))?;
                Ok(((chunk.document_id, chunk.chunk_index), chunk))
            })
            .collect()
    }
}
