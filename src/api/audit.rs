//! The audit trail: a document's stream with full metadata and hashes, its state at any past version or instant,
//! the tenant's events in global order (paged, or live as server-sent events) and verification of the hash chains.

use std::convert::Infallible;
use std::time::Duration;

use dossier_events::document::{ChunksEmbedded, DocumentPayload};
use dossier_events::verify::{BadEvent, verify_log};
use dossier_events::{EventData, EventMetadata, Hash, RecordedEvent, StreamId};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;
use crate::api::request::{ApiRequest, header_text};
use crate::api::view::{DocumentView, Until, load};

/// Largest page of events.
pub const MAX_EVENTS: u64 = 1_000;

/// Events scanned at most for one page of `/events` (the log is shared by tenants, so a page may hold fewer events
/// than asked; `next_after` always moves on).
const MAX_SCAN: usize = 10_000;

/// An event as the audit trail shows it.
#[derive(Debug, Serialize)]
pub struct AuditEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: StreamId,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// Its type.
    pub event_type: String,
    /// Its payload's schema version.
    pub schema_version: u32,
    /// The payload (vectors summarised unless asked for).
    pub data: AuditData,
    /// Who, for whom, as part of which request.
    pub metadata: std::sync::Arc<EventMetadata>,
    /// When it was committed.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The previous event's hash in the stream.
    pub prev_hash: Hash,
    /// This event's hash.
    pub hash: Hash,
}

/// A payload in the audit trail.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum AuditData {
    /// As recorded.
    Recorded(EventData),
    /// A `ChunksEmbedded` payload with its vectors summarised.
    Embedded(EmbeddedSummary),
}

/// A `ChunksEmbedded` payload without the vectors themselves.
#[derive(Debug, Serialize)]
pub struct EmbeddedSummary {
    /// The model.
    pub model: String,
    /// Vector length.
    pub dimensions: u32,
    /// What the vectors were.
    pub vectors: VectorsSummary,
}

/// Stands in for a list of vectors.
#[derive(Debug, Serialize)]
pub struct VectorsSummary {
    /// How many.
    pub count: usize,
    /// SHA-256 over the encoded vectors in order, each followed by a newline.
    pub sha256: String,
    /// Always true: ask with `include=vectors` for the vectors (and a payload that hashes to `hash`).
    pub omitted: bool,
}

impl AuditEvent {
    fn new(event: RecordedEvent, include_vectors: bool) -> Self {
        let data = if !include_vectors && event.event_type == ChunksEmbedded::EVENT_TYPE {
            match event.data.parse::<ChunksEmbedded>() {
                Ok(embedded) => {
                    let mut hasher = Sha256::new();
                    for vector in &embedded.vectors {
                        hasher.update(vector.as_bytes());
                        hasher.update(b"\n");
                    }
                    AuditData::Embedded(EmbeddedSummary {
                        model: embedded.model,
                        dimensions: embedded.dimensions,
                        vectors: VectorsSummary {
                            count: embedded.vectors.len(),
                            sha256: hex::encode(hasher.finalize()),
                            omitted: true,
                        },
                    })
                }
                Err(_) => AuditData::Recorded(event.data),
            }
        } else {
            AuditData::Recorded(event.data)
        };
        Self {
            event_id: event.event_id,
            stream_id: event.stream_id,
            version: event.version,
            position: event.position,
            event_type: event.event_type,
            schema_version: event.schema_version,
            data,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
            prev_hash: event.prev_hash,
            hash: event.hash,
        }
    }
}

/// A page of a document's stream.
#[derive(Debug, Serialize)]
pub struct StreamPage {
    /// The document.
    pub document_id: Uuid,
    /// The events, by version.
    pub events: Vec<AuditEvent>,
    /// Pass as `after_version` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_version: Option<u64>,
}

fn include_vectors(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some("vectors") => Ok(true),
        Some(_) => Err(ApiError::query("include", "the only value is `vectors`")),
    }
}

/// `GET /documents/{id}/events?after_version=&limit=&include=vectors`: deleted documents included.
pub async fn document_events(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let id = request.document_id()?;
    let query = request.query(&["after_version", "limit", "include"])?;
    let after = query.integer("after_version", 0..=u64::MAX - 1, 0)?;
    let limit = query.integer("limit", 1..=MAX_EVENTS, 100)? as usize;
    let include_vectors = include_vectors(query.get("include"))?;
    let stream = StreamId::for_document(id);
    let first = context.store.read_stream(&stream, 1, 1).await?;
    if first.first().is_none_or(|event| event.metadata.tenant_id != claims.tenant) {
        return Err(ApiError::DocumentNotFound(id));
    }
    let mut events = context.store.read_stream(&stream, after + 1, limit + 1).await?;
    let more = events.len() > limit;
    events.truncate(limit);
    let next_after_version = if more { events.last().map(|event| event.version) } else { None };
    let page = StreamPage {
        document_id: id,
        events: events.into_iter().map(|event| AuditEvent::new(event, include_vectors)).collect(),
        next_after_version,
    };
    Ok(StoredResponse::json(StatusCode::OK, &page)?.into_response())
}

/// `GET /documents/{id}/history?version=N` or `?at=RFC3339`: the document replayed to that point.
pub async fn history(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let id = request.document_id()?;
    let query = request.query(&["version", "at"])?;
    let until = match (query.get("version"), query.get("at")) {
        (Some(_), None) => Until::Version(query.integer("version", 1..=u64::MAX, 1)?),
        (None, Some(at)) => Until::At(
            OffsetDateTime::parse(at, &Rfc3339)
                .map_err(|error| ApiError::query("at", format!("must be an RFC 3339 time: {error}")))?,
        ),
        (Some(_), Some(_)) => return Err(ApiError::query("at", "give either version or at, not both")),
        (None, None) => return Err(ApiError::query("version", "give version=N or at=RFC3339")),
    };
    let view: DocumentView = load(context.store.as_ref(), &claims.tenant, id, until).await?;
    Ok(StoredResponse::json(StatusCode::OK, &view)?.with_header("etag", view.etag()).into_response())
}

/// A page of the global log.
#[derive(Debug, Serialize)]
pub struct LogPage {
    /// The tenant's events in position order.
    pub events: Vec<AuditEvent>,
    /// Pass as `after` for the next page (the last position looked at).
    pub next_after: u64,
    /// The log's head when the page was read.
    pub head: u64,
}

/// `GET /events?after=&limit=` (admin): the tenant's events in global order.
pub async fn global_events(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let query = request.query(&["after", "limit", "include"])?;
    let mut after = query.integer("after", 0..=u64::MAX - 1, 0)?;
    let limit = query.integer("limit", 1..=MAX_EVENTS, 100)? as usize;
    let include_vectors = include_vectors(query.get("include"))?;
    let head = context.store.head_position().await?;
    let mut events = Vec::new();
    let mut scanned = 0;
    while events.len() < limit && scanned < MAX_SCAN && after < head {
        let page = context.store.read_all(after, limit.max(100)).await?;
        if page.is_empty() {
            break;
        }
        for event in page {
            scanned += 1;
            after = event.position;
            if event.metadata.tenant_id == claims.tenant {
                events.push(AuditEvent::new(event, include_vectors));
                if events.len() == limit {
                    break;
                }
            }
        }
    }
    let page = LogPage { events, next_after: after, head };
    Ok(StoredResponse::json(StatusCode::OK, &page)?.into_response())
}

/// `GET /events/live` (admin): the tenant's new events as server-sent events, each with `id` = its position;
/// `Last-Event-ID` (or `after`) resumes after a position, otherwise it starts at the head.
pub async fn live_events(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    use warp::Reply;
    let claims = request.claims()?;
    let query = request.query(&["after", "include"])?;
    let include_vectors = include_vectors(query.get("include"))?;
    let resume = match header_text(&request.headers, "Last-Event-ID")? {
        Some(id) => Some(id.trim().parse::<u64>().map_err(|_| ApiError::InvalidHeader {
            header: "Last-Event-ID".into(),
            reason: "must be an event position (a non-negative integer)".into(),
        })?),
        None => query.get("after").map(|_| query.integer("after", 0..=u64::MAX - 1, 0)).transpose()?,
    };
    let after = match resume {
        Some(after) => after,
        None => context.store.head_position().await?,
    };
    let tenant = claims.tenant.clone();
    let mut shutdown = context.shutdown.clone();
    let stopping = async move {
        // Ends the stream when the server shuts down, so graceful shutdown does not wait on it.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let followed = context.live.follow(after);
    let events = futures::stream::unfold(followed, |mut followed| async move {
        followed.recv().await.map(|event| (event, followed))
    })
    .take_until(Box::pin(stopping))
    .filter(move |event| std::future::ready(event.metadata.tenant_id == tenant))
    .filter_map(move |event| async move {
        let id = event.position.to_string();
        let name = event.event_type.clone();
        let audit = AuditEvent::new(RecordedEvent::clone(&event), include_vectors);
        warp::sse::Event::default().id(id).event(name).json_data(audit).ok().map(Ok::<_, Infallible>)
    });
    let keep_alive = warp::sse::keep_alive().interval(Duration::from_secs(15));
    Ok(warp::sse::reply(keep_alive.stream(events)).into_response())
}

/// The result of `GET /audit/verify`.
#[derive(Debug, Serialize)]
pub struct VerifyResponse {
    /// True when every chain and the global order check out.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Streams seen.
    pub streams: u64,
    /// The first bad event, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadEvent>,
}

/// `GET /audit/verify` (admin): every stream's hash chain and the global order, with the first bad event. The
/// chain spans the whole log, so this checks every tenant's streams (and names the bad one's stream).
pub async fn verify(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    request.claims()?;
    request.query(&[])?;
    let report = verify_log(context.store.as_ref()).await?;
    let response = VerifyResponse {
        ok: report.first_bad.is_none(),
        events: report.events,
        streams: report.streams,
        first_bad: report.first_bad,
    };
    if let Some(bad) = &response.first_bad {
        tracing::error!(bad = %bad, "audit_verification_failed");
    }
    Ok(StoredResponse::json(StatusCode::OK, &response)?.into_response())
}
