//! A store that passes everything to another and counts the stream reads, to show what a path does not read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use dossier_events::{
    AppendOutcome, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreResult, StreamId,
    Upcasters,
};
use tokio::sync::watch;

pub struct CountingStore {
    inner: Arc<dyn EventStore>,
    stream_reads: AtomicUsize,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self { inner, stream_reads: AtomicUsize::new(0) }
    }

    /// Reads of one stream so far.
    pub fn stream_reads(&self) -> usize {
        self.stream_reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: EventMetadata,
    ) -> StoreResult<AppendOutcome> {
        self.inner.append(stream, expected, events, metadata).await
    }

    async fn read_stream_stored(&self, stream: &StreamId, from: u64, limit: usize) -> StoreResult<Vec<RecordedEvent>> {
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_stream_stored(stream, from, limit).await
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

    fn upcasters(&self) -> &Upcasters {
        self.inner.upcasters()
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}
