//! `GET /openapi.json`: an OpenAPI 3.0 document generated from the route table, so every served route is in it
//! and nothing else is.

use serde_json::{Map, Value, json};
use warp::http::StatusCode;

use crate::api::error::ApiError;
use crate::api::idempotency::StoredResponse;
use crate::api::routes::{Endpoint, PREFIX, ROUTES, Route};

/// What the OpenAPI document says of an endpoint beyond its route.
struct EndpointDoc {
    /// Query parameters: (name, schema type, description).
    query: &'static [(&'static str, &'static str, &'static str)],
    /// The success status.
    status: StatusCode,
    /// Whether it is a command (takes `Idempotency-Key`, and `If-Match` on an existing document).
    command: bool,
    /// The request body.
    body: Option<Value>,
}

const EVENTS_LIMIT: (&str, &str, &str) = ("limit", "integer", "1 to 1000 (default 100)");
const INCLUDE: (&str, &str, &str) = ("include", "string", "`vectors` to include embedding vectors");

fn doc(endpoint: Endpoint) -> EndpointDoc {
    let read = |query| EndpointDoc { query, status: StatusCode::OK, command: false, body: None };
    let command = |status, body| EndpointDoc { query: &[], status, command: true, body: Some(body) };
    let reason = json!({
        "required": false,
        "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false, "properties": {"reason": {"type": "string"}}
        }}}
    });
    let query_body = |properties: Value, required: &str| EndpointDoc {
        query: &[],
        status: StatusCode::OK,
        command: false,
        body: Some(json!({
            "required": true,
            "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false, "required": [required], "properties": properties
            }}}
        })),
    };
    let filters = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "document_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
            "metadata": {"type": "object", "description": "top-level metadata values to match: strings, integers, booleans"}
        }
    });
    match endpoint {
        Endpoint::Health
        | Endpoint::Metrics
        | Endpoint::OpenApi
        | Endpoint::GetDocument
        | Endpoint::VerifyAudit
        | Endpoint::ListProjections => read(&[]),
        Endpoint::ListDocuments => read(&[
            ("status", "string", "uploaded, parsed, chunked, embedded, ready or failed"),
            ("limit", "integer", "1 to 100 (default 20)"),
            ("cursor", "string", "next_cursor of the previous page"),
        ]),
        Endpoint::DocumentEvents => {
            read(&[("after_version", "integer", "events after this stream version"), EVENTS_LIMIT, INCLUDE])
        }
        Endpoint::DocumentHistory => read(&[
            ("version", "integer", "replay up to this stream version"),
            ("at", "string", "replay events recorded up to this RFC 3339 time"),
        ]),
        Endpoint::GlobalEvents => {
            read(&[("after", "integer", "events after this global position"), EVENTS_LIMIT, INCLUDE])
        }
        Endpoint::LiveEvents => {
            read(&[("after", "integer", "resume after this position (Last-Event-ID wins)"), INCLUDE])
        }
        Endpoint::UploadDocument => command(
            StatusCode::ACCEPTED,
            json!({
                "required": true,
                "content": {
                    "application/json": {"schema": {
                        "type": "object", "additionalProperties": false, "required": ["filename"],
                        "properties": {
                            "filename": {"type": "string"},
                            "text": {"type": "string"},
                            "content_base64": {"type": "string", "format": "byte"},
                            "media_type": {"type": "string"},
                            "metadata": {"type": "object"}
                        }
                    }},
                    "multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "metadata": {"type": "string", "description": "a JSON object"}
                        }
                    }}
                }
            }),
        ),
        Endpoint::UpdateDocument => command(
            StatusCode::OK,
            json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": false, "required": ["metadata"],
                    "properties": {"metadata": {"type": "object", "description": "keys to set; null removes a key"}}
                }}}
            }),
        ),
        Endpoint::DeleteDocument | Endpoint::ReprocessDocument => command(StatusCode::ACCEPTED, reason),
        Endpoint::RebuildProjection => {
            EndpointDoc { query: &[], status: StatusCode::ACCEPTED, command: false, body: None }
        }
        Endpoint::Search => query_body(
            json!({
                "query": {"type": "string", "description": "what to look for (1 to 4000 characters)"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                "mode": {"type": "string", "enum": ["sparse", "dense", "hybrid"],
                         "description": "default: hybrid when an embedding model is configured, else sparse"},
                "filters": filters,
            }),
            "query",
        ),
        Endpoint::Ask => query_body(
            json!({
                "question": {"type": "string", "description": "1 to 4000 characters"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
                "stream": {"type": "boolean", "description": "answer as server-sent events: citations, delta..., done \
                           (also with Accept: text/event-stream)"},
                "filters": filters,
            }),
            "question",
        ),
    }
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let doc = doc(route.endpoint);
    for (name, kind, description) in doc.query {
        parameters.push(json!({"name": name, "in": "query", "required": false, "description": description,
                               "schema": {"type": kind}}));
    }
    let status = doc.status;
    if doc.command {
        parameters
            .push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string"},
                               "description": "same key and request: the same response; another request: 422"}));
        if route.endpoint != Endpoint::UploadDocument {
            parameters
                .push(json!({"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"},
                                   "description": "the document's ETag; another version: 412"}));
        }
    }
    let mut responses = Map::new();
    responses.insert(status.as_u16().to_string(), json!({"description": status.canonical_reason().unwrap_or("OK")}));
    responses.insert(
        "default".into(),
        json!({"description": "an error", "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
    );
    let mut operation = json!({
        "operationId": format!("{:?}", route.endpoint),
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(role) = route.role {
        operation["security"] = json!([{"bearer": []}]);
        operation["description"] = json!(format!("Needs the {role} role."));
    } else {
        operation["security"] = json!([]);
    }
    if let Some(body) = doc.body {
        operation["requestBody"] = body;
    }
    operation
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let path = paths.entry(format!("{PREFIX}{}", route.path)).or_insert_with(|| json!({}));
        path[route.method.to_ascii_lowercase()] = operation(route);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "dossier", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event-sourced document ingestion and retrieval"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Problem": {
                "type": "object", "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "code": {"type": "string"}, "field": {"type": "string"},
                    "request_id": {"type": "string"}
                }
            }}
        }
    })
}

/// `GET /openapi.json`.
pub fn serve() -> Result<warp::reply::Response, ApiError> {
    Ok(StoredResponse::json(StatusCode::OK, &document())?.into_response())
}
