//! [`LocalEmbedder`]: the [`Embedder`] for a sentence-transformers BERT model directory on local disk (e.g.
//! all-MiniLM-L6-v2), run in-process on the CPU with candle, in f32. Only with the `local-embeddings` feature.
//!
//! The directory must hold `config.json` (a BERT config), `tokenizer.json` (a Hugging Face tokenizer) and
//! `model.safetensors`; `sentence_bert_config.json` (`max_seq_length`) and `1_Pooling/config.json` are read when
//! present. A text is tokenized (padded to the longest text of its batch, truncated to the model's maximum sequence
//! length, 256 tokens when the directory does not say), run through the encoder, mean-pooled over its real tokens
//! (the attention mask keeps padding out, so a text's vector does not depend on its batch) and L2-normalised, as
//! sentence-transformers does for this family of models.
//!
//! Threading: the forward pass is blocking CPU work, so `embed` runs it on tokio's blocking pool. Candle already
//! spreads one batch over every core, so calls are serialised by a one-permit semaphore (waited for
//! asynchronously): two batches at once would only fight over the same cores and hold two blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::Semaphore;

use super::{EmbedError, Embedder};

/// The maximum sequence length used when the model directory has no `sentence_bert_config.json`.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// A sentence-transformers model run locally with candle. Cheap to share behind an `Arc`; holds the weights
/// (about 90 MB for all-MiniLM-L6-v2) in memory.
pub struct LocalEmbedder {
    /// The weights and tokenizer, shared with the blocking task of each call.
    runner: Arc<Runner>,
    /// One forward pass at a time (see the module documentation).
    permit: Semaphore,
    model_dir: PathBuf,
    model: String,
    dimensions: u32,
    batch_size: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model_dir", &self.model_dir)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("batch_size", &self.batch_size)
            .field("max_seq_length", &self.runner.max_seq_length)
            .finish_non_exhaustive()
    }
}

/// What the blocking task needs: everything but the async bookkeeping.
struct Runner {
    bert: BertModel,
    tokenizer: Tokenizer,
    max_seq_length: usize,
    batch_size: usize,
    model: String,
}

impl LocalEmbedder {
    /// Loads the model in `model_dir` (reads and parses every file up front, so later calls cannot fail on a bad
    /// directory); `batch_size` texts go through the encoder at once (at least 1; larger batches are faster per
    /// text up to a point, but pad every text to the longest of its batch).
    ///
    /// The model's name ([`Embedder::model`]) is the directory's name, e.g. `all-MiniLM-L6-v2`. Fails
    /// (permanently, naming the path) when the directory or one of its files is missing or invalid, when the model
    /// declares a pooling other than mean pooling, or when `batch_size` is 0. This reads about 90 MB and takes
    /// a fraction of a second: call it from the blocking pool in async code.
    pub fn load(model_dir: &Path, batch_size: usize) -> Result<Self, EmbedError> {
        let started = Instant::now();
        let model_dir = model_dir.canonicalize().map_err(|error| {
            EmbedError::permanent(format!("local embedding model directory `{}`: {error}", model_dir.display()))
        })?;
        let model = model_dir
            .file_name()
            .map_or_else(|| model_dir.display().to_string(), |name| name.to_string_lossy().into_owned());
        let fail = |path: &Path, what: &dyn std::fmt::Display| {
            EmbedError::permanent(format!("local embedding model `{model}`: `{}`: {what}", path.display()))
        };
        if batch_size == 0 {
            return Err(fail(&model_dir, &"batch_size must be at least 1"));
        }

        let config_path = model_dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(|error| fail(&config_path, &error))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|error| fail(&config_path, &error))?;
        let dimensions = u32::try_from(config.hidden_size)
            .ok()
            .filter(|&dimensions| dimensions > 0)
            .ok_or_else(|| fail(&config_path, &"hidden_size must be between 1 and 2^32 - 1"))?;

        check_pooling(&model_dir.join("1_Pooling").join("config.json"), &fail)?;
        let max_seq_length = read_max_seq_length(&model_dir.join("sentence_bert_config.json"), &fail)?
            .min(config.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(fail(&config_path, &"the maximum sequence length must leave room for [CLS] and [SEP]"));
        }

        let tokenizer_path = model_dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|error| fail(&tokenizer_path, &error))?;
        // tokenizer.json usually pads every text to a fixed length (128 for all-MiniLM-L6-v2) and truncates to
        // it: pad to the batch's longest text instead (less work, same vectors thanks to the mask) and truncate
        // where sentence-transformers does. The pad token and id stay the tokenizer's own.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_to_multiple_of: None,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        let truncation =
            TruncationParams { max_length: max_seq_length, ..tokenizer.get_truncation().cloned().unwrap_or_default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|error| fail(&tokenizer_path, &error))?;

        let weights_path = model_dir.join("model.safetensors");
        // Read into memory rather than mmap: mmap needs `unsafe` (the file must not change while mapped), and the
        // weights are small.
        let weights = std::fs::read(&weights_path).map_err(|error| fail(&weights_path, &error))?;
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|error| fail(&weights_path, &error))?;
        let bert = BertModel::load(vars, &config).map_err(|error| fail(&weights_path, &error))?;

        tracing::info!(
            model = %model,
            model_dir = %model_dir.display(),
            dimensions,
            max_seq_length,
            batch_size,
            duration_ms = started.elapsed().as_millis() as u64,
            "local_embedding_model_loaded"
        );
        let runner = Runner { bert, tokenizer, max_seq_length, batch_size, model: model.clone() };
        Ok(Self { runner: Arc::new(runner), permit: Semaphore::new(1), model_dir, model, dimensions, batch_size })
    }

    /// The canonical path of the model directory.
    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// The longest input, in tokens (`[CLS]` and `[SEP]` included), before a text is truncated.
    pub fn max_seq_length(&self) -> usize {
        self.runner.max_seq_length
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> Option<u32> {
        Some(self.dimensions)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // The semaphore is never closed, so acquiring fails only if that changes; say so rather than panic.
        let _permit =
            self.permit.acquire().await.map_err(|_| {
                EmbedError::permanent(format!("local embedding model `{}`: embedder closed", self.model))
            })?;
        let started = Instant::now();
        let runner = Arc::clone(&self.runner);
        let owned = texts.to_vec();
        let vectors = tokio::task::spawn_blocking(move || runner.embed_all(&owned)).await.map_err(|error| {
            let reason = format!("local embedding model `{}`: the blocking task failed: {error}", self.model);
            // Cancelled only when the runtime shuts down: another attempt (after a restart) can succeed. A panic
            // in the model would happen again on the same input.
            if error.is_cancelled() { EmbedError::transient(reason) } else { EmbedError::permanent(reason) }
        })??;
        tracing::debug!(
            model = %self.model,
            texts = texts.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "local_embedding_done"
        );
        Ok(vectors)
    }
}

impl Runner {
    /// All texts, `batch_size` at a time, in order. Blocking.
    fn embed_all(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            vectors.extend(self.embed_batch(batch)?);
        }
        Ok(vectors)
    }

    /// One batch through the tokenizer, the encoder, mean pooling and L2 normalisation. Every failure here is a
    /// property of the input or the model, so it is permanent.
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let fail = |what: &dyn std::fmt::Display| {
            EmbedError::permanent(format!("local embedding model `{}`: {what}", self.model))
        };
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(|error| fail(&error))?;
        let rows = encodings.len();
        let columns = encodings.first().map_or(0, |encoding| encoding.len());
        let mut ids = Vec::with_capacity(rows * columns);
        let mut type_ids = Vec::with_capacity(rows * columns);
        let mut mask = Vec::with_capacity(rows * columns);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            type_ids.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let vectors = self.forward(ids, type_ids, mask, (rows, columns)).map_err(|error| fail(&error))?;
        if vectors.len() != texts.len() || vectors.iter().flatten().any(|value| !value.is_finite()) {
            return Err(fail(&"the model produced a wrong number of vectors or non-finite values"));
        }
        Ok(vectors)
    }

    /// The encoder, then the mean of the token vectors where the mask is 1, divided by its L2 norm (clamped as
    /// sentence-transformers does, so a zero vector stays zero instead of becoming NaN).
    fn forward(
        &self,
        ids: Vec<u32>,
        type_ids: Vec<u32>,
        mask: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let device = &Device::Cpu;
        let ids = Tensor::from_vec(ids, shape, device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?; // (batch, tokens, hidden)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (batch, tokens, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (batch, hidden)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (batch, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

/// Rejects a model whose sentence-transformers pooling is not mean pooling: its vectors would silently differ
/// from the published ones. A missing file means a plain Hugging Face model: mean pooling is then our choice.
fn check_pooling(path: &Path, fail: &dyn Fn(&Path, &dyn std::fmt::Display) -> EmbedError) -> Result<(), EmbedError> {
    let Some(text) = read_optional(path, fail)? else {
        return Ok(());
    };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|error| fail(path, &error))?;
    let enabled = |key: &str| config.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let others = ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"];
    if enabled("pooling_mode_mean_tokens") && !others.iter().any(|key| enabled(key)) {
        Ok(())
    } else {
        Err(fail(path, &"only mean pooling (`pooling_mode_mean_tokens` alone) is supported"))
    }
}

/// `max_seq_length` from `sentence_bert_config.json`, or [`DEFAULT_MAX_SEQ_LENGTH`] without that file.
fn read_max_seq_length(
    path: &Path,
    fail: &dyn Fn(&Path, &dyn std::fmt::Display) -> EmbedError,
) -> Result<usize, EmbedError> {
    let Some(text) = read_optional(path, fail)? else {
        return Ok(DEFAULT_MAX_SEQ_LENGTH);
    };
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|error| fail(path, &error))?;
    match config.get("max_seq_length") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_MAX_SEQ_LENGTH),
        Some(value) => value
            .as_u64()
            .and_then(|length| usize::try_from(length).ok())
            .ok_or_else(|| fail(path, &"`max_seq_length` is not a non-negative integer")),
    }
}

/// The file's text, `None` if it does not exist; any other read error fails.
fn read_optional(
    path: &Path,
    fail: &dyn Fn(&Path, &dyn std::fmt::Display) -> EmbedError,
) -> Result<Option<String>, EmbedError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(fail(path, &error)),
    }
}
