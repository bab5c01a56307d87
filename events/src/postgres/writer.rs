//! The Postgres store's writer: one task with its own connection that commits queued appends in batches.
//!
//! Each batch is one transaction that first locks the single row of `dossier_log_head` and keeps that lock through
//! its commit. Every writer of every process takes that lock, so positions are handed out and made visible strictly
//! in order (see docs/adr/0002-gap-free-positions.md). Statements within a batch are pipelined.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};
use uuid::Uuid;

use super::connect::{cause, connect, describe};
use crate::batch::{
    self, CommitAction, CommitHook, Committed, Linger, PendingAppend, Plan, StreamHead, Submission, fill_batch,
    idempotency_record,
};
use crate::error::{StoreError, StoreResult};
use crate::hash::Hash;
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
const INSERT_EVENTS: &str = "INSERT INTO events (position, event_id, stream_id, version, event_type, schema_version,
                                   data, metadata, recorded_at, prev_hash, hash)
    SELECT p, i, s, v, t, sv, d, m, $9, ph, h
    FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::text[], $8::text[],
                $10::bytea[], $11::bytea[]) AS u(p, i, s, v, t, sv, d, m, ph, h)";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys (tenant_id, key, request_hash, stream_id, first_version,
                                           last_version, first_position, last_position)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
                         $8::bigint[])";
const SET_HEAD: &str = "UPDATE dossier_log_head SET position = $1 WHERE id";
const NOTIFY: &str = "SELECT pg_notify('dossier_log', $1)";

struct Statements {
    lock_head: Statement,
    stream_heads: Statement,
    known_keys: Statement,
    insert_events: Statement,
    insert_keys: Statement,
    set_head: Statement,
    notify: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            lock_head: client.prepare(LOCK_HEAD).await?,
            stream_heads: client.prepare(STREAM_HEADS).await?,
            known_keys: client.prepare(KNOWN_KEYS).await?,
            insert_events: client.prepare(INSERT_EVENTS).await?,
            insert_keys: client.prepare(INSERT_KEYS).await?,
            set_head: client.prepare(SET_HEAD).await?,
            notify: client.prepare(NOTIFY).await?,
        })
    }
}

pub(crate) struct Writer {
    pub config: Config,
    pub queue: mpsc::Receiver<Submission>,
    pub head: Arc<watch::Sender<u64>>,
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
            let waiting = Instant::now();
            while batch.len() < linger.target() && waiting.elapsed() < linger.budget() {
                match queue.try_recv() {
                    Ok(submission) => batch.push(submission),
                    Err(mpsc::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            if connection.as_ref().is_none_or(|(client, _)| client.is_closed()) {
                connection = match self.open().await {
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
            let Some((client, statements)) = connection.as_mut() else {
                continue;
            };
            let appends: Vec<&PendingAppend> = batch.iter().map(|submission| &submission.append).collect();
            let started = Instant::now();
            let result = commit(client, statements, &appends, self.hook.as_ref()).await;
            linger.record(appends.len(), started.elapsed());
            match result {
                Ok(committed) => {
                    tracing::trace!(
                        appends = appends.len(),
                        events = committed.events,
                        head = committed.head,
                        "batch_committed"
                    );
                    crate::head::advance(&self.head, committed.head);
                    batch::reply_all(batch, committed.results);
                }
                Err(error) => {
                    tracing::error!(database = %describe(&self.config), error = %error, "append_batch_failed");
                    let message = error.to_string();
                    batch::fail_all(batch, || StoreError::Unavailable(message.clone()));
                }
            }
        }
    }

    async fn open(&self) -> StoreResult<(Client, Statements)> {
        let client = connect(&self.config).await?;
        let statements = Statements::prepare(&client).await.map_err(|error| {
            StoreError::Unavailable(format!("{}: preparing statements: {}", describe(&self.config), cause(&error)))
        })?;
        Ok((client, statements))
    }
}

/// Commits one batch. Round trips: {BEGIN, lock, stream heads, keys} pipelined; then the writes pipelined with
/// COMMIT (or, with a hook, the writes, then the hook's decision, then COMMIT/ROLLBACK).
async fn commit(
    client: &Client,
    statements: &Statements,
    appends: &[&PendingAppend],
    hook: Option<&CommitHook>,
) -> StoreResult<Committed> {
    let result = commit_open(client, statements, appends, hook).await;
    if result.is_err() && !client.is_closed() {
        // Harmless when the transaction already ended: Postgres only warns.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

async fn commit_open(
    client: &Client,
    statements: &Statements,
    appends: &[&PendingAppend],
    hook: Option<&CommitHook>,
) -> StoreResult<Committed> {
    let fail = |error: tokio_postgres::Error| StoreError::Unavailable(format!("appending: {}", cause(&error)));
    let mut streams: Vec<&str> = appends.iter().map(|append| append.stream.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let scopes: Vec<(String, String)> = appends.iter().filter_map(|append| append.idempotency_scope()).collect();
    let tenants: Vec<&str> = scopes.iter().map(|scope| scope.0.as_str()).collect();
    let keys: Vec<&str> = scopes.iter().map(|scope| scope.1.as_str()).collect();
    // One connection runs its statements in order, so the reads below run after the lock was granted and see
    // every batch committed before it.
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
    .map_err(fail)?;
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

    let plan = batch::plan(appends, &mut heads, &mut known, head as u64, batch::now_micros());
    let writes = async {
        if plan.rows.is_empty() {
            return Ok(());
        }
        write_plan(client, statements, &plan).await
    };
    match hook {
        None => {
            futures::try_join!(writes, client.batch_execute("COMMIT")).map_err(fail)?;
        }
        Some(hook) => {
            writes.await.map_err(fail)?;
            match hook(appends.len(), plan.rows.len()) {
                CommitAction::Commit => {}
                CommitAction::DelayThenCommit(delay) => tokio::time::sleep(delay).await,
                CommitAction::Rollback => {
                    client.batch_execute("ROLLBACK").await.map_err(fail)?;
                    return Err(batch::injected_rollback());
                }
            }
            client.batch_execute("COMMIT").await.map_err(fail)?;
        }
    }
    Ok(plan.committed())
}

/// The batch's writes, pipelined: the events (one `unnest` statement, which pipelines with the rest and measured as
/// fast as binary COPY here), the idempotency records, the head and the notification.
async fn write_plan(
    transaction: &Client,
    statements: &Statements,
    plan: &Plan<'_>,
) -> Result<(), tokio_postgres::Error> {
    let rows = &plan.rows;
    let positions: Vec<i64> = rows.iter().map(|row| to_i64(row.position)).collect();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.event_id).collect();
    let streams: Vec<&str> = rows.iter().map(|row| row.stream_id).collect();
    let versions: Vec<i64> = rows.iter().map(|row| to_i64(row.version)).collect();
    let types: Vec<&str> = rows.iter().map(|row| row.event_type).collect();
    let schema_versions: Vec<i32> = rows.iter().map(|row| row.schema_version as i32).collect();
    let data: Vec<&str> = rows.iter().map(|row| row.data_json).collect();
    let metadata: Vec<&str> = rows.iter().map(|row| row.metadata_json).collect();
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
    futures::try_join!(
        async {
            let params: [&(dyn ToSql + Sync); 11] = [
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
            ];
            transaction.execute(&statements.insert_events, &params).await
        },
        async {
            if records.is_empty() {
                return Ok(0);
            }
            transaction
                .execute(
                    &statements.insert_keys,
                    &[
                        &key_tenants,
                        &key_names,
                        &key_hashes,
                        &key_streams,
                        &key_numbers[0],
                        &key_numbers[1],
                        &key_numbers[2],
                        &key_numbers[3],
                    ],
                )
                .await
        },
        async { transaction.execute(&statements.set_head, &[&head]).await },
        async { transaction.execute(&statements.notify, &[&head_text]).await },
    )?;
    Ok(())
}
