//! How the accept loop ([`super::Server::run_until`]) reports failed connections and accepts.
//!
//! warp's own `run` serves connections the same way but logs every failed connection at `ERROR`, and a connection
//! fails whenever its client goes away early: an SSE client that disconnects (every `/events/live` listener, sooner
//! or later), a request cut off half-way. Those are the client's doing, so here they are `debug`; anything else a
//! connection ends with is a `warn`. A failed `accept` is ignored when it is about that one connection (reset or
//! aborted before it was accepted), and otherwise logged at `ERROR` and retried after a second: running out of file
//! descriptors is the usual cause, and trying again at once would spin.

use std::time::Duration;

/// After a failed `accept`: nothing when it was about that one connection, else an `ERROR` and a second's pause.
pub(super) async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %error, "http_accept_failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Logs how a connection failed: at `debug` when its client went away or sent something that is not HTTP, else at
/// `warn`.
pub(super) fn connection_ended(error: &(dyn std::error::Error + Send + Sync + 'static)) {
    if client_went_away(error) {
        tracing::debug!(error = %error, "http_connection_closed_by_client");
    } else {
        tracing::warn!(error = %error, "http_connection_failed");
    }
}

/// Whether a connection's error is its client's doing: it closed the connection before a request or response was
/// whole, reset it, or sent bytes that do not parse as HTTP.
fn client_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_body_write_aborted() || hyper.is_parse() || hyper.is_closed())
        {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
            if matches!(io.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof) {
                return true;
            }
        }
        cause = error.source();
    }
    false
}
