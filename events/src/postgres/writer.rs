//! The Postgres store's writer: one task, on a thread of its own (ADR 0019), with its own connection that commits
//! queued appends in batches.
//!
//! Each batch is one transaction that first locks the single row of `dossier_log_head` and keeps that lock through
//! its commit. Every writer of every process takes that lock, so positions are handed out and made visible strictly
//! in order (see docs/adr/0002-gap-free-positions.md).
//!
//! Batches are pipelined on the writer's connection. A batch takes two round trips: it is *opened* (BEGIN, the lock,
//! its streams' heads and its idempotency keys) and, once planned, *finished* (its writes and COMMIT). The next batch
//! is opened in the same flight as the previous one's writes and COMMIT, right behind them: one connection runs its
//! statements in order, so the next batch's reads see the previous batch committed (or rolled back), and Postgres
//! goes on to it without waiting for the client to hear about the commit, reply to its callers and send more.
//!
//! The writes of a batch are one statement, sent together with the COMMIT that ends the transaction. Whatever
//! happens to that statement, the COMMIT (a ROLLBACK when the statement failed) has already been sent, so the
//! transaction never stays open into the next batch's, and a batch is written entirely or not at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};
use uuid::Uuid;

use super::connect::{cause, connect, describe};
use crate::batch::{
    self, CommitAction, CommitHook, IdempotencyRecord, Linger, PendingAppend, Plan, StreamHead, Submission, fill_batch,
    idempotency_record,
};
use crate::error::{StoreError, StoreResult};
use crate::hash::Hash;
use crate::recent::RecentEvents;
use crate::rows::to_i64;

/// Most events committed in one transaction.
const MAX_BATCH_EVENTS: usize = 4_096;

const LOCK_HEAD: &str = "SELECT position FROM dossier_log_head WHERE id FOR UPDATE";
const STREAM_HEADS: &str = "SELECT s.stream_id, e.version, e.hash
    FROM unnest($1::text[]) AS s(stream_id)
    CROSS JOIN LATERAL (SELECT version, hash FROM events WHERE events.stream_id = s.stream_id
                        ORDER BY version DESC LIMIT 1) AS e";
const KNOWN_KEYS: &str = "SELECT k.tenant_id, k.key, k.request_hash, k.stream_id, k.first_version, k.last_version,
           k.first_position, k.last_position
    FROM idempotency_keys AS k JOIN unnest($1::text[], $2::text[]) AS u(tenant_id, key)
      ON k.tenant_id = u.tenant_id AND k.key = u.key";
/// A batch's writes in one statement: its events, its idempotency records, the new head and the notification.
/// Data-modifying CTEs run exactly once, referenced or not. The event columns are `unnest`ed in the select list,
/// which zips the arrays row by row as it goes (`FROM unnest(...)` first copies every row into a tuplestore; the
/// select-list form measured about 5 % faster here).
const WRITE_BATCH: &str = "WITH written AS (
        INSERT INTO events (position, event_id, stream_id, version, event_type, schema_version, data, metadata,
                            recorded_at, prev_hash, hash)
        SELECT unnest($1::bigint[]), unnest($2::uuid[]), unnest($3::text[]), unnest($4::bigint[]),
               unnest($5::text[]), unnest($6::int[]), unnest($7::text[]), unnest($8::text[]), $9,
               unnest($10::bytea[]), unnest($11::bytea[])
    ), keys AS (
        INSERT INTO idempotency_keys (tenant_id, key, request_hash, stream_id, first_version, last_version,
                                      first_position, last_position)
        SELECT * FROM unnest($12::text[], $13::text[], $14::bytea[], $15::text[], $16::bigint[], $17::bigint[],
                             $18::bigint[], $19::bigint[])
    ), head AS (
        UPDATE dossier_log_head SET position = $20 WHERE id
    )
    SELECT pg_notify('dossier_log', $21)";

struct Statements {
    lock_head: Statement,
    stream_heads: Statement,
    known_keys: Statement,
    write_batch: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            lock_head: client.prepare(LOCK_HEAD).await?,
            stream_heads: client.prepare(STREAM_HEADS).await?,
            known_keys: client.prepare(KNOWN_KEYS).await?,
            write_batch: client.prepare(WRITE_BATCH).await?,
        })
    }
}

pub(crate) struct Writer {
    pub config: Config,
    pub queue: mpsc::Receiver<Submission>,
    pub head: Arc<watch::Sender<u64>>,
    pub recent: Arc<RecentEvents>,
    /// The server process of the writer's connection: the listener ignores the notifications it sends, because the
    /// writer announces its own commits once it has recorded them in `recent` (the listener would often hear of a
    /// commit first and wake the subscriptions before its events were in memory, sending them to the database).
    pub pid: Arc<AtomicI32>,
    pub hook: Option<CommitHook>,
}

impl Writer {
    /// Runs until every sender is dropped, reconnecting after connection failures.
    pub async fn run(mut self) {
        let mut connection: Option<(Client, Statements)> = None;
        let mut linger = Linger::default();
        while let Some(first) = self.queue.recv().await {
            let queue = &mut self.queue;
            let mut batch = fill_batch(first, || queue.try_recv().ok(), MAX_BATCH_EVENTS);
            // Nothing is in flight: wait a little for callers that are about to come back (see `Linger`).
            let waiting = Instant::now();
            while batch.len() < linger.target() && waiting.elapsed() < linger.budget() {
                match queue.try_recv() {
                    Ok(submission) => batch.push(submission),
                    Err(mpsc::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            if connection.as_ref().is_none_or(|(client, _)| client.is_closed()) {
                connection = match self.connect().await {
                    Ok(opened) => Some(opened),
                    Err(error) => {
                        let message = error.to_string();
                        batch::fail_all(batch, || StoreError::Unavailable(message.clone()));
                        // Don't spin on a database that is down.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
            }
            let Some((client, statements)) = connection.as_ref() else {
                continue;
            };
            self.pipeline(client, statements, batch, &mut linger).await;
        }
    }

    async fn connect(&self) -> StoreResult<(Client, Statements)> {
        let client = connect(&self.config).await?;
        let statements = Statements::prepare(&client).await.map_err(|error| {
            StoreError::Unavailable(format!("{}: preparing statements: {}", describe(&self.config), cause(&error)))
        })?;
        // The listener hears this connection's notifications too; it leaves them to the writer (see `pid`).
        let pid: i32 =
            client.query_one("SELECT pg_backend_pid()", &[]).await.map(|row| row.get(0)).map_err(|error| {
                StoreError::Unavailable(format!(
                    "{}: reading the backend pid: {}",
                    describe(&self.config),
                    cause(&error)
                ))
            })?;
        self.pid.store(pid, Ordering::SeqCst);
        Ok((client, statements))
    }

    /// Commits `batch`, then every batch that was waiting by the time the previous one's writes went out, each
    /// opened right behind the previous one's COMMIT. Returns when the queue is empty (or the connection failed).
    async fn pipeline(
        &mut self,
        client: &Client,
        statements: &Statements,
        first: Vec<Submission>,
        linger: &mut Linger,
    ) {
        let mut batch = first;
        let mut started = Instant::now();
        let mut opened = open(client, statements, &appends_of(&batch)).await;
        loop {
            let mut open_batch = match opened {
                Ok(open_batch) => open_batch,
                Err(error) => {
                    // Nothing was sent after this batch's opening statements, so this ends only its transaction.
                    if !client.is_closed() {
                        let _ = client.batch_execute("ROLLBACK").await;
                    }
                    self.fail(batch, &error);
                    return;
                }
            };
            let appends = appends_of(&batch);
            let plan = batch::plan(
                &appends,
                &mut open_batch.heads,
                &mut open_batch.known,
                open_batch.head,
                batch::now_micros(),
            );
            let action = self.hook.as_ref().map_or(CommitAction::Commit, |hook| hook(appends.len(), plan.rows.len()));
            if let CommitAction::DelayThenCommit(delay) = action {
                // Held before anything of the batch is sent, so the next batch cannot be opened meanwhile.
                tokio::time::sleep(delay).await;
            }
            let commit = !matches!(action, CommitAction::Rollback);
            let next = self.waiting();
            let next_started = Instant::now();
            let (finished, next_opened) = match &next {
                None => (finish(client, statements, &plan, commit).await, None),
                Some(next) => {
                    let next_appends = appends_of(next);
                    let (finished, next_opened) = futures::join!(
                        finish(client, statements, &plan, commit),
                        open(client, statements, &next_appends)
                    );
                    (finished, Some(next_opened))
                }
            };
            linger.record(appends.len(), started.elapsed());
            let committed = plan.committed();
            match finished {
                Ok(()) if commit => {
                    tracing::trace!(
                        appends = batch.len(),
                        events = committed.events,
                        head = committed.head,
                        "batch_committed"
                    );
                    self.recent.committed(committed.recorded);
                    crate::head::advance(&self.head, committed.head);
                    batch::reply_all(batch, committed.results);
                }
                Ok(()) => batch::fail_all(batch, batch::injected_rollback),
                Err(error) => self.fail(batch, &error),
            }
            match (next, next_opened) {
                (Some(next), Some(next_opened)) => {
                    batch = next;
                    opened = next_opened;
                    started = next_started;
                }
                _ => return,
            }
        }
    }

    fn fail(&self, batch: Vec<Submission>, error: &StoreError) {
        tracing::error!(database = %describe(&self.config), error = %error, "append_batch_failed");
        let message = error.to_string();
        batch::fail_all(batch, || StoreError::Unavailable(message.clone()));
    }

    /// The appends waiting right now, as one batch (without waiting for more).
    fn waiting(&mut self) -> Option<Vec<Submission>> {
        let queue = &mut self.queue;
        let first = queue.try_recv().ok()?;
        Some(fill_batch(first, || queue.try_recv().ok(), MAX_BATCH_EVENTS))
    }
}

fn appends_of(batch: &[Submission]) -> Vec<&PendingAppend> {
    batch.iter().map(|submission| &submission.append).collect()
}

fn failed(error: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("appending: {}", cause(error)))
}

/// A batch whose transaction is open: it holds the log's write lock and knows the log's head, the current head of
/// every stream it appends to and the records of the idempotency keys it uses.
struct OpenBatch {
    head: u64,
    heads: HashMap<String, StreamHead>,
    known: HashMap<(String, String), IdempotencyRecord>,
}

/// Opens a batch: BEGIN, the lock, the stream heads and the keys, pipelined in one round trip. One connection runs
/// its statements in order, so the reads run after the lock was granted and see every batch committed before it.
async fn open(client: &Client, statements: &Statements, appends: &[&PendingAppend]) -> StoreResult<OpenBatch> {
    let mut streams: Vec<&str> = appends.iter().map(|append| append.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let scopes: Vec<(String, String)> = appends.iter().filter_map(|append| append.idempotency_scope()).collect();
    let tenants: Vec<&str> = scopes.iter().map(|scope| scope.0.as_str()).collect();
    let keys: Vec<&str> = scopes.iter().map(|scope| scope.1.as_str()).collect();
    let ((), lock_row, head_rows, key_rows) = futures::try_join!(
        client.batch_execute("BEGIN"),
        client.query_one(&statements.lock_head, &[]),
        async { client.query(&statements.stream_heads, &[&streams]).await },
        async {
            if scopes.is_empty() {
                Ok(Vec::new())
            } else {
                client.query(&statements.known_keys, &[&tenants, &keys]).await
            }
        }
    )
    .map_err(|error| failed(&error))?;
    let head: i64 = lock_row.get(0);

    let mut heads = HashMap::with_capacity(head_rows.len());
    for row in head_rows {
        let stream: String = row.get(0);
        let version: i64 = row.get(1);
        let hash: Vec<u8> = row.get(2);
        let hash = Hash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt {
            position: 0,
            reason: format!("stream {stream} version {version}: hash is not 32 bytes"),
        })?;
        heads.insert(stream, StreamHead { version: version as u64, hash });
    }
    let mut known = HashMap::with_capacity(key_rows.len());
    for row in key_rows {
        let scope: (String, String) = (row.get(0), row.get(1));
        let record =
            idempotency_record(&scope, (row.get(2), row.get(3), [row.get(4), row.get(5), row.get(6), row.get(7)]))?;
        known.insert(scope, record);
    }
    Ok(OpenBatch { head: head as u64, heads, known })
}

/// Finishes an open batch: its writes (one statement, none when every append was a conflict or a replay) and then
/// COMMIT, or ROLLBACK when `commit` is false. Both are sent before either answers (`join`, never `try_join`, which
/// could stop before sending the second), so the transaction ends whatever the writes do: a write that fails aborts
/// the transaction, and its COMMIT then rolls back.
async fn finish(client: &Client, statements: &Statements, plan: &Plan<'_>, commit: bool) -> StoreResult<()> {
    let end = if commit { "COMMIT" } else { "ROLLBACK" };
    if plan.rows.is_empty() {
        return client.batch_execute(end).await.map_err(|error| failed(&error));
    }
    let (written, ended) = futures::join!(write_plan(client, statements, plan), client.batch_execute(end));
    written.and(ended).map_err(|error| failed(&error))
}

/// The batch's writes, as one statement.
async fn write_plan(client: &Client, statements: &Statements, plan: &Plan<'_>) -> Result<(), tokio_postgres::Error> {
    let rows = &plan.rows;
    let positions: Vec<i64> = rows.iter().map(|row| to_i64(row.position)).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.event_id).collect();
    let streams: Vec<&str> = rows.iter().map(|row| row.stream_id).collect();
    let versions: Vec<i64> = rows.iter().map(|row| to_i64(row.version)).collect();
    let types: Vec<&str> = rows.iter().map(|row| row.event_type).collect();
    let schema_versions: Vec<i32> = rows.iter().map(|row| row.schema_version as i32).collect();
    let data: Vec<&str> = rows.iter().map(|row| row.data_json).collect();
    // An append's metadata is stored once, on its first event (schema/postgres/0005).
    let metadata: Vec<Option<&str>> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let same_as_previous = index.checked_sub(1).map(|previous| &rows[previous]).is_some_and(|previous| {
                previous.stream_id == row.stream_id
                    && previous.version + 1 == row.version
                    && previous.metadata_json == row.metadata_json
            });
            (!same_as_previous).then_some(row.metadata_json)
        })
        .collect();
    let prev_hashes: Vec<&[u8]> = rows.iter().map(|row| row.prev_hash.0.as_slice()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|row| row.hash.0.as_slice()).collect();
    // Every row of a batch was stamped with the same time.
    let recorded_at = batch::from_micros(rows[0].recorded_at_micros);

    let records = &plan.idempotency;
    let key_tenants: Vec<&str> = records.iter().map(|r| r.tenant_id.as_str()).collect();
    let key_names: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let key_hashes: Vec<&[u8]> = records.iter().map(|r| r.request_hash.0.as_slice()).collect();
    let key_streams: Vec<&str> = records.iter().map(|r| r.outcome.stream_id.as_str()).collect();
    let key_numbers: [Vec<i64>; 4] = [
        records.iter().map(|r| to_i64(r.outcome.first_version)).collect(),
        records.iter().map(|r| to_i64(r.outcome.last_version)).collect(),
        records.iter().map(|r| to_i64(r.outcome.first_position)).collect(),
        records.iter().map(|r| to_i64(r.outcome.last_position)).collect(),
    ];
    let head = to_i64(plan.head);
    let head_text = plan.head.to_string();
    let params: [&(dyn ToSql + Sync); 21] = [
        &positions,
        &ids,
        &streams,
        &versions,
        &types,
        &schema_versions,
        &data,
        &metadata,
        &recorded_at,
        &prev_hashes,
        &hashes,
        &key_tenants,
        &key_names,
        &key_hashes,
        &key_streams,
        &key_numbers[0],
        &key_numbers[1],
        &key_numbers[2],
        &key_numbers[3],
        &head,
        &head_text,
    ];
    client.execute(&statements.write_batch, &params).await.map(|_| ())
}
