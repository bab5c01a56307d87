//! Search over the vector index: BM25 alone, the dense vector alone, or both fused with reciprocal rank fusion in
//! one query; always within one tenant, optionally within some documents and matching metadata.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::read_model::{ChunkRow, ReadModelStore};
use crate::runner::READ_MODEL;
use crate::vector::index::{IndexError, VectorIndex};
use crate::vector::projection::live_collection;
use crate::vector::{Bm25, EmbeddingConfig, SparseVector};

/// How to retrieve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// BM25 only (no model needed).
    #[default]
    Sparse,
    /// The dense embedding only.
    Dense,
    /// Both, fused with RRF.
    Hybrid,
}

/// A metadata condition: the document's metadata value under `key` equals `value` (a string, integer or boolean).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataFilter {
    /// A top-level metadata key (letters, digits, `_` and `-`).
    pub key: String,
    /// The value it must equal.
    pub value: Value,
}

/// Which points a query or a write may touch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointFilter {
    /// Only this tenant's points.
    pub tenant_id: Option<String>,
    /// Only these documents' points (none: any document).
    pub document_ids: Vec<Uuid>,
    /// Only points from this chunk index on.
    pub from_chunk_index: Option<u32>,
    /// Only points whose metadata matches all of these.
    pub metadata: Vec<MetadataFilter>,
}

impl PointFilter {
    /// The filter in Qdrant's JSON shape (used by the embedded engine, which deserialises it).
    pub fn to_qdrant_json(&self) -> Result<Value, IndexError> {
        let mut must = Vec::new();
        if let Some(tenant) = &self.tenant_id {
            must.push(json!({ "key": "tenant", "match": { "value": tenant } }));
        }
        match self.document_ids.as_slice() {
            [] => {}
            [one] => must.push(json!({ "key": "document", "match": { "value": one.to_string() } })),
            many => must.push(json!({
                "key": "document",
                "match": { "any": many.iter().map(Uuid::to_string).collect::<Vec<_>>() }
            })),
        }
        if let Some(from) = self.from_chunk_index {
            must.push(json!({ "key": "chunk_index", "range": { "gte": from } }));
        }
        for condition in &self.metadata {
            condition.validate()?;
            must.push(json!({ "key": format!("metadata.{}", condition.key), "match": { "value": condition.value } }));
        }
        Ok(json!({ "must": must }))
    }
}

impl MetadataFilter {
    /// Checks the key is addressable and the value matchable.
    pub fn validate(&self) -> Result<(), IndexError> {
        let key_ok = !self.key.is_empty()
            && self.key.len() <= 128
            && self.key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !key_ok {
            return Err(IndexError::Invalid(format!(
                "metadata filter key {:?}: use 1-128 letters, digits, '_' or '-'",
                self.key
            )));
        }
        match &self.value {
            Value::String(_) | Value::Bool(_) => Ok(()),
            Value::Number(number) if number.is_i64() => Ok(()),
            other => Err(IndexError::Invalid(format!(
                "metadata filter {}: the value must be a string, an integer or a boolean, got {other}",
                self.key
            ))),
        }
    }
}

/// A query as the backends run it.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// The BM25 query vector (sparse and hybrid).
    pub sparse: Option<SparseVector>,
    /// The dense query vector (dense and hybrid).
    pub dense: Option<Vec<f32>>,
    /// Which points qualify (the tenant is always set).
    pub filter: PointFilter,
    /// Results wanted.
    pub limit: usize,
    /// Candidates each retriever contributes before fusion (hybrid).
    pub prefetch_limit: usize,
    /// RRF's rank constant.
    pub rrf_k: usize,
}

/// One point an index query found: which chunk, how well it scored, and the byte range its payload records.
///
/// The chunk's text is not in the index (ADR 0016): [`Searcher`] takes it from the read model.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexHit {
    /// The document.
    pub document_id: Uuid,
    /// The chunk's index.
    pub chunk_index: u32,
    /// The score (BM25, cosine similarity, or RRF).
    pub score: f32,
    /// Where the indexed chunk starts in the extracted text (bytes).
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
}

impl IndexHit {
    /// Reads a hit from a stored payload.
    pub fn from_payload(score: f32, payload: &Value) -> Option<Self> {
        Some(Self {
            document_id: payload.get("document")?.as_str()?.parse().ok()?,
            chunk_index: u32::try_from(payload.get("chunk_index")?.as_u64()?).ok()?,
            score,
            byte_start: payload.get("byte_start")?.as_u64()?,
            byte_end: payload.get("byte_end")?.as_u64()?,
        })
    }
}

/// One chunk found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchHit {
    /// The document.
    pub document_id: Uuid,
    /// The chunk's index.
    pub chunk_index: u32,
    /// The score (BM25, cosine similarity, or RRF).
    pub score: f32,
    /// The chunk's text.
    pub text: String,
    /// Where the chunk starts in the extracted text (bytes).
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
}

impl SearchHit {
    /// The hit with its chunk as the read model serves it, if that is the chunk the index scored: `None` when the
    /// read model has no such chunk (the document was deleted or is being reprocessed there, or the read model has
    /// not caught up with it yet) or a chunk over another byte range (the document was re-chunked).
    pub fn joined(hit: IndexHit, chunk: ChunkRow) -> Option<Self> {
        let same = chunk.document_id == hit.document_id
            && chunk.chunk_index == hit.chunk_index
            && chunk.byte_start == hit.byte_start
            && chunk.byte_end == hit.byte_end;
        same.then_some(Self {
            document_id: hit.document_id,
            chunk_index: hit.chunk_index,
            score: hit.score,
            text: chunk.text,
            byte_start: hit.byte_start,
            byte_end: hit.byte_end,
        })
    }
}

/// A search request as callers make it.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchRequest {
    /// Whose documents.
    pub tenant_id: String,
    /// The query text.
    pub text: String,
    /// The query's embedding (required for dense and hybrid).
    pub dense: Option<Vec<f32>>,
    /// How to retrieve.
    pub mode: SearchMode,
    /// Results wanted (1..=1000).
    pub top_k: usize,
    /// Only these documents (none: all of the tenant's).
    pub document_ids: Vec<Uuid>,
    /// Only documents whose metadata matches all of these.
    pub metadata: Vec<MetadataFilter>,
}

/// Why a search cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The read model (which records the live generation) failed.
    #[error(transparent)]
    ReadModel(#[from] crate::read_model::ReadModelError),
}

/// Tuning of hybrid retrieval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusionParams {
    /// Candidates from each retriever: `max(top_k * factor, minimum)`.
    pub prefetch_factor: usize,
    /// The least candidates each retriever contributes.
    pub prefetch_minimum: usize,
    /// RRF's rank constant.
    pub rrf_k: usize,
}

impl Default for FusionParams {
    /// RRF's k tuned on the SciFact training split (docs/evaluation.md): 10-20 beat the customary 60 by 0.006 nDCG@10.
    fn default() -> Self {
        Self { prefetch_factor: 4, prefetch_minimum: 100, rrf_k: 20 }
    }
}

/// Runs searches against the live generation of the vector index.
pub struct Searcher {
    index: Arc<dyn VectorIndex>,
    generations: Arc<dyn ReadModelStore>,
    config: EmbeddingConfig,
    bm25: Arc<Bm25>,
    fusion: FusionParams,
}

/// The most results one search returns.
pub const MAX_TOP_K: usize = 1_000;

impl Searcher {
    /// A searcher over `index`, whose live generation is recorded in `generations`.
    pub fn new(
        index: Arc<dyn VectorIndex>,
        generations: Arc<dyn ReadModelStore>,
        config: EmbeddingConfig,
        bm25: Arc<Bm25>,
        fusion: FusionParams,
    ) -> Self {
        Self { index, generations, config, bm25, fusion }
    }

    /// The embedding configuration searched.
    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    /// Searches the tenant's ready documents.
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, SearchError> {
        if request.top_k == 0 || request.top_k > MAX_TOP_K {
            return Err(SearchError::Invalid(format!(
                "top_k must be between 1 and {MAX_TOP_K}, got {}",
                request.top_k
            )));
        }
        let wants_dense = matches!(request.mode, SearchMode::Dense | SearchMode::Hybrid);
        let dense = match (&self.config.dense, wants_dense) {
            (_, false) => None,
            (None, true) => {
                return Err(SearchError::Invalid(format!(
                    "mode {:?} needs an embedding model, and none is configured (use mode sparse)",
                    request.mode
                )));
            }
            (Some((model, dimensions)), true) => {
                let vector = request.dense.clone().ok_or_else(|| {
                    SearchError::Invalid(format!("mode {:?} needs the query's embedding", request.mode))
                })?;
                if vector.len() != *dimensions as usize {
                    return Err(SearchError::Invalid(format!(
                        "the query embedding has {} dimensions, {model} has {dimensions}",
                        vector.len()
                    )));
                }
                Some(vector)
            }
        };
        let sparse = (request.mode != SearchMode::Dense).then(|| self.bm25.query(&request.text));
        if sparse.as_ref().is_some_and(|s| s.indices.is_empty()) && dense.is_none() {
            // Nothing but stop words: BM25 matches nothing, and that is the honest answer.
            return Ok(Vec::new());
        }
        let filter = PointFilter {
            tenant_id: Some(request.tenant_id.clone()),
            document_ids: request.document_ids.clone(),
            from_chunk_index: None,
            metadata: request.metadata.clone(),
        };
        filter.to_qdrant_json()?;
        let query = SearchQuery {
            sparse: sparse.filter(|s| !s.indices.is_empty()),
            dense,
            filter,
            limit: request.top_k,
            prefetch_limit: (request.top_k * self.fusion.prefetch_factor).max(self.fusion.prefetch_minimum),
            rrf_k: self.fusion.rrf_k,
        };
        let collection = live_collection(self.generations.as_ref(), &self.config).await?;
        // The read model's live generation is looked up while the index searches.
        let (hits, generation) =
            tokio::join!(self.index.search(&collection, &query), self.generations.live_generation(READ_MODEL));
        let hits = match hits {
            Err(IndexError::MissingCollection(_)) => return Ok(Vec::new()),
            other => other?,
        };
        self.with_texts(hits, generation?).await
    }

    /// Joins the hits with their chunks in the read model's live generation, keeping the index's order; a hit the
    /// read model does not serve (see [`SearchHit::joined`]) is left out.
    async fn with_texts(&self, hits: Vec<IndexHit>, generation: u32) -> Result<Vec<SearchHit>, SearchError> {
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(Uuid, u32)> = hits.iter().map(|hit| (hit.document_id, hit.chunk_index)).collect();
        let mut chunks = self.generations.chunks_by_key(generation, &keys).await?;
        let found = hits.len();
        let joined: Vec<SearchHit> = hits
            .into_iter()
            .filter_map(|hit| {
                let chunk = chunks.remove(&(hit.document_id, hit.chunk_index))?;
                SearchHit::joined(hit, chunk)
            })
            .collect();
        if joined.len() < found {
            tracing::debug!(found, served = joined.len(), "search_hits_not_in_read_model");
        }
        Ok(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_qdrants_shape() {
        let document = Uuid::nil();
        let filter = PointFilter {
            tenant_id: Some("acme".into()),
            document_ids: vec![document],
            from_chunk_index: Some(2),
            metadata: vec![MetadataFilter { key: "lang".into(), value: json!("en") }],
        };
        assert_eq!(
            filter.to_qdrant_json().unwrap(),
            json!({ "must": [
                { "key": "tenant", "match": { "value": "acme" } },
                { "key": "document", "match": { "value": document.to_string() } },
                { "key": "chunk_index", "range": { "gte": 2 } },
                { "key": "metadata.lang", "match": { "value": "en" } },
            ]})
        );
    }

    #[test]
    fn a_hit_is_joined_only_with_the_chunk_it_scored() {
        let document_id = Uuid::now_v7();
        let hit = IndexHit { document_id, chunk_index: 2, score: 1.5, byte_start: 10, byte_end: 20 };
        let chunk = ChunkRow { document_id, chunk_index: 2, text: "0123456789".into(), byte_start: 10, byte_end: 20 };
        let joined = SearchHit::joined(hit.clone(), chunk.clone()).expect("the same chunk");
        assert_eq!(
            (joined.text.as_str(), joined.score, joined.byte_start, joined.byte_end),
            ("0123456789", 1.5, 10, 20)
        );
        let rechunked = ChunkRow { byte_end: 25, ..chunk.clone() };
        assert_eq!(SearchHit::joined(hit.clone(), rechunked), None, "another byte range: the document was re-chunked");
        let other = ChunkRow { chunk_index: 3, ..chunk };
        assert_eq!(SearchHit::joined(hit, other), None, "another chunk");
    }

    #[test]
    fn metadata_filters_reject_paths_and_unmatchable_values() {
        let bad_key = MetadataFilter { key: "a.b".into(), value: json!("x") };
        assert!(bad_key.validate().unwrap_err().to_string().contains("\"a.b\""));
        let bad_value = MetadataFilter { key: "score".into(), value: json!(1.5) };
        assert!(bad_value.validate().unwrap_err().to_string().contains("string, an integer or a boolean"));
        assert!(MetadataFilter { key: "n".into(), value: json!(3) }.validate().is_ok());
    }
}
