//! dossier's event log.
//!
//! Everything dossier knows is an event in this log; read models, vector indexes and caches are projections of it.
//! This crate holds the [`envelope`] every event carries, the per-stream hash chain ([`hash`]), the
//! [document aggregate](document) (pure `decide`/`evolve`), the [`EventStore`] port with its [catch-up
//! subscriptions](subscription), and two backends: [embedded](sqlite) (one SQLite file) and [Postgres](postgres).
//!
//! Threading: the stores are cheap-to-clone handles usable from any tokio task. Each store has a single writer
//! (a thread for SQLite, a task for Postgres) that commits queued appends in batches; reads run concurrently.

#![warn(missing_docs)]

pub mod batch;
pub mod document;
pub mod envelope;
pub mod error;
pub mod hash;
pub mod head;
pub mod migrate;
pub mod postgres;
mod recent;
mod rows;
pub mod sqlite;
pub mod store;
pub mod subscription;
pub mod upcast;
pub mod verify;

pub use batch::{CommitAction, CommitHook};
pub use envelope::{AppendOutcome, EventData, EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
pub use error::{StoreError, StoreResult};
pub use hash::Hash;
pub use store::EventStore;
pub use subscription::Subscription;
pub use upcast::Upcasters;
