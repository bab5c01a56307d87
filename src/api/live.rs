//! Live-event fan-out: one reader of the log per instance feeds every connected `/events/live` client.
//!
//! The [`LiveFeed`] task follows the log from the head it started at and broadcasts each event. A client joins by
//! subscribing to the broadcast first and noting the last position broadcast so far (`joined`); it then reads the
//! log itself from its resume point up to `joined` (catch-up) and continues with the broadcast, skipping what it has
//! already sent. Because the feed records a position *before* broadcasting it, every event is either at or below
//! `joined` (caught up from the log) or arrives on the broadcast: nothing is skipped, duplicates are dropped by
//! position. A client too slow for the broadcast buffer catches up from the log again and rejoins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dossier_events::{EventStore, RecordedEvent};
use tokio::sync::{broadcast, mpsc, watch};

/// Events buffered for clients by the broadcast.
const BROADCAST_BUFFER: usize = 1_024;

/// Events read per page while a client catches up.
const CATCH_UP_PAGE: usize = 500;

/// Events buffered between a client's feeder task and its HTTP response.
const CLIENT_BUFFER: usize = 256;

/// The instance's single follower of the log, shared by all live clients.
pub struct LiveFeed {
    store: Arc<dyn EventStore>,
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    published: AtomicU64,
    clients: AtomicU64,
    /// Closed when the follower stops (shutdown, or the log failed): clients then end too. Without it a client's
    /// task, holding the feed and so the broadcast's sender, waited for the broadcast to close forever, and kept the
    /// store (and its database connections) alive after the server stopped.
    following: watch::Receiver<()>,
}

impl LiveFeed {
    /// Starts following the log after `head` until `shutdown`. The follower reads every event back, which no
    /// request waits for, so it runs on the background runtime (below the requests' priority, ADR 0015).
    pub fn start(store: Arc<dyn EventStore>, head: u64, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BROADCAST_BUFFER);
        let (still_following, following) = watch::channel(());
        let feed =
            Arc::new(Self { store, sender, published: AtomicU64::new(head), clients: AtomicU64::new(0), following });
        let follower = Arc::clone(&feed);
        dossier_projections::background::runtime().spawn(async move {
            // Dropped when this task ends, whichever way.
            let _still_following = still_following;
            let mut events = Arc::clone(&follower.store).subscribe_all(head);
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            // Recorded before it is sent: see the module's notes.
                            follower.published.store(event.position, Ordering::SeqCst);
                            let _ = follower.sender.send(Arc::new(event));
                        }
                        Some(Err(error)) => {
                            tracing::error!(error = %error, "live_feed_stopped");
                            return;
                        }
                        None => return,
                    },
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
            }
        });
        feed
    }

    /// Followers now: live clients and the metrics observer.
    pub fn followers(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Every event after `after`, in position order, for as long as the receiver is kept (it ends when the feed
    /// stops or the log fails).
    pub fn follow(self: &Arc<Self>, after: u64) -> mpsc::Receiver<Arc<RecordedEvent>> {
        let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
        let feed = Arc::clone(self);
        feed.clients.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(error) = feed.feed_client(after, &sender).await {
                tracing::warn!(error = %error, "live_client_ended");
            }
            feed.clients.fetch_sub(1, Ordering::Relaxed);
        });
        receiver
    }

    async fn feed_client(&self, mut last: u64, client: &mpsc::Sender<Arc<RecordedEvent>>) -> Result<(), String> {
        let mut following = self.following.clone();
        loop {
            let mut live = self.sender.subscribe();
            let joined = self.published.load(Ordering::SeqCst);
            while last < joined {
                let page =
                    self.store.read_all_following(last, CATCH_UP_PAGE).await.map_err(|error| error.to_string())?;
                if page.is_empty() {
                    break;
                }
                for event in page {
                    if event.position > joined {
                        break;
                    }
                    last = event.position;
                    if client.send(Arc::new(event)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    // The client went away while nothing happened.
                    () = client.closed() => return Ok(()),
                    // The feed stopped.
                    _ = following.changed() => return Ok(()),
                };
                match received {
                    Ok(event) if event.position <= last => {}
                    Ok(event) => {
                        last = event.position;
                        if client.send(event).await.is_err() {
                            return Ok(());
                        }
                    }
                    // Too slow for the broadcast: catch up from the log again.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dossier_events::sqlite::{SqliteOptions, SqliteStore};

    use super::*;

    #[tokio::test]
    async fn followers_end_and_release_the_store_when_the_feed_stops() {
        let dir = std::env::temp_dir().join(format!("dossier-live-{}", uuid::Uuid::now_v7()));
        let store: Arc<dyn EventStore> =
            Arc::new(SqliteStore::open(&dir, SqliteOptions::default()).await.expect("open the log"));
        let (stop, stopping) = watch::channel(false);
        let feed = LiveFeed::start(Arc::clone(&store), 0, stopping);
        let mut events = feed.follow(0);
        drop(feed);
        stop.send(true).expect("the follower listens");
        let ended = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert!(matches!(ended, Ok(None)), "a follower still open 5 s after the feed stopped: {ended:?}");
        let released = tokio::time::timeout(Duration::from_secs(5), async {
            while Arc::strong_count(&store) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(released.is_ok(), "the stopped feed still holds the store ({} holders)", Arc::strong_count(&store));
        drop(store);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
