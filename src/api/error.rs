//! One error type for the whole API and its single mapping to HTTP: an RFC 9457 `application/problem+json` body
//! with `type`, `title`, `status`, `detail` and a stable machine `code`.
//!
//! Every failure a client can see goes through [`ApiError::status_and_code`], an exhaustive `match`; warp's own
//! rejections (unknown route, wrong method, oversized body) are turned into an `ApiError` by [`recover`].

use std::convert::Infallible;

use dossier_actors::runtime::error::CommandError;
use dossier_events::StoreError;
use dossier_events::document::DocumentError;
use dossier_projections::read_model::ReadModelError;
use serde::Serialize;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

/// The content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything an API call can fail with. Nothing is written by a request that fails with any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the route accepts (malformed JSON, a wrong type, an unknown or missing field).
    #[error("{detail}")]
    InvalidBody {
        /// The field at fault (`$` for the body as a whole).
        field: String,
        /// What is wrong, naming the field.
        detail: String,
    },
    /// A header is malformed.
    #[error("invalid header {header}: {reason}")]
    InvalidHeader {
        /// The header's name.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A query parameter is malformed, unknown or out of range.
    #[error("invalid query parameter {parameter}: {reason}")]
    InvalidQuery {
        /// The parameter's name.
        parameter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A path segment is malformed (e.g. a document id that is not a UUID).
    #[error("invalid path parameter {parameter}: {reason}")]
    InvalidPath {
        /// The parameter's name.
        parameter: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request has no valid bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The token is valid but lacks the role the route needs.
    #[error("this route needs the {required} role; the token has {held}")]
    Forbidden {
        /// The role needed.
        required: &'static str,
        /// The roles held.
        held: String,
    },
    /// The document does not exist in the caller's tenant (or was deleted).
    #[error("no document {0} in this tenant")]
    DocumentNotFound(uuid::Uuid),
    /// Something else named in the path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No route has this path.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// The route exists but not with this method.
    #[error("this route does not accept the request's method")]
    MethodNotAllowed,
    /// The command does not fit the document's current state.
    #[error("{0}")]
    InvalidState(String),
    /// Concurrent writers kept changing the document; the command may be sent again.
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named another version than the document's.
    #[error("If-Match expected version {expected}, but the document is at version {actual}")]
    PreconditionFailed {
        /// The version the caller expected.
        expected: u64,
        /// The document's version.
        actual: u64,
    },
    /// The body or the uploaded file is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body's content type is not one the route accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The `Idempotency-Key` was used before in the tenant for a different request.
    #[error("Idempotency-Key {0:?} was already used for a different request")]
    IdempotencyMismatch(String),
    /// A request with the same `Idempotency-Key` is still being carried out.
    #[error("a request with Idempotency-Key {0:?} is still in progress; retry later")]
    IdempotencyInProgress(String),
    /// The caller sent too many requests.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
    /// A backend is not answering or contended; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A model server (`LLM_BASE_URL`: the chat or the embedding model) failed or answered something unusable.
    #[error("{0}")]
    BadGateway(String),
    /// A model server gave no complete answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A bug or a corrupt store: logged with its cause, reported without details.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A body error naming its field.
    pub fn body(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidBody { field: field.into(), detail: detail.into() }
    }

    /// A query error naming its parameter.
    pub fn query(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidQuery { parameter: parameter.into(), reason: reason.into() }
    }

    /// The HTTP status and the stable machine code: the single place where errors meet HTTP.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidBody { .. } => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::InvalidHeader { .. } => (StatusCode::BAD_REQUEST, "invalid_header"),
            Self::InvalidQuery { .. } => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidPath { .. } => (StatusCode::BAD_REQUEST, "invalid_path"),
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            Self::DocumentNotFound(_) => (StatusCode::NOT_FOUND, "document_not_found"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::RouteNotFound(_) => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PreconditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::IdempotencyMismatch(_) => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            Self::IdempotencyInProgress(_) => (StatusCode::CONFLICT, "idempotency_key_in_progress"),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            Self::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The problem body.
    pub fn problem(&self, request_id: Option<&str>) -> Problem {
        let (status, code) = self.status_and_code();
        let detail = match self {
            // The cause is in the log; the client gets the request id to quote.
            Self::Internal(_) => "an internal error occurred; quote the request id when reporting it".to_owned(),
            other => other.to_string(),
        };
        Problem {
            r#type: format!("urn:dossier:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code,
            field: match self {
                Self::InvalidBody { field, .. } => Some(field.clone()),
                Self::InvalidQuery { parameter, .. } => Some(parameter.clone()),
                Self::InvalidPath { parameter, .. } => Some((*parameter).to_owned()),
                Self::InvalidHeader { header, .. } => Some(header.clone()),
                _ => None,
            },
            request_id: request_id.map(str::to_owned),
        }
    }

    /// The full HTTP response.
    pub fn into_response(self, request_id: Option<&str>) -> warp::reply::Response {
        let (status, _) = self.status_and_code();
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, request_id, "request_failed");
        }
        let body = serde_json::to_vec(&self.problem(request_id)).unwrap_or_default();
        let mut response = warp::reply::Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            Self::Unauthenticated(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests { retry_after_secs } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

impl warp::reject::Reject for ApiError {}

/// An RFC 9457 problem body.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    pub r#type: String,
    /// The status's reason phrase.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// What went wrong, for a program; stable across releases.
    pub code: &'static str,
    /// The field, parameter or header at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The request's id (also in `X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => Self::Conflict(format!("{error}; send the command again")),
            StoreError::IdempotencyMismatch { key, .. } => Self::IdempotencyMismatch(key),
            StoreError::Invalid(reason) => Self::body("$", reason),
            StoreError::Unavailable(_) | StoreError::Closed => Self::Unavailable(error.to_string()),
            StoreError::Corrupt { .. } | StoreError::Database { .. } => Self::Internal(error.to_string()),
        }
    }
}

impl From<ReadModelError> for ApiError {
    fn from(error: ReadModelError) -> Self {
        match error {
            ReadModelError::Fenced { .. } => Self::Unavailable(error.to_string()),
            ReadModelError::Database(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejected) => rejected.into(),
            CommandError::VersionMismatch { expected, actual } => Self::PreconditionFailed { expected, actual },
            CommandError::Contended(_) => Self::Conflict(error.to_string()),
            // The API checks the size limit itself (413) before the runtime sees the file.
            CommandError::InvalidUpload(reason) => Self::body("file", reason),
            CommandError::Store(store) => store.into(),
            CommandError::Unavailable(_) => Self::Unavailable(error.to_string()),
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(error: DocumentError) -> Self {
        let detail = error.to_string();
        match error {
            DocumentError::InvalidFilename { .. } => Self::body("filename", detail),
            DocumentError::InvalidMediaType { .. } => Self::body("media_type", detail),
            DocumentError::InvalidMetadataKey { .. } | DocumentError::MetadataKeySetAndUnset { .. } => {
                Self::body("metadata", detail)
            }
            DocumentError::EmptyField { field } => Self::body(field, detail),
            DocumentError::NotFound => Self::NotFound("no such document in this tenant".into()),
            DocumentError::Deleted
            | DocumentError::AlreadyExists { .. }
            | DocumentError::ReprocessNotAllowed { .. }
            | DocumentError::ParseNotExpected { .. }
            | DocumentError::ChunksWithoutParse { .. }
            | DocumentError::EmbeddingsWithoutChunks { .. }
            | DocumentError::NotReadyToComplete { .. }
            | DocumentError::NotProcessing { .. }
            | DocumentError::WrongStage { .. }
            | DocumentError::AttemptOutOfSequence { .. } => Self::InvalidState(detail),
            DocumentError::InvalidDigest { .. }
            | DocumentError::InvalidRetryAt { .. }
            | DocumentError::NoChunks
            | DocumentError::InvalidChunker { .. }
            | DocumentError::ChunkOutOfOrder { .. }
            | DocumentError::InvalidChunkRange { .. }
            | DocumentError::ChunkOutsideText { .. }
            | DocumentError::ZeroDimensions
            | DocumentError::VectorCountMismatch { .. }
            | DocumentError::VectorDimensionMismatch { .. }
            | DocumentError::NonFiniteVector { .. }
            | DocumentError::UnknownEventType { .. }
            | DocumentError::UnsupportedSchemaVersion { .. }
            | DocumentError::MalformedEvent { .. }
            | DocumentError::Encode { .. } => Self::Internal(detail),
        }
    }
}

/// Renders every rejection that reaches the top of the router as a problem: our own [`ApiError`]s, and warp's
/// (unknown route, wrong method, body too large, unreadable body).
pub async fn recover(rejection: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let error = if let Some(error) = rejection.find::<ApiError>() {
        error.clone()
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge("the request body is larger than this route accepts".into())
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::InvalidHeader { header: "Content-Length".into(), reason: "this route needs a Content-Length".into() }
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.is_not_found() {
        ApiError::RouteNotFound("this path".into())
    } else {
        // A body that could not be read (the client went away mid-upload) and the like.
        ApiError::body("$", format!("the request could not be read: {rejection:?}"))
    };
    Ok(error.into_response(None))
}
