//! The `EventStore` port: the contract every log backend fulfils.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::envelope::{AppendOutcome, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use crate::error::StoreResult;
use crate::subscription::{DEFAULT_POLL_INTERVAL, Subscription};
use crate::upcast::Upcasters;

/// An append-only log of event streams with a gap-free global order.
///
/// Guarantees every backend gives (and the contract tests check):
/// - an append is atomic: all of its events are committed, with consecutive stream versions and global positions,
///   or none is;
/// - `expected` is checked against the stream's version under the log's write lock: of concurrent appends with the
///   same expectation exactly one succeeds, the others fail with [`StoreError::Conflict`](crate::StoreError);
/// - global positions run 1, 2, 3, … with no gaps and become visible in position order, so a reader that follows
///   positions never skips a committed event;
/// - an idempotency key already used in the tenant returns the original outcome (with `replayed: true`) and appends
///   nothing, durably; the same key for another request is
///   [`StoreError::IdempotencyMismatch`](crate::StoreError).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends events to one stream, all or nothing, if the stream's version matches `expected`.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> StoreResult<AppendOutcome>;

    /// Events of one stream from `from_version` (inclusive), at most `limit`, as stored (not upcast).
    async fn read_stream_stored(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>>;

    /// Events with a position greater than `after_position`, in position order, at most `limit`, as stored.
    async fn read_all_stored(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>>;

    /// The stream's current version; `None` when it has no events.
    async fn stream_version(&self, stream: &StreamId) -> StoreResult<Option<u64>>;

    /// The position of the last committed event (0 for an empty log).
    async fn head_position(&self) -> StoreResult<u64>;

    /// Changes whenever this store learns of new commits (its own, or, where the backend can tell, other
    /// processes'); carries the newest head position known.
    fn watch_head(&self) -> watch::Receiver<u64>;

    /// Tells the store that the log has reached `position` through a commit it could not see itself (another
    /// instance's, announced through Redis): wakes the subscriptions waiting at the head. Only a hint: positions
    /// only move forward, and readers still read the log, so a hint that is lost or ahead of what is visible costs
    /// a re-read or some latency, never an event. Stores without a head watch of their own ignore it.
    fn hint_head(&self, _position: u64) {}

    /// How often a subscription at the head re-reads the log without a signal (for commits nobody announced).
    fn poll_interval(&self) -> Duration {
        DEFAULT_POLL_INTERVAL
    }

    /// The events after `after_position`, at most `limit`, as stored, if this store still holds them in memory from
    /// its own recent commits (see `recent.rs`); `None` when the log must be read. A page from memory may end before
    /// the log does. Subscriptions ask here before they read the log.
    fn recent(&self, _after_position: u64, _limit: usize) -> Option<Vec<RecordedEvent>> {
        None
    }

    /// The upcasting steps applied by [`read_stream`](Self::read_stream) and [`read_all`](Self::read_all).
    fn upcasters(&self) -> &Upcasters;

    /// A short name for the backend (`embedded`, `postgres`).
    fn backend_name(&self) -> &'static str;

    /// Checks that the store answers.
    async fn ping(&self) -> StoreResult<()>;

    /// The storage engine's own consistency check (below the hash chain); returns what it complains about.
    async fn check_storage(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }

    /// Events of one stream from `from_version`, at most `limit`, upcast to their current schemas.
    async fn read_stream(&self, stream: &StreamId, from_version: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let events = self.read_stream_stored(stream, from_version, limit).await?;
        self.upcasters().apply_all(events)
    }

    /// Events after `after_position`, at most `limit`, upcast to their current schemas.
    async fn read_all(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        let events = self.read_all_stored(after_position, limit).await?;
        self.upcasters().apply_all(events)
    }

    /// [`read_all`](Self::read_all) for a follower of the log: served from [`recent`](Self::recent) when it can be,
    /// so the page may end before the log does (a follower reads on from its last event).
    async fn read_all_following(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        match self.recent(after_position, limit) {
            Some(events) => self.upcasters().apply_all(events),
            None => self.read_all(after_position, limit).await,
        }
    }

    /// Every event after `after_position`: first those already committed (catch-up), then new ones as they commit
    /// (live), upcast, in position order, through a bounded buffer: a slow consumer slows the reader down.
    fn subscribe_all(self: Arc<Self>, after_position: u64) -> Subscription {
        self.subscribe_all_buffered(after_position, crate::subscription::DEFAULT_BUFFER)
    }

    /// [`subscribe_all`](Self::subscribe_all) with room for `buffer` events read ahead of the consumer.
    fn subscribe_all_buffered(self: Arc<Self>, after_position: u64, buffer: usize) -> Subscription {
        Subscription::spawn(self, after_position, buffer)
    }
}
