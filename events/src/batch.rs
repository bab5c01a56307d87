//! Group commit: the part of an append that both backends share.
//!
//! Each backend runs one writer that takes every append waiting in its queue, opens one transaction, takes the
//! log's write lock, loads the heads of the streams involved and the idempotency records of the keys involved,
//! and then calls `plan`: a pure function that decides each append (conflict, idempotent replay, or commit),
//! numbers the committed events with consecutive versions and global positions, and chains their hashes. The
//! backend writes what the plan says and commits; the lock is held through the commit, so positions become
//! visible in the order they were assigned and a reader following positions can never skip one. Batching many
//! appends into one transaction is what makes that lock cheap: one commit (one fsync) serves the whole batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::envelope::{AppendOutcome, EventData, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use crate::error::{StoreError, StoreResult};
use crate::hash::{Hash, HashInput, canonical_json, metadata_json, unix_micros};

/// The most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;

/// An append, validated and serialised by the caller's task before it reaches the writer.
#[derive(Debug)]
pub(crate) struct PendingAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub data_json: Vec<String>,
    pub metadata: EventMetadata,
    pub metadata_json: String,
    /// Identifies the request for idempotency: stream, expectation and payloads (not ids or timestamps).
    pub request_hash: Hash,
}

impl PendingAppend {
    /// Validates an append and does its serialisation work outside the writer.
    pub fn new(
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> StoreResult<Self> {
        if events.is_empty() {
            return Err(StoreError::Invalid("an append needs at least one event".into()));
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(StoreError::Invalid(format!(
                "an append may carry at most {MAX_EVENTS_PER_APPEND} events, got {}",
                events.len()
            )));
        }
        metadata.validate()?;
        for event in &events {
            crate::envelope::check_text("event_type", &event.event_type, 128)?;
            if event.schema_version == 0 {
                return Err(StoreError::Invalid(format!("{}: schema_version starts at 1", event.event_type)));
            }
        }
        let data_json: Vec<String> = events.iter().map(|event| canonical_json(&event.data)).collect();
        // Only a keyed append can be replayed, so only a keyed append needs its request fingerprint.
        let request_hash = if metadata.idempotency_key.is_some() {
            request_fingerprint(stream, expected, &events, &data_json)
        } else {
            Hash::ZERO
        };
        let metadata_json = metadata_json(&metadata);
        Ok(Self { stream: stream.clone(), expected, events, data_json, metadata, metadata_json, request_hash })
    }

    /// The `(tenant, key)` this append is deduplicated by, if it has a key.
    pub fn idempotency_scope(&self) -> Option<(String, String)> {
        self.metadata.idempotency_key.as_ref().map(|key| (self.metadata.tenant_id.clone(), key.clone()))
    }
}

/// Identifies a request for idempotency: stream, expectation and payloads (not ids, timestamps or request ids, which
/// a retry renews).
fn request_fingerprint(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    data_json: &[String],
) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(stream.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(expected.to_string().as_bytes());
    for (event, data) in events.iter().zip(data_json) {
        hasher.update([0]);
        hasher.update(event.event_type.as_bytes());
        hasher.update(event.schema_version.to_be_bytes());
        hasher.update((data.len() as u64).to_be_bytes());
        hasher.update(data.as_bytes());
    }
    Hash(hasher.finalize().into())
}

/// An append waiting in a writer's queue, with the channel its caller awaits the result on.
pub(crate) struct Submission {
    pub append: PendingAppend,
    pub reply: oneshot::Sender<StoreResult<AppendOutcome>>,
}

/// The last event of a stream, as the writer needs it to continue the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamHead {
    pub version: u64,
    pub hash: Hash,
}

/// A durable idempotency record: the key, the request it was first used for, and that request's outcome.
#[derive(Clone, Debug)]
pub(crate) struct IdempotencyRecord {
    pub tenant_id: String,
    pub key: String,
    pub request_hash: Hash,
    pub outcome: AppendOutcome,
}

/// One event row to insert, borrowing its text from the append it belongs to.
#[derive(Debug)]
pub(crate) struct EventRow<'a> {
    /// The append it belongs to.
    pub append: &'a PendingAppend,
    pub position: u64,
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub data_json: &'a str,
    pub metadata_json: &'a str,
    pub recorded_at_micros: i64,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// What a writer must do for one batch.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// Event rows, in position order.
    pub rows: Vec<EventRow<'a>>,
    /// New idempotency records.
    pub idempotency: Vec<IdempotencyRecord>,
    /// The result of each append of the batch, in order.
    pub results: Vec<StoreResult<AppendOutcome>>,
    /// The log's head position after the batch.
    pub head: u64,
}

/// What a committed batch tells its callers.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The result of each append, in order.
    pub results: Vec<StoreResult<AppendOutcome>>,
    /// The log's head position after the batch.
    pub head: u64,
    /// Events written.
    pub events: usize,
    /// The events written, as the log now holds them (for [`crate::recent::RecentEvents`]).
    pub recorded: Vec<RecordedEvent>,
}

impl Plan<'_> {
    /// The plan's outcome, once its writes are committed.
    pub fn committed(self) -> Committed {
        let recorded = self.recorded();
        Committed { results: self.results, head: self.head, events: self.rows.len(), recorded }
    }

    /// The rows as the events a read of the log returns (as stored: not upcast); the events of one append share
    /// their metadata, as they do when read.
    fn recorded(&self) -> Vec<RecordedEvent> {
        let mut shared: Option<(&PendingAppend, Arc<EventMetadata>)> = None;
        self.rows
            .iter()
            .map(|row| {
                let metadata = match &shared {
                    Some((append, metadata)) if std::ptr::eq(*append, row.append) => Arc::clone(metadata),
                    _ => {
                        let metadata = Arc::new(row.append.metadata.clone());
                        shared = Some((row.append, Arc::clone(&metadata)));
                        metadata
                    }
                };
                RecordedEvent {
                    event_id: row.event_id,
                    stream_id: row.append.stream.clone(),
                    version: row.version,
                    position: row.position,
                    event_type: row.event_type.to_owned(),
                    schema_version: row.schema_version,
                    data: EventData::from_stored(row.data_json),
                    metadata,
                    recorded_at: from_micros(row.recorded_at_micros),
                    prev_hash: row.prev_hash,
                    hash: row.hash,
                }
            })
            .collect()
    }
}

/// The current time truncated to microseconds, the precision every backend stores.
pub(crate) fn now_micros() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    from_micros(unix_micros(now))
}

/// A timestamp from microseconds since the epoch (saturating at the representable range).
pub(crate) fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Decides a batch. `heads` holds the current head of every existing stream the batch touches and `known` every
/// existing idempotency record for the batch's keys; both are updated as appends are accepted, so that two appends
/// to one stream (or with one key) within a batch see each other.
pub(crate) fn plan<'a>(
    batch: &[&'a PendingAppend],
    heads: &mut HashMap<String, StreamHead>,
    known: &mut HashMap<(String, String), IdempotencyRecord>,
    head_position: u64,
    recorded_at: OffsetDateTime,
) -> Plan<'a> {
    let micros = unix_micros(recorded_at);
    let mut plan = Plan { head: head_position, ..Plan::default() };
    for &append in batch {
        let scope = append.idempotency_scope();
        if let Some(record) = scope.as_ref().and_then(|scope| known.get(scope)) {
            plan.results.push(if record.request_hash == append.request_hash {
                Ok(AppendOutcome { replayed: true, recorded_at: None, ..record.outcome.clone() })
            } else {
                Err(StoreError::IdempotencyMismatch { tenant: record.tenant_id.clone(), key: record.key.clone() })
            });
            continue;
        }
        let current = heads.get(append.stream.as_str()).copied();
        if !append.expected.matches(current.map(|head| head.version)) {
            plan.results.push(Err(StoreError::Conflict {
                stream: append.stream.clone(),
                expected: append.expected,
                actual: current.map(|head| head.version),
            }));
            continue;
        }
        let mut version = current.map_or(0, |head| head.version);
        let mut prev_hash = current.map_or(Hash::ZERO, |head| head.hash);
        let first_version = version + 1;
        let first_position = plan.head + 1;
        for (event, data_json) in append.events.iter().zip(&append.data_json) {
            version += 1;
            plan.head += 1;
            let hash = HashInput {
                event_id: &event.event_id,
                stream_id: append.stream.as_str(),
                version,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                data_json,
                metadata_json: &append.metadata_json,
                recorded_at_micros: micros,
                prev_hash: &prev_hash,
            }
            .digest();
            plan.rows.push(EventRow {
                append,
                position: plan.head,
                event_id: event.event_id,
                stream_id: append.stream.as_str(),
                version,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                data_json,
                metadata_json: &append.metadata_json,
                recorded_at_micros: micros,
                prev_hash,
                hash,
            });
            prev_hash = hash;
        }
        heads.insert(append.stream.as_str().to_owned(), StreamHead { version, hash: prev_hash });
        let outcome = AppendOutcome {
            stream_id: append.stream.clone(),
            first_version,
            last_version: version,
            first_position,
            last_position: plan.head,
            replayed: false,
            recorded_at: Some(recorded_at),
        };
        if let Some(scope) = scope {
            let record = IdempotencyRecord {
                tenant_id: scope.0.clone(),
                key: scope.1.clone(),
                request_hash: append.request_hash,
                outcome: outcome.clone(),
            };
            known.insert(scope, record.clone());
            plan.idempotency.push(record);
        }
        plan.results.push(Ok(outcome));
    }
    plan
}

/// What a [`CommitHook`] tells a writer to do with a batch just before it commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitAction {
    /// Commit now.
    Commit,
    /// Keep the transaction (and the log's write lock) open this long, then commit.
    DelayThenCommit(Duration),
    /// Roll the transaction back: every append of the batch fails.
    Rollback,
}

/// A fault-injection hook, called with the number of appends and events in a batch before its commit.
///
/// For tests that need transactions held open or rolled back; production stores have none.
pub type CommitHook = std::sync::Arc<dyn Fn(usize, usize) -> CommitAction + Send + Sync>;

/// The error every append of a batch receives when a hook rolled the batch back.
pub(crate) fn injected_rollback() -> StoreError {
    StoreError::Unavailable("transaction rolled back by the commit hook".into())
}

/// Collects a batch: the first submission (already received) and whatever else is queued, up to a bound.
pub(crate) fn fill_batch(
    first: Submission,
    mut next: impl FnMut() -> Option<Submission>,
    max_events: usize,
) -> Vec<Submission> {
    let mut events = first.append.events.len();
    let mut batch = vec![first];
    while events < max_events {
        match next() {
            Some(submission) => {
                events += submission.append.events.len();
                batch.push(submission);
            }
            None => break,
        }
    }
    batch
}

/// The longest a writer waits for more appends before committing a batch.
const MAX_LINGER: Duration = Duration::from_micros(500);

/// Group-commit pacing: how long a writer should wait for more appends before it commits.
///
/// Callers that append in a loop come back right after their reply; a writer that commits the moment the first of
/// them returns commits a batch of one while the others queue behind it. So when the last two batches together held
/// more appends than the queue holds now, the writer waits (at most half as long as a commit takes, and never more
/// than [`MAX_LINGER`]) for them. A lone sequential caller (batches of one) never waits.
#[derive(Debug, Default)]
pub(crate) struct Linger {
    recent: [usize; 2],
    last_commit: Duration,
}

impl Linger {
    /// How many appends are worth waiting for.
    pub fn target(&self) -> usize {
        if self.recent.iter().all(|&appends| appends <= 1) { 0 } else { self.recent[0] + self.recent[1] }
    }

    /// How long to wait for them at most.
    pub fn budget(&self) -> Duration {
        (self.last_commit / 2).min(MAX_LINGER)
    }

    /// Records a committed batch.
    pub fn record(&mut self, appends: usize, took: Duration) {
        self.recent = [self.recent[1], appends];
        self.last_commit = took;
    }
}

/// Sends each append's result to its caller (a caller that gave up is ignored).
pub(crate) fn reply_all(batch: Vec<Submission>, results: Vec<StoreResult<AppendOutcome>>) {
    for (submission, result) in batch.into_iter().zip(results) {
        let _ = submission.reply.send(result);
    }
}

/// Sends the same failure to every caller of a batch.
pub(crate) fn fail_all(batch: Vec<Submission>, error: impl Fn() -> StoreError) {
    for submission in batch {
        let _ = submission.reply.send(Err(error()));
    }
}

/// Builds an idempotency record from a stored row.
pub(crate) fn idempotency_record(
    scope: &(String, String),
    (request_hash, stream_id, [first_version, last_version, first_position, last_position]): (
        Vec<u8>,
        String,
        [i64; 4],
    ),
) -> StoreResult<IdempotencyRecord> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        position: u64::try_from(first_position).unwrap_or(0),
        reason: format!("idempotency record ({}, {}): {reason}", scope.0, scope.1),
    };
    Ok(IdempotencyRecord {
        tenant_id: scope.0.clone(),
        key: scope.1.clone(),
        request_hash: Hash::from_slice(&request_hash).ok_or_else(|| corrupt("request hash is not 32 bytes"))?,
        outcome: AppendOutcome {
            stream_id: StreamId::new(stream_id).map_err(|error| corrupt(&error.to_string()))?,
            first_version: first_version as u64,
            last_version: last_version as u64,
            first_position: first_position as u64,
            last_position: last_position as u64,
            replayed: false,
            recorded_at: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(stream: &str, expected: ExpectedVersion, n: usize, key: Option<&str>) -> PendingAppend {
        let mut metadata = EventMetadata::new("t1", "alice");
        metadata.idempotency_key = key.map(str::to_owned);
        let events = (0..n).map(|i| NewEvent::new("Noted", 1, json!({ "i": i }))).collect();
        PendingAppend::new(&StreamId::new(stream).expect("valid"), expected, events, metadata).expect("valid")
    }

    #[test]
    fn plan_numbers_versions_and_positions_consecutively_and_chains_hashes() {
        let batch =
            [pending("a", ExpectedVersion::NoStream, 2, None), pending("a", ExpectedVersion::Exact(2), 1, None)];
        let plan = plan(&batch.iter().collect::<Vec<_>>(), &mut HashMap::new(), &mut HashMap::new(), 10, now_micros());
        let got: Vec<_> = plan.rows.iter().map(|row| (row.version, row.position)).collect();
        assert_eq!(got, vec![(1, 11), (2, 12), (3, 13)]);
        assert_eq!(plan.rows[0].prev_hash, Hash::ZERO);
        assert_eq!(plan.rows[1].prev_hash, plan.rows[0].hash);
        assert_eq!(plan.rows[2].prev_hash, plan.rows[1].hash);
        assert_eq!(plan.head, 13);
    }

    #[test]
    fn plan_with_stale_expected_version_returns_conflict_and_writes_nothing() {
        let mut heads = HashMap::from([("a".to_owned(), StreamHead { version: 3, hash: Hash([7; 32]) })]);
        let batch =
            [pending("a", ExpectedVersion::Exact(2), 1, None), pending("a", ExpectedVersion::NoStream, 1, None)];
        let plan = plan(&batch.iter().collect::<Vec<_>>(), &mut heads, &mut HashMap::new(), 5, now_micros());
        assert!(plan.rows.is_empty());
        assert!(matches!(plan.results[0], Err(StoreError::Conflict { actual: Some(3), .. })));
        assert!(matches!(plan.results[1], Err(StoreError::Conflict { actual: Some(3), .. })));
        assert_eq!(plan.head, 5);
    }

    #[test]
    fn plan_with_reused_key_replays_same_request_and_rejects_other_request() {
        let batch = [
            pending("a", ExpectedVersion::NoStream, 1, Some("k")),
            pending("a", ExpectedVersion::NoStream, 1, Some("k")),
            pending("a", ExpectedVersion::NoStream, 2, Some("k")),
        ];
        let plan = plan(&batch.iter().collect::<Vec<_>>(), &mut HashMap::new(), &mut HashMap::new(), 0, now_micros());
        assert_eq!(plan.rows.len(), 1);
        let first = plan.results[0].as_ref().expect("committed");
        let second = plan.results[1].as_ref().expect("replayed");
        assert!(!first.replayed && second.replayed);
        assert_eq!(first.first_position, second.first_position);
        assert!(matches!(plan.results[2], Err(StoreError::IdempotencyMismatch { .. })));
        assert_eq!(plan.idempotency.len(), 1);
    }

    #[test]
    fn pending_append_rejects_empty_and_bad_metadata() {
        let stream = StreamId::new("a").expect("valid");
        let empty = PendingAppend::new(&stream, ExpectedVersion::Any, vec![], EventMetadata::new("t", "u"));
        assert!(matches!(empty, Err(StoreError::Invalid(_))));
        let bad = PendingAppend::new(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new("T", 1, json!(null))],
            EventMetadata::new("", "u"),
        );
        assert!(matches!(bad, Err(StoreError::Invalid(message)) if message.contains("tenant_id")));
    }
}
