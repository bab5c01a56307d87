//! Live fan-out across instances: each instance announces its own commits on a Redis channel and feeds the
//! positions the others announce into its store's head watch, so their `/events/live` clients and projection
//! runners wake at once rather than at their next poll (`LOG_POLL_INTERVAL_MS`).
//!
//! The channel is `<namespace>:log`; a message is the decimal position of the last event of a commit. It is a hint,
//! the log stays the source of truth: a lost message costs latency (the next poll), never an event, and positions
//! only move forward, so a late or repeated message changes nothing. With Redis this replaces the Postgres `LISTEN`
//! connection of the server's store (see [`backend::open_for_server`](crate::backend::open_for_server)).
//!
//! Threading: an append only raises a watch (no I/O on the append path). One task publishes the newest position
//! it has seen, so a burst of commits costs one message or a few; one task holds the subscription, reconnecting
//! with backoff. Both end on shutdown.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dossier_actors::embed::{backoff_delay, random_jitter};
use dossier_events::{
    AppendOutcome, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreResult, StreamId,
    Subscription, Upcasters,
};
use futures::StreamExt;
use tokio::sync::watch;

use crate::api::metrics::Metrics;
use crate::coordination::redis::Redis;

/// First delay before subscribing again; doubled per failed attempt, with jitter, up to [`RECONNECT_MAX`].
const RECONNECT_BASE: Duration = Duration::from_millis(100);

/// Longest delay between attempts to subscribe.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Time allowed to open the subscriber connection and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The fan-out of one instance, until [`start`](Self::start)ed.
pub struct FanOut {
    redis: Redis,
    channel: String,
    /// The newest position committed by this instance's appends.
    announced: Arc<watch::Sender<u64>>,
    /// Taken at creation, so commits made before the publisher starts are still announced.
    pending: watch::Receiver<u64>,
}

impl FanOut {
    /// The fan-out over `redis`, on the channel of its namespace.
    pub fn new(redis: Redis) -> Self {
        let channel = format!("{}:log", redis.namespace());
        let (announced, pending) = watch::channel(0);
        Self { redis, channel, announced: Arc::new(announced), pending }
    }

    /// `store`, with every append it commits announced to the other instances.
    pub fn announcing(&self, store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        Arc::new(AnnouncingStore { inner: store, announced: Arc::clone(&self.announced) })
    }

    /// Starts publishing this instance's commits and feeding the others' into `store`, until `shutdown`.
    pub fn start(self, store: Arc<dyn EventStore>, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) {
        let Self { redis, channel, announced, pending } = self;
        tokio::spawn(publish(redis.clone(), channel.clone(), pending, Arc::clone(&metrics), shutdown.clone()));
        tokio::spawn(subscribe(redis.client(), channel, store, metrics, shutdown));
        // The stores hold the sender from here on; dropping ours lets the publisher end with them.
        drop(announced);
    }
}

/// Publishes the newest announced position whenever it moves.
async fn publish(
    redis: Redis,
    channel: String,
    mut pending: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = pending.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let position = *pending.borrow_and_update();
        let published: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(&channel).arg(position).query_async(&mut redis.connection()).await;
        match published {
            Ok(_) => metrics.record_hint_published(),
            // The other instances see the commit at their next poll.
            Err(error) => tracing::warn!(position, error = %error, "log_hint_publish_failed"),
        }
    }
}

/// Holds the subscription, subscribing again after failures, until shutdown.
async fn subscribe(
    client: redis::Client,
    channel: String,
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt = 0;
    loop {
        let ended = tokio::select! {
            ended = follow(&client, &channel, store.as_ref(), &metrics, &mut attempt) => ended,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        attempt += 1;
        let delay = backoff_delay(attempt, RECONNECT_BASE, RECONNECT_MAX, None, random_jitter());
        let delay_ms = delay.as_millis() as u64;
        match ended {
            Ok(()) => tracing::warn!(attempt, delay_ms, "log_hints_connection_closed"),
            Err(error) => tracing::warn!(attempt, delay_ms, error = %error, "log_hints_subscribe_failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Subscribes once and feeds every announced position into `store` until the connection closes.
async fn follow(
    client: &redis::Client,
    channel: &str,
    store: &dyn EventStore,
    metrics: &Metrics,
    attempt: &mut u32,
) -> Result<(), String> {
    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await
    .map_err(|_| format!("no answer within {} s", SUBSCRIBE_TIMEOUT.as_secs()))?
    .map_err(|error| error.to_string())?;
    tracing::info!(channel, "log_hints_subscribed");
    *attempt = 0;
    let mut messages = subscribed.into_on_message();
    while let Some(message) = messages.next().await {
        match message.get_payload::<String>().ok().and_then(|payload| payload.parse::<u64>().ok()) {
            Some(position) => {
                metrics.record_hint_received();
                store.hint_head(position);
            }
            None => tracing::warn!(channel, "log_hint_unreadable"),
        }
    }
    Ok(())
}

/// A store whose committed appends raise the fan-out's announced position; everything else is the inner store's.
struct AnnouncingStore {
    inner: Arc<dyn EventStore>,
    announced: Arc<watch::Sender<u64>>,
}

#[async_trait]
impl EventStore for AnnouncingStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> StoreResult<AppendOutcome> {
        let outcome = self.inner.append(stream, expected, events, metadata).await?;
        if !outcome.replayed {
            dossier_events::head::advance(&self.announced, outcome.last_position);
        }
        Ok(outcome)
    }

    async fn read_stream_stored(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<RecordedEvent>> {
        self.inner.read_stream_stored(stream, from_version, limit).await
    }

    async fn read_all_stored(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.inner.read_all_stored(after_position, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> StoreResult<Option<u64>> {
        self.inner.stream_version(stream).await
    }

    async fn head_position(&self) -> StoreResult<u64> {
        self.inner.head_position().await
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.watch_head()
    }

    fn hint_head(&self, position: u64) {
        self.inner.hint_head(position);
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }

    fn recent(&self, after_position: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        self.inner.recent(after_position, limit)
    }

    fn upcasters(&self) -> &Upcasters {
        self.inner.upcasters()
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn check_storage(&self) -> StoreResult<Vec<String>> {
        self.inner.check_storage().await
    }

    async fn read_stream(&self, stream: &StreamId, from_version: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.inner.read_stream(stream, from_version, limit).await
    }

    async fn read_all(&self, after_position: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.inner.read_all(after_position, limit).await
    }

    fn subscribe_all_buffered(self: Arc<Self>, after_position: u64, buffer: usize) -> Subscription {
        Arc::clone(&self.inner).subscribe_all_buffered(after_position, buffer)
    }
}
