//! The events a store committed most recently, kept in memory for its subscriptions.
//!
//! Every follower of the log in a process (the projection runners, the live feed) reads back each event the process
//! has just appended, one query and one decoding per follower per event. The store's writer knows those events when
//! it commits them, so it keeps the last few thousand here (before it announces the new head), and a subscription
//! takes its next page from memory when the page starts inside them.
//!
//! What is kept is always one run of consecutive positions: positions are gap-free, so a run that holds the position
//! a reader asks for holds exactly the log's events from there up to its end. A commit that does not continue the
//! run (another process appended in between) starts a new one. A page from here may be shorter than what the log
//! holds (it ends where the run ends); readers that ask again from its last position read the rest from the log.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::envelope::RecordedEvent;

/// Events kept at most.
const MAX_EVENTS: usize = 8_192;

/// Payload bytes kept at most (events carry chunk texts and vectors).
const MAX_BYTES: usize = 32 << 20;

/// The most recent run of committed events.
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    run: Mutex<Run>,
}

#[derive(Debug, Default)]
struct Run {
    events: VecDeque<RecordedEvent>,
    bytes: usize,
}

impl RecentEvents {
    /// Records a commit's events (in position order), before the head that includes them is announced.
    pub fn committed(&self, events: Vec<RecordedEvent>) {
        let Some(first) = events.first() else { return };
        let mut run = self.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if run.events.back().is_some_and(|last| last.position + 1 != first.position) {
            run.events.clear();
            run.bytes = 0;
        }
        for event in events {
            run.bytes += size(&event);
            run.events.push_back(event);
        }
        while run.events.len() > MAX_EVENTS || (run.bytes > MAX_BYTES && run.events.len() > 1) {
            if let Some(dropped) = run.events.pop_front() {
                run.bytes -= size(&dropped);
            }
        }
    }

    /// The events after `after_position`, at most `limit`, if the run holds the next one; `None` otherwise.
    pub fn after(&self, after_position: u64, limit: usize) -> Option<Vec<RecordedEvent>> {
        let run = self.run.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = run.events.front()?.position;
        let last = run.events.back()?.position;
        // The run must hold the next position, after_position + 1.
        if limit == 0 || after_position + 1 < first || after_position >= last {
            return None;
        }
        let start = usize::try_from(after_position + 1 - first).ok()?;
        Some(run.events.iter().skip(start).take(limit).cloned().collect())
    }
}

fn size(event: &RecordedEvent) -> usize {
    event.data.as_str().len() + event.event_type.len() + 128
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::envelope::{EventData, EventMetadata, StreamId};
    use crate::hash::Hash;

    fn event(position: u64, data_bytes: usize) -> RecordedEvent {
        RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            stream_id: StreamId::new("notes-1").expect("stream"),
            version: position,
            position,
            event_type: "Noted".into(),
            schema_version: 1,
            data: EventData::from_json(format!("\"{}\"", "x".repeat(data_bytes))).expect("json"),
            metadata: Arc::new(EventMetadata::new("tenant", "alice")),
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
            prev_hash: Hash::ZERO,
            hash: Hash::ZERO,
        }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<u64> {
        events.iter().map(|event| event.position).collect()
    }

    #[test]
    fn serves_pages_that_start_inside_the_run() {
        let recent = RecentEvents::default();
        assert_eq!(recent.after(0, 10), None, "nothing kept yet");
        recent.committed((5..=9).map(|p| event(p, 1)).collect());
        assert_eq!(recent.after(4, 10).map(|e| positions(&e)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(recent.after(6, 2).map(|e| positions(&e)), Some(vec![7, 8]));
        assert_eq!(recent.after(3, 10), None, "position 4 is not kept: the log must be read");
        assert_eq!(recent.after(9, 10), None, "past the run: the log may hold more");
        assert_eq!(recent.after(5, 0), None);
        recent.committed((10..=11).map(|p| event(p, 1)).collect());
        assert_eq!(recent.after(8, 10).map(|e| positions(&e)), Some(vec![9, 10, 11]), "a commit extends the run");
    }

    #[test]
    fn a_commit_after_a_gap_starts_a_new_run() {
        let recent = RecentEvents::default();
        recent.committed((1..=3).map(|p| event(p, 1)).collect());
        // Positions 4 and 5 were committed by another process.
        recent.committed(vec![event(6, 1)]);
        assert_eq!(recent.after(2, 10), None, "the old run is gone: it cannot tell what 4 and 5 are");
        assert_eq!(recent.after(5, 10).map(|e| positions(&e)), Some(vec![6]));
    }

    #[test]
    fn keeps_a_bounded_tail() {
        let recent = RecentEvents::default();
        recent.committed((1..=(MAX_EVENTS as u64 + 10)).map(|p| event(p, 1)).collect());
        assert_eq!(recent.after(9, 1), None, "the oldest events were let go");
        assert_eq!(recent.after(10, 1).map(|e| positions(&e)), Some(vec![11]));
        let big = MAX_BYTES / 4;
        let next = MAX_EVENTS as u64 + 11;
        recent.committed((next..next + 5).map(|p| event(p, big)).collect());
        assert_eq!(recent.after(next - 1, 10), None, "bounded by bytes too: the first large event was let go");
        let newest = recent.after(next + 2, 10).map(|e| positions(&e));
        assert_eq!(newest, Some(vec![next + 3, next + 4]), "the newest are kept");
    }
}
