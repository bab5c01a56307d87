//! Verification of the whole log: every stream's hash chain and the global order.

use std::collections::HashMap;

use serde::Serialize;

use crate::envelope::RecordedEvent;
use crate::error::StoreResult;
use crate::hash::{Hash, compute_hash};
use crate::store::EventStore;

/// Events read per page while verifying.
const PAGE: usize = 5_000;

/// What is wrong with the first bad event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The event's fields do not hash to its recorded hash: it was edited after it was written.
    HashMismatch {
        /// What the fields hash to now.
        expected: Hash,
        /// The hash recorded with the event.
        found: Hash,
    },
    /// The event's `prev_hash` is not the hash of the stream's previous event.
    BrokenLink {
        /// The previous event's hash.
        expected: Hash,
        /// The recorded `prev_hash`.
        found: Hash,
    },
    /// The global positions skip or repeat.
    PositionGap {
        /// The position that should come next.
        expected: u64,
        /// The position found.
        found: u64,
    },
    /// The stream's versions skip or repeat.
    VersionGap {
        /// The version that should come next.
        expected: u64,
        /// The version found.
        found: u64,
    },
}

/// The first event that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadEvent {
    /// Its stream.
    pub stream_id: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its global position.
    pub position: u64,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: Problem,
}

impl std::fmt::Display for BadEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream {} version {} position {}: ", self.stream_id, self.version, self.position)?;
        match &self.problem {
            Problem::HashMismatch { expected, found } => {
                write!(f, "hash mismatch (expected {expected}, found {found}): the event was altered")
            }
            Problem::BrokenLink { expected, found } => {
                write!(f, "broken chain (expected prev_hash {expected}, found {found})")
            }
            Problem::PositionGap { expected, found } => write!(f, "position gap (expected {expected}, found {found})"),
            Problem::VersionGap { expected, found } => write!(f, "version gap (expected {expected}, found {found})"),
        }
    }
}

/// The result of verifying the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events checked (up to and including the bad one).
    pub events: u64,
    /// Distinct streams seen.
    pub streams: u64,
    /// The first bad event, if any.
    pub first_bad: Option<BadEvent>,
}

/// Checks the stored events of the whole log in position order; stops at the first bad event.
pub async fn verify_log<S: EventStore + ?Sized>(store: &S) -> StoreResult<VerifyReport> {
    let mut chain = ChainChecker::default();
    let mut position = 0;
    loop {
        let page = store.read_all_stored(position, PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        for event in &page {
            if let Some(bad) = chain.check(event) {
                return Ok(chain.report(Some(bad)));
            }
        }
    }
    Ok(chain.report(None))
}

/// Checks events fed in position order against the chain so far.
#[derive(Default)]
pub struct ChainChecker {
    heads: HashMap<String, (u64, Hash)>,
    last_position: u64,
    events: u64,
}

impl ChainChecker {
    /// Checks one event (as stored); returns what is wrong with it, if anything.
    pub fn check(&mut self, event: &RecordedEvent) -> Option<BadEvent> {
        self.events += 1;
        let bad = |problem| BadEvent {
            stream_id: event.stream_id.to_string(),
            version: event.version,
            position: event.position,
            problem,
        };
        if event.position != self.last_position + 1 {
            return Some(bad(Problem::PositionGap { expected: self.last_position + 1, found: event.position }));
        }
        self.last_position = event.position;
        let (prev_version, prev_hash) = self.heads.get(event.stream_id.as_str()).copied().unwrap_or((0, Hash::ZERO));
        let recomputed = compute_hash(event);
        if recomputed != event.hash {
            return Some(bad(Problem::HashMismatch { expected: recomputed, found: event.hash }));
        }
        if event.version != prev_version + 1 {
            return Some(bad(Problem::VersionGap { expected: prev_version + 1, found: event.version }));
        }
        if event.prev_hash != prev_hash {
            return Some(bad(Problem::BrokenLink { expected: prev_hash, found: event.prev_hash }));
        }
        self.heads.insert(event.stream_id.as_str().to_owned(), (event.version, event.hash));
        None
    }

    fn report(&self, first_bad: Option<BadEvent>) -> VerifyReport {
        VerifyReport { events: self.events, streams: self.heads.len() as u64, first_bad }
    }
}
