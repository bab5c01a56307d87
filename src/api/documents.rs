//! Document commands (upload, metadata, reprocess, delete) and queries (one document, a page of documents).
//!
//! Commands go to the document's actor, which decides them against the stream and appends with the expected version
//! (`If-Match`); their responses are replayable under an `Idempotency-Key`. One document is read by folding its
//! stream; lists come from the read model (eventually consistent, by a few milliseconds).

use dossier_actors::runtime::UploadRequest;
use dossier_actors::runtime::document::CommandRequest;
use dossier_actors::runtime::error::CommandError;
use dossier_events::document::{DocumentCommand, DocumentError, Metadata};
use dossier_projections::read_model::DocumentRow;
use dossier_projections::runner::READ_MODEL;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::idempotency::{StoredResponse, fingerprint, run_once};
use crate::api::request::ApiRequest;
use crate::api::routes::PREFIX;
use crate::api::upload;
use crate::api::view::{DocumentView, Until, load, view};

/// Largest page of a list.
pub const MAX_LIMIT: u64 = 100;

/// Statuses a list can be filtered by (deleted documents are not listed).
const LISTABLE: &[&str] = &["uploaded", "parsed", "chunked", "embedded", "ready", "failed"];

fn location(id: Uuid) -> String {
    format!("{PREFIX}/documents/{id}")
}

fn document_response(status: StatusCode, view: &DocumentView) -> Result<StoredResponse, ApiError> {
    Ok(StoredResponse::json(status, view)?.with_header("etag", view.etag()).with_header("location", location(view.id)))
}

/// `POST /documents`.
pub async fn upload(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let key = request.idempotency_key()?;
    let input = upload::read(request, context.max_upload_bytes).await?;
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&input.bytes))
    };
    let print = fingerprint(
        "POST /documents",
        &json!({
            "sub": claims.sub,
            "filename": input.filename,
            "media_type": input.media_type,
            "sha256": sha256,
            "metadata": input.metadata,
        }),
    );
    run_once(context.idempotency.as_ref(), &claims.tenant, key.as_deref(), print, async {
        let event_metadata = context.event_metadata(request, claims, key.as_deref())?;
        let outcome = context
            .runtime
            .upload(UploadRequest {
                filename: input.filename,
                media_type: input.media_type,
                bytes: input.bytes,
                metadata: input.metadata,
                event_metadata,
            })
            .await?;
        if !outcome.deduplicated {
            context.metrics.record_appended(1);
        }
        // A new document's actor knows all there is to show; the existing one of a duplicate is read from the log.
        let mut view = match outcome.recorded {
            Some(recorded) if !outcome.deduplicated => {
                view(outcome.document_id, &outcome.state, recorded.first, recorded.last)?
            }
            _ => {
                let version = Until::Version(outcome.state.version);
                load(context.store.as_ref(), &claims.tenant, outcome.document_id, version).await?
            }
        };
        view.deduplicated = Some(outcome.deduplicated);
        let status = if outcome.deduplicated { StatusCode::OK } else { StatusCode::ACCEPTED };
        tracing::info!(document_id = %view.id, deduplicated = outcome.deduplicated, "document_uploaded");
        document_response(status, &view)
    })
    .await
}

/// `GET /documents/{id}`: 404 once deleted (the stream stays readable through `/events` and `/history`).
pub async fn get(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let id = request.document_id()?;
    request.query(&[])?;
    let view = load(context.store.as_ref(), &claims.tenant, id, Until::Latest).await?;
    if view.status == "deleted" {
        return Err(ApiError::DocumentNotFound(id));
    }
    Ok(document_response(StatusCode::OK, &view)?.into_response())
}

/// The body of `PATCH /documents/{id}`: keys to set, and keys to remove given as `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    metadata: Metadata,
}

/// The optional body of `POST /documents/{id}/reprocess` and `DELETE /documents/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

fn reason(request: &ApiRequest) -> Result<Option<String>, ApiError> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let body: ReasonBody = request.json()?;
    if let Some(reason) = &body.reason
        && reason.len() > 1_000
    {
        return Err(ApiError::body("reason", "reason: at most 1000 bytes"));
    }
    Ok(body.reason)
}

/// `PATCH /documents/{id}`.
pub async fn update(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let body: UpdateBody = request.json()?;
    let mut set = Metadata::new();
    let mut unset = Vec::new();
    for (key, value) in body.metadata {
        match value {
            Value::Null => unset.push(key),
            value => {
                set.insert(key, value);
            }
        }
    }
    let print = json!({ "set": set, "unset": unset });
    command(
        context,
        request,
        "PATCH /documents/{id}",
        print,
        StatusCode::OK,
        DocumentCommand::UpdateMetadata { set, unset },
    )
    .await
}

/// `POST /documents/{id}/reprocess`.
pub async fn reprocess(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let reason = reason(request)?;
    let print = json!({ "reason": reason });
    let route = "POST /documents/{id}/reprocess";
    command(context, request, route, print, StatusCode::ACCEPTED, DocumentCommand::RequestReprocess { reason }).await
}

/// `DELETE /documents/{id}`.
pub async fn delete(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let reason = reason(request)?;
    let print = json!({ "reason": reason });
    command(context, request, "DELETE /documents/{id}", print, StatusCode::ACCEPTED, DocumentCommand::Delete { reason })
        .await
}

/// Sends one command to a document: idempotent under a key, conditional under `If-Match`.
async fn command(
    context: &ApiContext,
    request: &ApiRequest,
    route: &str,
    body: Value,
    status: StatusCode,
    command: DocumentCommand,
) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let id = request.document_id()?;
    request.query(&[])?;
    let key = request.idempotency_key()?;
    let expected_version = request.if_match()?;
    // The subject is part of the request: a key is not a way to read another user's response.
    let print = fingerprint(route, &json!({ "sub": claims.sub, "id": id, "if_match": expected_version, "body": body }));
    run_once(context.idempotency.as_ref(), &claims.tenant, key.as_deref(), print, async {
        let metadata = context.event_metadata(request, claims, key.as_deref())?;
        let outcome = context
            .runtime
            .execute(CommandRequest { document_id: id, command, metadata, expected_version })
            .await
            .map_err(|error| match error {
                CommandError::Rejected(DocumentError::NotFound) => ApiError::DocumentNotFound(id),
                other => other.into(),
            })?;
        context.metrics.record_appended(outcome.appended);
        let view = load(context.store.as_ref(), &claims.tenant, id, Until::Version(outcome.state.version)).await?;
        tracing::info!(document_id = %id, route, appended = outcome.appended, "document_command");
        document_response(status, &view)
    })
    .await
}

/// A document in a list.
#[derive(Debug, Serialize)]
pub struct ListedDocument {
    /// The document's id.
    pub id: Uuid,
    /// Its status.
    pub status: String,
    /// The stream version the read model has applied.
    pub version: u64,
    /// The uploaded file's name.
    pub filename: String,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// SHA-256 of its bytes.
    pub sha256: String,
    /// User metadata.
    pub metadata: Metadata,
    /// Chunks of the current run.
    pub chunk_count: u32,
    /// Why processing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it was uploaded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its last event was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<DocumentRow> for ListedDocument {
    fn from(row: DocumentRow) -> Self {
        Self {
            id: row.document_id,
            status: row.status,
            version: row.stream_version,
            filename: row.filename,
            media_type: row.media_type,
            size_bytes: row.size_bytes,
            sha256: row.sha256,
            metadata: row.metadata,
            chunk_count: row.chunk_count,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of documents.
#[derive(Debug, Serialize)]
pub struct DocumentList {
    /// The documents, oldest first.
    pub documents: Vec<ListedDocument>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a list cursor carries (signed, so it cannot be forged or used with another tenant or filter).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Cursor {
    tenant: String,
    status: Option<String>,
    after: Uuid,
}

/// `GET /documents?status=&limit=&cursor=`.
pub async fn list(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let claims = request.claims()?;
    let query = request.query(&["status", "limit", "cursor"])?;
    let limit = query.integer("limit", 1..=MAX_LIMIT, 20)?;
    let status = query.get("status").map(str::to_owned);
    if let Some(status) = &status
        && !LISTABLE.contains(&status.as_str())
    {
        return Err(ApiError::query("status", format!("must be one of {}", LISTABLE.join(", "))));
    }
    let after = match query.get("cursor") {
        None => None,
        Some(raw) => {
            let invalid =
                || ApiError::query("cursor", "not a cursor this listing returned (forged, or from another query)");
            let cursor: Cursor =
                context.keys.open(raw).and_then(|payload| serde_json::from_slice(&payload).ok()).ok_or_else(invalid)?;
            if cursor.tenant != claims.tenant || cursor.status != status {
                return Err(invalid());
            }
            Some(cursor.after)
        }
    };
    let generation = context.read_model.live_generation(READ_MODEL).await?;
    let page =
        context.read_model.list_documents(generation, &claims.tenant, status.as_deref(), after, limit as usize).await?;
    let next_cursor = page
        .next_after
        .map(|after| {
            let cursor = Cursor { tenant: claims.tenant.clone(), status, after };
            serde_json::to_vec(&cursor).map(|payload| context.keys.sign(&payload))
        })
        .transpose()
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    let list = DocumentList { documents: page.documents.into_iter().map(Into::into).collect(), next_cursor };
    Ok(StoredResponse::json(StatusCode::OK, &list)?.into_response())
}
