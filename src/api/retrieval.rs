//! What `POST /search` and `POST /ask` share: the searcher over the vector index's live generation, the embedder of
//! query vectors, and the strict reading of a query's options (`top_k`, `mode`, `filters`) into a
//! [`SearchRequest`], each bad value a 400 naming its field.
//!
//! Threading: [`Retrieval`] is shared by every request behind the context; the searcher resolves the live generation
//! from the read model on each query, so a rebuild's switch is seen by the next query.

use std::collections::BTreeMap;
use std::sync::Arc;

use dossier_actors::embed::Embedder;
use dossier_projections::vector::search::{MAX_TOP_K, SearchError, SearchRequest, Searcher};
use dossier_projections::vector::{Bm25, IndexError, MetadataFilter, SearchHit, SearchMode};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::error::ApiError;

/// Longest query or question, in characters.
pub const MAX_QUERY_CHARS: usize = 4_000;
/// Most document ids or metadata conditions in one filter.
pub const MAX_FILTER_ITEMS: usize = 1_000;

/// `filters` of a search or ask body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// Only these documents.
    #[serde(default)]
    pub document_ids: Option<Vec<Uuid>>,
    /// Only documents whose metadata has these top-level values (strings, integers or booleans).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// The retrieval options of one request, as sent.
#[derive(Debug)]
pub struct QueryOptions<'a> {
    /// The body field holding the text (`query` or `question`), for messages.
    pub text_field: &'static str,
    /// The text.
    pub text: &'a str,
    /// `top_k` as sent.
    pub top_k: Option<u64>,
    /// The largest `top_k` this route accepts.
    pub max_top_k: usize,
    /// The default `top_k`.
    pub default_top_k: usize,
    /// `mode` as sent.
    pub mode: Option<SearchMode>,
    /// `filters` as sent.
    pub filters: Option<Filters>,
}

/// The searcher, the query embedder and the BM25 tokenizer (which extractive answers match terms with).
pub struct Retrieval {
    searcher: Searcher,
    embedder: Option<Arc<dyn Embedder>>,
    bm25: Arc<Bm25>,
}

impl Retrieval {
    /// Retrieval over `searcher`, embedding dense queries with `embedder` (the runtime's, so query and chunk vectors
    /// come from the same model); `bm25` is the index's own.
    pub fn new(searcher: Searcher, embedder: Option<Arc<dyn Embedder>>, bm25: Arc<Bm25>) -> Self {
        Self { searcher, embedder, bm25 }
    }

    /// The BM25 embedder the index uses.
    pub fn bm25(&self) -> &Bm25 {
        &self.bm25
    }

    /// The mode used when a request names none: hybrid when the index holds dense vectors, sparse otherwise.
    pub fn default_mode(&self) -> SearchMode {
        if self.dense_available() { SearchMode::Hybrid } else { SearchMode::Sparse }
    }

    fn dense_available(&self) -> bool {
        self.searcher.config().dense.is_some() && self.embedder.is_some()
    }

    /// Checks the options and builds the request for `tenant` (the query vector is not computed yet).
    pub fn request(&self, tenant: &str, options: QueryOptions<'_>) -> Result<SearchRequest, ApiError> {
        let field = options.text_field;
        let text = options.text.trim();
        if text.is_empty() {
            return Err(ApiError::body(field, format!("{field} must not be empty")));
        }
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::body(field, format!("{field} must be at most {MAX_QUERY_CHARS} characters")));
        }
        let max = options.max_top_k.min(MAX_TOP_K);
        let top_k = match options.top_k {
            None => options.default_top_k,
            Some(value) if (1..=max as u64).contains(&value) => value as usize,
            Some(value) => return Err(ApiError::body("top_k", format!("top_k must be from 1 to {max}, got {value}"))),
        };
        let mode = options.mode.unwrap_or_else(|| self.default_mode());
        if mode != SearchMode::Sparse && !self.dense_available() {
            return Err(ApiError::body(
                "mode",
                format!(
                    "mode {} needs an embedding model, and none is configured (set EMBEDDING_MODEL or \
                     EMBEDDING_MODEL_DIR, or use mode sparse)",
                    mode_name(mode)
                ),
            ));
        }
        let filters = options.filters.unwrap_or_default();
        let document_ids = filters.document_ids.unwrap_or_default();
        if document_ids.len() > MAX_FILTER_ITEMS {
            return Err(ApiError::body(
                "filters.document_ids",
                format!("filters.document_ids holds at most {MAX_FILTER_ITEMS} ids"),
            ));
        }
        let conditions = filters.metadata.unwrap_or_default();
        if conditions.len() > MAX_FILTER_ITEMS {
            return Err(ApiError::body(
                "filters.metadata",
                format!("filters.metadata holds at most {MAX_FILTER_ITEMS} keys"),
            ));
        }
        let mut metadata = Vec::with_capacity(conditions.len());
        for (key, value) in conditions {
            let condition = MetadataFilter { key, value };
            if let Err(error) = condition.validate() {
                let key: String = condition.key.chars().take(64).collect();
                return Err(ApiError::body(format!("filters.metadata.{key}"), error.to_string()));
            }
            metadata.push(condition);
        }
        Ok(SearchRequest {
            tenant_id: tenant.to_owned(),
            text: text.to_owned(),
            dense: None,
            mode,
            top_k,
            document_ids,
            metadata,
        })
    }

    /// Embeds the query when the mode needs it, then searches. An embedding failure is the model server's: 502.
    pub async fn search(&self, mut request: SearchRequest) -> Result<Vec<SearchHit>, ApiError> {
        if request.mode != SearchMode::Sparse {
            let embedder = self.embedder.as_ref().ok_or_else(|| {
                ApiError::body("mode", format!("mode {} needs an embedding model", mode_name(request.mode)))
            })?;
            let vectors = embedder.embed(std::slice::from_ref(&request.text)).await.map_err(|error| {
                tracing::warn!(model = embedder.model(), error = %error, "query_embedding_failed");
                ApiError::BadGateway(format!("embedding the query failed: {}", error.reason()))
            })?;
            request.dense = vectors.into_iter().next();
        }
        self.searcher.search(&request).await.map_err(ApiError::from)
    }
}

/// The mode's name as the API spells it.
pub fn mode_name(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Sparse => "sparse",
        SearchMode::Dense => "dense",
        SearchMode::Hybrid => "hybrid",
    }
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            // The handlers check every option first; what the searcher still refuses is the body's fault.
            SearchError::Invalid(reason) => Self::body("$", reason),
            SearchError::Index(IndexError::Invalid(reason)) => Self::body("filters", reason),
            SearchError::Index(error @ (IndexError::Engine { .. } | IndexError::MissingCollection(_))) => {
                Self::Unavailable(format!("the vector index failed: {error}"))
            }
            SearchError::ReadModel(error) => error.into(),
        }
    }
}
