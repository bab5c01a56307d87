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
}

impl LiveFeed {
    /// Starts following the log after `head` until `shutdown`. The follower reads every event back, which no
    /// request waits for, so it runs on the background runtime (below the requests' priority, ADR 0015).
    pub fn start(store: Arc<dyn EventStore>, head: u64, mut shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BROADCAST_BUFFER);
        let feed = Arc::new(Self { store, sender, published: AtomicU64::new(head), clients: AtomicU64::new(0) });
        let follower = Arc::clone(&feed);
        dossier_projections::background::runtime().spawn(async move {
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
