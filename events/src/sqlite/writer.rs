//! The embedded store's single writer: a thread that owns the write connection and commits queued appends in
//! batches inside `BEGIN IMMEDIATE` (SQLite's write lock, which also serialises writers in other processes).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};

use crate::batch::{
    self, CommitAction, CommitHook, Committed, Linger, PendingAppend, StreamHead, Submission, fill_batch,
    idempotency_record,
};
use crate::error::{StoreError, StoreResult};
use crate::hash::{Hash, unix_micros};
use crate::rows::to_i64;

/// Most events committed in one transaction.
const MAX_BATCH_EVENTS: usize = 4_096;

pub(crate) struct Writer {
    pub connection: Connection,
    /// Told after each commit (see [`super::checkpoint`]).
    pub checkpointer: super::checkpoint::Nudge,
    pub path: PathBuf,
    pub queue: mpsc::Receiver<Submission>,
    pub head: Arc<watch::Sender<u64>>,
    pub recent: Arc<crate::recent::RecentEvents>,
    pub hook: Option<CommitHook>,
}

impl Writer {
    /// Runs until every sender is dropped.
    pub fn run(mut self) {
        let mut linger = Linger::default();
        while let Some(first) = self.queue.blocking_recv() {
            let queue = &mut self.queue;
            let mut batch = fill_batch(first, || queue.try_recv().ok(), MAX_BATCH_EVENTS);
            let waiting = Instant::now();
            while batch.len() < linger.target() && waiting.elapsed() < linger.budget() {
                match queue.try_recv() {
                    Ok(submission) => batch.push(submission),
                    Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            }
            let appends: Vec<&PendingAppend> = batch.iter().map(|submission| &submission.append).collect();
            let started = Instant::now();
            let result = self.commit(&appends);
            linger.record(appends.len(), started.elapsed());
            match result {
                Ok(committed) => {
                    if committed.events > 0 {
                        self.recent.committed(committed.recorded);
                        crate::head::advance(&self.head, committed.head);
                        self.checkpointer.committed();
                    }
                    batch::reply_all(batch, committed.results);
                }
                Err(error) => {
                    tracing::error!(database = %self.path.display(), error = %error, "append_batch_failed");
                    let message = error.to_string();
                    batch::fail_all(batch, || StoreError::Unavailable(message.clone()));
                }
            }
        }
    }

    fn commit(&mut self, appends: &[&PendingAppend]) -> StoreResult<Committed> {
        let location = self.path.display().to_string();
        let fail = |error: rusqlite::Error| StoreError::database(format!("{location}: appending"), error);
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        let head: i64 = transaction
            .prepare_cached("SELECT coalesce(max(position), 0) FROM events")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(fail)?;
        let mut heads = HashMap::new();
        let mut known = HashMap::new();
        {
            let mut stream_head = transaction
                .prepare_cached("SELECT version, hash FROM events WHERE stream_id = ?1 ORDER BY version DESC LIMIT 1")
                .map_err(fail)?;
            let mut key_lookup = transaction
                .prepare_cached(
                    "SELECT request_hash, stream_id, first_version, last_version, first_position, last_position
                     FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2",
                )
                .map_err(fail)?;
            for append in appends {
                let stream = append.stream.as_str();
                if !heads.contains_key(stream)
                    && let Some((version, hash)) = stream_head
                        .query_row([stream], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
                        .optional()
                        .map_err(fail)?
                {
                    let hash = Hash::from_slice(&hash).ok_or_else(|| StoreError::Corrupt {
                        position: 0,
                        reason: format!("stream {stream} version {version}: hash is not 32 bytes"),
                    })?;
                    heads.insert(stream.to_owned(), StreamHead { version: version as u64, hash });
                }
                if let Some(scope) = append.idempotency_scope()
                    && !known.contains_key(&scope)
                    && let Some(record) = key_lookup
                        .query_row(params![scope.0, scope.1], |row| {
                            Ok((
                                row.get::<_, Vec<u8>>(0)?,
                                row.get::<_, String>(1)?,
                                [row.get::<_, i64>(2)?, row.get(3)?, row.get(4)?, row.get(5)?],
                            ))
                        })
                        .optional()
                        .map_err(fail)?
                {
                    let record = idempotency_record(&scope, record)?;
                    known.insert(scope, record);
                }
            }
        }
        let plan = batch::plan(appends, &mut heads, &mut known, head as u64, batch::now_micros());
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO events (position, event_id, stream_id, version, event_type, schema_version, data,
                                         metadata, recorded_at, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(fail)?;
            for row in &plan.rows {
                insert
                    .execute(params![
                        to_i64(row.position),
                        row.event_id.as_bytes().as_slice(),
                        row.stream_id,
                        to_i64(row.version),
                        row.event_type,
                        row.schema_version,
                        row.data_json,
                        row.metadata_json,
                        row.recorded_at_micros,
                        row.prev_hash.0.as_slice(),
                        row.hash.0.as_slice(),
                    ])
                    .map_err(fail)?;
            }
            let mut remember = transaction
                .prepare_cached(
                    "INSERT INTO idempotency_keys (tenant_id, key, request_hash, stream_id, first_version,
                                                   last_version, first_position, last_position, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(fail)?;
            let now = unix_micros(time::OffsetDateTime::now_utc());
            for record in &plan.idempotency {
                let outcome = &record.outcome;
                remember
                    .execute(params![
                        record.tenant_id,
                        record.key,
                        record.request_hash.0.as_slice(),
                        outcome.stream_id.as_str(),
                        to_i64(outcome.first_version),
                        to_i64(outcome.last_version),
                        to_i64(outcome.first_position),
                        to_i64(outcome.last_position),
                        now,
                    ])
                    .map_err(fail)?;
            }
        }
        match self.hook.as_ref().map_or(CommitAction::Commit, |hook| hook(appends.len(), plan.rows.len())) {
            CommitAction::Commit => {}
            CommitAction::DelayThenCommit(delay) => std::thread::sleep(delay),
            CommitAction::Rollback => return Err(batch::injected_rollback()),
        }
        transaction.commit().map_err(fail)?;
        Ok(plan.committed())
    }
}
