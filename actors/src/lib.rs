//! dossier's runtime: the ractor supervision tree that takes document commands and runs the ingestion pipeline
//! (parse, chunk, embed) with retries and recovery after restart.
//!
//! Threading: everything runs on the tokio runtime; each document's commands are serialised by its actor, stages
//! run as bounded tasks (parsing and chunking on the blocking pool), and blocking file I/O never runs on an actor.

#![warn(missing_docs)]

pub mod blob;
pub mod chunk;
pub mod embed;
pub mod parse;
pub mod runtime;
