//! `POST /search`: the caller's tenant's ready chunks that best match a query, by BM25, the dense embedding or both
//! fused (see [`crate::api::retrieval`]).

use std::time::Instant;

use dossier_projections::vector::{SearchHit, SearchMode};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;
use crate::api::request::ApiRequest;
use crate::api::retrieval::{Filters, QueryOptions, mode_name};

/// Results when the body names no `top_k`.
pub const DEFAULT_TOP_K: usize = 10;

/// The body of `POST /search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// What to look for.
    pub query: String,
    /// Results wanted (1 to 1000, default 10).
    #[serde(default)]
    pub top_k: Option<u64>,
    /// `sparse`, `dense` or `hybrid` (default: hybrid when an embedding model is configured, else sparse).
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Only some documents.
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// The answer of `POST /search`.
#[derive(Debug, Serialize)]
pub struct SearchResponse {
    /// The chunks found, best first.
    pub results: Vec<SearchHit>,
    /// The mode used.
    pub mode: &'static str,
    /// Time taken, in milliseconds.
    pub took_ms: u64,
}

/// `POST /search` (reader).
pub async fn search(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let started = Instant::now();
    let claims = request.claims()?;
    request.query(&[])?;
    let body: SearchBody = request.json()?;
    let options = QueryOptions {
        text_field: "query",
        text: &body.query,
        top_k: body.top_k,
        max_top_k: dossier_projections::vector::search::MAX_TOP_K,
        default_top_k: DEFAULT_TOP_K,
        mode: body.mode,
        filters: body.filters,
    };
    let search = context.retrieval.request(&claims.tenant, options)?;
    let mode = search.mode;
    let results = context.retrieval.search(search).await?;
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(tenant = %claims.tenant, mode = mode_name(mode), hits = results.len(), took_ms, "searched");
    let response = SearchResponse { results, mode: mode_name(mode), took_ms };
    Ok(StoredResponse::json(StatusCode::OK, &response)?.into_response())
}
