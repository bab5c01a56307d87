//! [`OpenAiEmbedder`]: the [`Embedder`] for any OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, vLLM,
//! llama.cpp's server ...), through async-openai with a single-attempt transport (see `transport.rs`).
//!
//! One `embed` call is one attempt: the texts are cut into batches of `batch_size`, sent concurrently (at most
//! `max_concurrency` requests in flight per embedder, whatever the number of concurrent calls), checked against the contract (one finite vector per input, of one length,
//! the configured one if any) and returned in input order. The first failure stops new batches from starting; a
//! permanent one returns at once, a transient one waits for the batches already in flight so the most relevant
//! error (see [`EmbedError::more_relevant`]) is reported.

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use super::classify::{check_response, classify};
use super::transport::openai_client;
use super::{EmbedError, Embedder};

/// Default number of texts per HTTP request.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Default number of HTTP requests in flight at once, per embedder.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Default time allowed for one HTTP request, from connecting to the end of the body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to reach the embedding service.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderConfig {
    /// The API root, including its version path, e.g. `http://localhost:11434/v1`.
    pub base_url: String,
    /// The embedding model's name, e.g. `nomic-embed-text`.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set; never logged (its `Debug` is redacted).
    pub api_key: Option<SecretString>,
    /// The vector length the model must return; `None` only requires every vector of a call to have one length.
    /// Not sent to the server (older models reject the parameter): it is a check on the answer.
    pub dimensions: Option<u32>,
    /// Texts per HTTP request (at least 1).
    pub batch_size: usize,
    /// HTTP requests in flight at once (at least 1), across all concurrent `embed` calls on one embedder.
    pub max_concurrency: usize,
    /// Time allowed for one HTTP request, connecting and reading the body included.
    pub timeout: Duration,
}

impl OpenAiEmbedderConfig {
    /// A configuration with the default batch size, concurrency and timeout, no API key and no fixed dimensions.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dimensions: None,
            batch_size: DEFAULT_BATCH_SIZE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The OpenAI-compatible [`Embedder`]. Cheap to share behind an `Arc`; holds one connection pool.
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    /// One permit per request in flight: the limit protects the server, so it holds across concurrent calls.
    permits: Semaphore,
    base_url: String,
    model: String,
    dimensions: Option<u32>,
    batch_size: usize,
    max_concurrency: usize,
    timeout: Duration,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("batch_size", &self.batch_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// Checks the configuration and builds the HTTP client. Sends nothing.
    ///
    /// Fails (permanently) on an empty model, a base URL that is not `http(s)://…`, a zero batch size, concurrency
    /// or timeout, or a TLS setup that cannot be built.
    pub fn new(config: OpenAiEmbedderConfig) -> Result<Self, EmbedError> {
        let OpenAiEmbedderConfig { base_url, model, api_key, dimensions, batch_size, max_concurrency, timeout } =
            config;
        let model = model.trim().to_owned();
        if model.is_empty() {
            return Err(EmbedError::permanent("embedding model name is empty"));
        }
        if batch_size == 0 || max_concurrency == 0 || timeout.is_zero() || dimensions == Some(0) {
            return Err(EmbedError::permanent(format!(
                "embedding model `{model}`: batch_size, max_concurrency, timeout and dimensions must be non-zero"
            )));
        }
        let (base_url, client) = openai_client(&base_url, api_key.as_ref(), timeout)
            .map_err(|reason| EmbedError::permanent(format!("embedding model `{model}`: {reason}")))?;
        let permits = Semaphore::new(max_concurrency);
        Ok(Self { client, permits, base_url, model, dimensions, batch_size, max_concurrency, timeout })
    }

    /// Sends one batch; returns its position among the batches with the outcome.
    async fn embed_batch(&self, batch: usize, texts: &[String]) -> (usize, Result<Vec<Vec<f32>>, EmbedError>) {
        // The semaphore is never closed, so acquiring cannot fail; the error is mapped rather than unwrapped.
        let Ok(_permit) = self.permits.acquire().await else {
            return (batch, Err(EmbedError::permanent(format!("embedding model `{}`: embedder closed", self.model))));
        };
        let started = Instant::now();
        let request = CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(texts.to_vec()),
            ..CreateEmbeddingRequest::default()
        };
        let outcome = match self.client.embeddings().create(request).await {
            Ok(response) => check_response(&self.model, self.dimensions, texts.len(), response),
            Err(error) => Err(classify(&self.model, self.timeout, error)),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Ok(_) => tracing::debug!(model = %self.model, batch, inputs = texts.len(), duration_ms, "embed_batch_done"),
            Err(error) => tracing::warn!(
                model = %self.model,
                batch,
                inputs = texts.len(),
                duration_ms,
                transient = error.is_transient(),
                error = %error,
                "embed_batch_failed"
            ),
        }
        (batch, outcome)
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> Option<u32> {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let batches: Vec<&[String]> = texts.chunks(self.batch_size).collect();
        let mut results: Vec<Option<Vec<Vec<f32>>>> = vec![None; batches.len()];
        let mut waiting = batches.iter().copied().enumerate();
        let mut in_flight = FuturesUnordered::new();
        for (batch, chunk) in waiting.by_ref().take(self.max_concurrency) {
            in_flight.push(self.embed_batch(batch, chunk));
        }
        let mut failure: Option<EmbedError> = None;
        while let Some((batch, outcome)) = in_flight.next().await {
            match outcome {
                Ok(vectors) => {
                    results[batch] = Some(vectors);
                    if failure.is_none()
                        && let Some((next, chunk)) = waiting.next()
                    {
                        in_flight.push(self.embed_batch(next, chunk));
                    }
                }
                // Dropping `in_flight` cancels the other requests: nothing they return could change the outcome.
                Err(error) if !error.is_transient() => return Err(error),
                Err(error) => {
                    failure = Some(match failure.take() {
                        Some(earlier) => earlier.more_relevant(error),
                        None => error,
                    });
                }
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        let vectors: Vec<Vec<f32>> = results.into_iter().flatten().flatten().collect();
        if vectors.len() != texts.len() {
            // Unreachable while every batch either fails or is checked for its count; kept as a last guard.
            return Err(EmbedError::permanent(format!(
                "embedding model `{}`: {} vectors for {} inputs",
                self.model,
                vectors.len(),
                texts.len()
            )));
        }
        // Batches are each uniform, but with no configured dimensions they could disagree with one another.
        if let Some(first) = vectors.first()
            && let Some(other) = vectors.iter().find(|vector| vector.len() != first.len())
        {
            return Err(EmbedError::permanent(format!(
                "embedding model `{}` returned vectors of different dimensions ({} and {})",
                self.model,
                first.len(),
                other.len()
            )));
        }
        tracing::debug!(
            model = %self.model,
            texts = texts.len(),
            batches = batches.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(vectors)
    }
}
