//! The document aggregate: the events of a document's lifecycle, the commands it accepts, and the pure functions
//! that decide and replay them.
//!
//! A document's stream (`document-<uuid>`) is its whole history: uploaded, parsed, chunked, embedded, ready (or
//! failed, and maybe reprocessed), with metadata updates along the way, until it is deleted. [`decide`] checks a
//! [`DocumentCommand`] against the [`DocumentState`] and returns the [`DocumentEvent`]s to append; [`evolve`] and
//! [`replay`] fold events into a state, so the document at any past version is `replay(&events[..version])`.
//! Events cross the store boundary through [`DocumentEvent::to_new_event`] and [`DocumentEvent::from_recorded`];
//! older schemas are lifted by the steps [`register_upcasters`] installs.
//!
//! Nothing here does I/O or reads a clock: it runs on whatever thread calls it.

mod aggregate;
mod codec;
mod command;
mod error;
mod events;
mod state;
mod upcast;
mod validate;
mod vectors;

#[cfg(test)]
pub(crate) mod tests;

pub use aggregate::{decide, evolve, replay};
pub use command::DocumentCommand;
pub use error::DocumentError;
pub use events::{
    BlobRef, Chunk, ChunkerSettings, ChunksEmbedded, DocumentChunked, DocumentDeleted, DocumentEvent, DocumentFailed,
    DocumentParsed, DocumentPayload, DocumentReady, DocumentUploaded, Metadata, MetadataUpdated, ReprocessRequested,
    Stage, StageAttemptFailed,
};
pub use state::{DocumentState, DocumentStatus, EmbeddingInfo, Failure};
pub use upcast::register_upcasters;
pub use validate::{MAX_FILENAME_LEN, MAX_MEDIA_TYPE_LEN, MAX_METADATA_KEY_LEN};
pub use vectors::{VectorError, decode_vector, encode_vector};
