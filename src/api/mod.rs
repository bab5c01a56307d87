//! The HTTP API (`/api/v1/...`), served by warp.
//!
//! One filter takes every request apart (method, path, query, headers, body stream) and hands it to [`handle`],
//! which resolves the route from the table in [`routes`], authenticates and authorises the caller ([`auth`]),
//! applies the per-subject rate limit ([`rate_limit`]), reads the body up to the route's limit and dispatches to the
//! resource's handler ([`documents`], [`audit`], [`search`], [`ask`], [`projections`], [`health`], [`metrics`],
//! [`openapi`]). Every
//! failure on the way is an [`ApiError`](error::ApiError) rendered as `application/problem+json`; every response
//! carries `X-Request-Id` and is counted in the metrics.
//!
//! Threading: handlers are plain async functions on the server's tokio runtime; the shared [`ApiContext`] is
//! immutable apart from its internally synchronised parts (metrics, rate limiter, rebuild registry).

pub mod ask;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod context;
pub mod documents;
pub mod error;
pub mod extractive;
pub mod health;
pub mod idempotency;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod projections;
pub mod rate_limit;
pub mod request;
pub mod retrieval;
pub mod routes;
pub mod search;
pub mod upload;
pub mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::Filter;
use warp::http::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue};
use warp::http::{HeaderMap, Method};

pub use context::ApiContext;
use error::ApiError;
use request::ApiRequest;
use routes::Endpoint;

/// Largest body of any route but the upload, in bytes.
const MAX_BODY: usize = 1024 * 1024;

/// The whole API as one warp filter.
pub fn filter(
    context: Arc<ApiContext>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(warp::any().map(move || Arc::clone(&context)))
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             body,
             context: Arc<ApiContext>| async move {
                handle(context, method, path.as_str().to_owned(), query, headers, Box::pin(body)).await
            },
        )
        .recover(error::recover)
        .unify()
}

/// Answers one request.
async fn handle<S, B>(
    context: Arc<ApiContext>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let started = Instant::now();
    let checked = request::check_headers(&headers).and_then(|()| request::request_id(&headers));
    let (request_id, mut response) = match checked {
        Ok(request_id) => {
            let response =
                match respond(&context, method.clone(), path.clone(), query, headers, body, &request_id).await {
                    Ok(response) => response,
                    Err(error) => error.into_response(Some(&request_id)),
                };
            (request_id, response)
        }
        Err(error) => {
            let request_id = uuid::Uuid::now_v7().to_string();
            let response = error.into_response(Some(&request_id));
            (request_id, response)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let route = routes::label(&path);
    let took = started.elapsed();
    context.metrics.record_request(&method, route, status, took);
    let duration_ms = took.as_secs_f64() * 1_000.0;
    tracing::info!(method = %method, route, status, duration_ms, request_id = %request_id, "http_request");
    response
}

async fn respond<S, B>(
    context: &ApiContext,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: S,
    request_id: &str,
) -> Result<warp::reply::Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let matched = routes::resolve(&method, &path)?;
    let claims = match matched.route.role {
        None => None,
        Some(role) => {
            let authorization = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
            let claims = context.keys.authenticate(authorization, time::OffsetDateTime::now_utc())?;
            claims.require(role)?;
            context.rate_limiter.check(&claims.tenant, &claims.sub).await?;
            Some(claims)
        }
    };
    let limit = match matched.route.endpoint {
        // Room for the file in base64 (4 bytes per 3) or multipart framing, and its metadata.
        Endpoint::UploadDocument => context.max_upload_bytes.saturating_mul(4) / 3 + 64 * 1024,
        _ => MAX_BODY,
    };
    let body = read_body(body, &headers, limit).await?;
    let request = ApiRequest {
        method,
        path,
        query,
        headers,
        body,
        request_id: request_id.to_owned(),
        params: matched.params,
        claims,
    };
    dispatch(context, matched.route.endpoint, &request).await
}

/// Calls the endpoint's handler.
async fn dispatch(
    context: &ApiContext,
    endpoint: Endpoint,
    request: &ApiRequest,
) -> Result<warp::reply::Response, ApiError> {
    match endpoint {
        Endpoint::Health => health::health(context).await,
        Endpoint::Metrics => {
            let head = context.store.head_position().await?;
            let projections: Vec<_> = context
                .projections
                .iter()
                .map(|handle| (handle.status.borrow().clone(), *handle.running_here.borrow()))
                .collect();
            let documents = context.runtime.stats().await.ok();
            let text = context.metrics.render(head, &projections, context.live.followers(), documents);
            let mut response = warp::reply::Response::new(text.into());
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            Ok(response)
        }
        Endpoint::OpenApi => openapi::serve(),
        Endpoint::UploadDocument => documents::upload(context, request).await,
        Endpoint::ListDocuments => documents::list(context, request).await,
        Endpoint::GetDocument => documents::get(context, request).await,
        Endpoint::UpdateDocument => documents::update(context, request).await,
        Endpoint::DeleteDocument => documents::delete(context, request).await,
        Endpoint::ReprocessDocument => documents::reprocess(context, request).await,
        Endpoint::DocumentEvents => audit::document_events(context, request).await,
        Endpoint::DocumentHistory => audit::history(context, request).await,
        Endpoint::GlobalEvents => audit::global_events(context, request).await,
        Endpoint::LiveEvents => audit::live_events(context, request).await,
        Endpoint::VerifyAudit => audit::verify(context, request).await,
        Endpoint::ListProjections => projections::list(context, request).await,
        Endpoint::RebuildProjection => projections::rebuild(context, request).await,
        Endpoint::Search => search::search(context, request).await,
        Endpoint::Ask => ask::ask(context, request).await,
    }
}

/// How much of a refused body is read and thrown away before the 413 goes out. Closing a connection with unread
/// request data resets it, and most clients then lose the response; a body far over this is cut off instead.
const DRAIN_LIMIT: u64 = 8 * 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] more bytes of a refused body.
async fn drain<S, B>(body: &mut S)
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut budget = DRAIN_LIMIT;
    while budget > 0 {
        match body.next().await {
            Some(Ok(chunk)) => budget = budget.saturating_sub(chunk.remaining() as u64),
            _ => return,
        }
    }
}

/// Reads the body, refusing it with 413 as soon as it is known to exceed `limit` (from `Content-Length`, or while
/// reading a chunked body); what is left of a refused body is drained first (see [`DRAIN_LIMIT`]).
async fn read_body<S, B>(mut body: S, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large =
        || ApiError::PayloadTooLarge(format!("the request body is over this route's limit of {limit} bytes"));
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let length = length.to_str().ok().and_then(|text| text.parse::<u64>().ok()).ok_or_else(|| {
            ApiError::InvalidHeader { header: "Content-Length".into(), reason: "must be a non-negative integer".into() }
        })?;
        if length > limit as u64 {
            if length <= limit as u64 + DRAIN_LIMIT {
                drain(&mut body).await;
            }
            return Err(too_large());
        }
    }
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| ApiError::body("$", format!("the body could not be read: {error}")))?;
        if buffer.len() + chunk.remaining() > limit {
            drain(&mut body).await;
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let length = part.len();
            buffer.extend_from_slice(part);
            chunk.advance(length);
        }
    }
    Ok(buffer.freeze())
}
