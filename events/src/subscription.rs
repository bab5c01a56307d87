//! Catch-up subscriptions to the global log.
//!
//! A subscription is a task that pages through [`EventStore::read_all`] from a position and pushes each event into a
//! bounded channel. When it reaches the head it waits for the store's head watch (or a poll, for commits made by
//! other processes that nobody signalled) and reads on. Because positions are gap-free and visible
//! in order, "everything after the last position I saw" is always exactly the events not seen yet.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::envelope::RecordedEvent;
use crate::error::{StoreError, StoreResult};
use crate::store::EventStore;

/// Events buffered between the reader task and a slow consumer.
pub const DEFAULT_BUFFER: usize = 1_024;

/// Events read per page.
pub const PAGE_SIZE: usize = 1_000;

/// How often a subscription at the head re-reads even without a signal, unless the store says otherwise
/// ([`EventStore::poll_interval`]).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A live, ordered stream of events; dropping it stops its reader task.
pub struct Subscription {
    receiver: mpsc::Receiver<StoreResult<RecordedEvent>>,
}

impl Subscription {
    /// Starts a reader task after `after_position` with a buffer of `buffer` events.
    pub fn spawn<S: EventStore + ?Sized>(store: Arc<S>, after_position: u64, buffer: usize) -> Self {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        tokio::spawn(follow(store, after_position, sender));
        Self { receiver }
    }

    /// The next event; `None` once the store is closed or a permanent error was delivered.
    pub async fn next(&mut self) -> Option<StoreResult<RecordedEvent>> {
        self.receiver.recv().await
    }

    /// The next event if one has arrived, without waiting; `None` when none has (or the stream ended: [`next`]
    /// tells which).
    ///
    /// [`next`]: Self::next
    pub fn next_ready(&mut self) -> Option<StoreResult<RecordedEvent>> {
        self.receiver.try_recv().ok()
    }
}

impl futures::Stream for Subscription {
    type Item = StoreResult<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

async fn follow<S: EventStore + ?Sized>(
    store: Arc<S>,
    mut position: u64,
    sender: mpsc::Sender<StoreResult<RecordedEvent>>,
) {
    let mut head = store.watch_head();
    let poll_interval = store.poll_interval();
    let mut backoff = Duration::from_millis(50);
    loop {
        // Mark the head as seen *before* reading, so a commit between the read and the wait still wakes us.
        let seen = *head.borrow_and_update();
        let page = match store.read_all_following(position, PAGE_SIZE).await {
            Ok(page) => {
                backoff = Duration::from_millis(50);
                page
            }
            Err(error @ (StoreError::Corrupt { .. } | StoreError::Closed)) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
            Err(error) => {
                tracing::warn!(position, error = %error, "subscription_read_failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sender.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let read_some = !page.is_empty();
        for event in page {
            position = event.position;
            if sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
        // Read on at once while the pages stop short of the head seen before the read. At that head (or past it),
        // reading again now would find nothing, and anything committed since has changed the watch: wait for it,
        // as after an empty page.
        if read_some && position < seen {
            continue;
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    // The store dropped its watch: it is closed.
                    return;
                }
            }
            () = tokio::time::sleep(poll_interval) => {}
            () = sender.closed() => return,
        }
    }
}
