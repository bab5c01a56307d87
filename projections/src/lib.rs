//! dossier's projections: checkpointed consumers of the global log that build the read model and the vector index,
//! with blue/green rebuilds.
//!
//! Not built yet: this crate marks its place in the dependency order. See DESIGN.md, "Projections and rebuilds".

#![warn(missing_docs)]
