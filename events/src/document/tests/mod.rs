//! Given/when/then tests of the document aggregate, and round trips through the store's envelopes.

mod codec;
mod failures;
pub(crate) mod fixtures;
mod given;
mod lifecycle;
mod pipeline;
mod replay;
mod upcast;
mod upload;
