//! Follows `LISTEN dossier_log` so subscriptions wake up for commits made by other processes.
//!
//! The notification is only a hint (readers still follow positions, and poll when no hint comes): a lost
//! connection costs latency, never correctness.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Config, NoTls};

use super::connect::describe;

/// Runs until the store and all its subscriptions are gone.
/// Notifications sent by the server process `writer_pid` (this store's own writer) are left out.
pub(crate) async fn run(config: Config, head: Arc<watch::Sender<u64>>, writer_pid: Arc<AtomicI32>) {
    loop {
        tokio::select! {
            () = listen_once(&config, &head, &writer_pid) => {}
            () = head.closed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = head.closed() => return,
        }
    }
}

async fn listen_once(config: &Config, head: &watch::Sender<u64>, writer_pid: &AtomicI32) {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(database = %describe(config), error = %error, "listener_connect_failed");
            return;
        }
    };
    let (sender, mut notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender.send((notification.process_id(), notification.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(error = %error, "listener_connection_lost");
                    return;
                }
            }
        }
    });
    if let Err(error) = client.batch_execute("LISTEN dossier_log").await {
        tracing::debug!(error = %error, "listen_failed");
        driver.abort();
        return;
    }
    while let Some((sender_pid, payload)) = notifications.recv().await {
        if sender_pid == writer_pid.load(Ordering::SeqCst) {
            continue;
        }
        if let Ok(position) = payload.parse::<u64>() {
            crate::head::advance(head, position);
        }
    }
    driver.abort();
}
