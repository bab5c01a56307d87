//! The read model: documents and chunks as the API serves them, projected from the log.

mod paging;
pub mod postgres;
pub mod row;
pub mod sqlite;
pub mod store;

pub use row::{ApplyError, ChunkRow, DocumentChange, DocumentRow, apply};
pub use store::{Checkpoint, DocumentPage, ReadModelError, ReadModelStore};
