//! The embedding port of the ingestion pipeline: the [`Embedder`] trait, its OpenAI-compatible implementation
//! ([`OpenAiEmbedder`]), a local one run with candle (`LocalEmbedder`, with the `local-embeddings` feature), the
//! classified [`EmbedError`], and the backoff arithmetic the pipeline's retry loop uses. [`openai_client`] and
//! [`describe_openai_error`] give other callers of OpenAI-compatible servers (the evaluation judge) the same
//! single-attempt HTTP client.
//!
//! One [`Embedder::embed`] call is one attempt. Retrying is the pipeline's job, not the embedder's: each attempt
//! becomes an event, so none may happen out of sight (that is why async-openai's built-in retry layer is replaced,
//! see `transport.rs`). The pipeline asks [`EmbedError::is_transient`] whether to try again and [`RetryPolicy`] /
//! [`backoff_delay`] how long to wait.
//!
//! Threading: an embedder is `Send + Sync` and meant to be shared (`Arc<dyn Embedder>`); calls may run
//! concurrently, each limiting its own HTTP requests in flight.

mod classify;
mod error;
#[cfg(feature = "local-embeddings")]
pub mod local;
mod openai;
mod retry;
mod transport;

use async_trait::async_trait;

pub use classify::describe_openai_error;
pub use error::EmbedError;
#[cfg(feature = "local-embeddings")]
pub use local::LocalEmbedder;
pub use openai::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT, OpenAiEmbedder, OpenAiEmbedderConfig};
pub use retry::{RetryPolicy, backoff_delay, random_jitter};
pub use transport::openai_client;

/// Turns texts into vectors with one model.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model's name, recorded with every vector it produced.
    fn model(&self) -> &str;

    /// Dimensions if known in advance (configured); vectors of another length are a permanent error.
    fn dimensions(&self) -> Option<u32>;

    /// One vector per text, in the same order. One call is one attempt: it does not retry. Empty input gives an
    /// empty output without contacting anything.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}
