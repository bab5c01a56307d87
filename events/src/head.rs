//! The head watch every store keeps: the newest log position it knows of, which only moves forward.
//!
//! Its writer raises it after each commit; hints raise it for commits made elsewhere (Postgres `LISTEN`, or
//! another instance through [`EventStore::hint_head`](crate::EventStore::hint_head)). Waking a subscription is all
//! a hint does: readers still read the log, so a wrong or lost hint costs latency, never correctness.

use std::sync::Weak;

use tokio::sync::watch;

/// Raises a watched position to `position` if that is newer; true when it did (and woke the watchers).
pub fn advance(head: &watch::Sender<u64>, position: u64) -> bool {
    head.send_if_modified(|known| {
        let newer = position > *known;
        if newer {
            *known = position;
        }
        newer
    })
}

/// Raises the head through a handle that does not keep it alive: once the writer is gone, the store is closed and
/// there is nobody left to wake.
pub(crate) fn hint(head: &Weak<watch::Sender<u64>>, position: u64) {
    if let Some(head) = head.upgrade() {
        advance(&head, position);
    }
}
