//! Read-ahead for readers catching up on the log.
//!
//! A catching-up reader (a subscription, a projection runner, `verify`) asks for page after page:
//! `read_all(after, n)`, then `read_all(last position of that page, n)`. Positions are gap-free, so when a page comes
//! back full and the next one lies entirely below the head, the next request is known before it is made. The store
//! then starts that query on another pooled connection, so Postgres produces page N+1 while the reader decodes and
//! handles page N, instead of the two taking turns.
//!
//! Committed events never change, so a page read ahead is what the reader would have read. A page that nobody asks
//! for within [`FRESH_FOR`] is dropped (so an edit made through SQL afterwards, which `verify` must see, is never
//! hidden behind an old page), and at most [`SLOTS`] pages wait at any time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::envelope::RecordedEvent;
use crate::error::StoreResult;

/// Pages waiting to be taken, at most (one per reader catching up at the same time).
const SLOTS: usize = 4;
/// How long a page read ahead may wait to be taken.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// Pages larger than this are not read ahead (their memory is not worth the guess).
pub(super) const MAX_PAGE: usize = 5_000;

type Page = JoinHandle<StoreResult<Vec<RecordedEvent>>>;

struct Slot {
    after: u64,
    limit: usize,
    started: Instant,
    page: Page,
}

/// The pages being read ahead.
#[derive(Default)]
pub(super) struct ReadAhead {
    slots: Mutex<VecDeque<Slot>>,
}

impl ReadAhead {
    /// The page read ahead for exactly this request, if one is waiting and fresh.
    pub fn take(&self, after: u64, limit: usize) -> Option<Page> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        discard_stale(&mut slots);
        let index = slots.iter().position(|slot| slot.after == after && slot.limit == limit)?;
        slots.remove(index).map(|slot| slot.page)
    }

    /// Records a page being read ahead, making room by dropping the oldest.
    pub fn put(&self, after: u64, limit: usize, page: Page) {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        discard_stale(&mut slots);
        while slots.len() >= SLOTS {
            if let Some(oldest) = slots.pop_front() {
                oldest.page.abort();
            }
        }
        slots.push_back(Slot { after, limit, started: Instant::now(), page });
    }
}

fn discard_stale(slots: &mut VecDeque<Slot>) {
    slots.retain(|slot| {
        let fresh = slot.started.elapsed() < FRESH_FOR;
        if !fresh {
            slot.page.abort();
        }
        fresh
    });
}

/// The request a reader makes after receiving `page` for `(after, limit)`, if it can be read ahead: the page was full
/// and the next one ends at or below `head`, the last position known to be committed.
pub(super) fn next_request(page: &[RecordedEvent], limit: usize, head: u64) -> Option<u64> {
    if limit == 0 || limit > MAX_PAGE || page.len() < limit {
        return None;
    }
    let next_after = page.last()?.position;
    (next_after.saturating_add(limit as u64) <= head).then_some(next_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::tests::fixtures::recorded;
    use crate::envelope::NewEvent;

    fn page(positions: std::ops::RangeInclusive<u64>) -> Vec<RecordedEvent> {
        positions
            .map(|position| recorded(NewEvent::new("Noted", 1, serde_json::json!({})), position, position))
            .collect()
    }

    #[test]
    fn a_full_page_below_the_head_is_followed_by_the_next() {
        assert_eq!(next_request(&page(1..=10), 10, 20), Some(10));
        assert_eq!(next_request(&page(11..=20), 10, 25), None, "the next page would pass the head");
        assert_eq!(next_request(&page(1..=9), 10, 100), None, "a short page means the reader is at the head");
        assert_eq!(next_request(&[], 10, 100), None);
        assert_eq!(next_request(&page(1..=10), MAX_PAGE + 1, u64::MAX), None, "too large to guess");
    }
}
