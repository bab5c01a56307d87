//! dossier's runtime: the ractor supervision tree that takes document commands and runs the ingestion pipeline
//! (parse, chunk, embed) with retries and recovery after restart.
//!
//! Not built yet: this crate marks its place in the dependency order (`events` ← `projections` ← `actors` ← the
//! application). See DESIGN.md, "Runtime (actors)".

#![warn(missing_docs)]
