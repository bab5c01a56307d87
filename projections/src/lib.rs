//! dossier's projections: checkpointed consumers of the global log that build the read model and the vector
//! index, each writing its rows and its checkpoint in one transaction so every event takes effect exactly once.
//!
//! Threading: a projection runs as one task that follows a catch-up subscription and applies events in batches; its
//! storage is used from tokio tasks (SQLite work runs on the blocking pool).

#![warn(missing_docs)]

pub mod background;
pub mod read_model;
pub mod rebuild;
pub mod runner;
pub mod skip;
pub mod vector;
