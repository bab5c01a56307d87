//! The route table: every endpoint's method, path template and required role, in one list.
//!
//! The router, the OpenAPI document and the metrics' `route` label are all derived from [`ROUTES`], so they cannot
//! drift apart; the integration tests check that each documented route is served.

use warp::http::Method;

use crate::api::auth::Role;
use crate::api::error::ApiError;

/// Every path starts with this.
pub const PREFIX: &str = "/api/v1";

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// `POST /documents`.
    UploadDocument,
    /// `GET /documents`.
    ListDocuments,
    /// `GET /documents/{id}`.
    GetDocument,
    /// `PATCH /documents/{id}`.
    UpdateDocument,
    /// `DELETE /documents/{id}`.
    DeleteDocument,
    /// `POST /documents/{id}/reprocess`.
    ReprocessDocument,
    /// `GET /documents/{id}/events`.
    DocumentEvents,
    /// `GET /documents/{id}/history`.
    DocumentHistory,
    /// `GET /events`.
    GlobalEvents,
    /// `GET /events/live`.
    LiveEvents,
    /// `GET /audit/verify`.
    VerifyAudit,
    /// `GET /projections`.
    ListProjections,
    /// `POST /projections/{name}/rebuild`.
    RebuildProjection,
    /// `POST /search`.
    Search,
    /// `POST /ask`.
    Ask,
}

/// One row of the route table.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path under [`PREFIX`], with `{name}` for a parameter segment.
    pub path: &'static str,
    /// What it does.
    pub endpoint: Endpoint,
    /// The role needed; `None` for the unauthenticated routes (health, metrics, OpenAPI).
    pub role: Option<Role>,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn route(
    method: &'static str,
    path: &'static str,
    endpoint: Endpoint,
    role: Option<Role>,
    summary: &'static str,
) -> Route {
    Route { method, path, endpoint, role, summary }
}

/// Every route the server answers.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Endpoint::Health, None, "Health of each component"),
    route("GET", "/metrics", Endpoint::Metrics, None, "Prometheus metrics"),
    route("GET", "/openapi.json", Endpoint::OpenApi, None, "This API's OpenAPI 3 document"),
    route("POST", "/documents", Endpoint::UploadDocument, Some(Role::Writer), "Upload a document"),
    route("GET", "/documents", Endpoint::ListDocuments, Some(Role::Reader), "List documents (keyset pages)"),
    route("GET", "/documents/{id}", Endpoint::GetDocument, Some(Role::Reader), "A document"),
    route("PATCH", "/documents/{id}", Endpoint::UpdateDocument, Some(Role::Writer), "Change a document's metadata"),
    route("DELETE", "/documents/{id}", Endpoint::DeleteDocument, Some(Role::Writer), "Delete a document"),
    route("POST", "/documents/{id}/reprocess", Endpoint::ReprocessDocument, Some(Role::Writer), "Process again"),
    route("GET", "/documents/{id}/events", Endpoint::DocumentEvents, Some(Role::Reader), "A document's stream"),
    route("GET", "/documents/{id}/history", Endpoint::DocumentHistory, Some(Role::Reader), "A past version"),
    route("GET", "/events", Endpoint::GlobalEvents, Some(Role::Admin), "The tenant's events in global order"),
    route("GET", "/events/live", Endpoint::LiveEvents, Some(Role::Admin), "New events as server-sent events"),
    route("GET", "/audit/verify", Endpoint::VerifyAudit, Some(Role::Admin), "Verify every hash chain"),
    route("GET", "/projections", Endpoint::ListProjections, Some(Role::Admin), "Projections and their progress"),
    route("POST", "/projections/{name}/rebuild", Endpoint::RebuildProjection, Some(Role::Admin), "Rebuild"),
    route("POST", "/search", Endpoint::Search, Some(Role::Reader), "Search the tenant's ready documents"),
    route("POST", "/ask", Endpoint::Ask, Some(Role::Reader), "Answer a question with citations"),
];

/// A matched route and its path parameters, in template order.
#[derive(Clone, Debug)]
pub struct Matched {
    /// The route.
    pub route: &'static Route,
    /// The parameter segments, percent-decoded.
    pub params: Vec<String>,
}

/// Finds the route for a request: 404 when no template matches the path, 405 when only other methods do.
pub fn resolve(method: &Method, path: &str) -> Result<Matched, ApiError> {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Err(ApiError::RouteNotFound(path_for_message(path)));
    };
    let mut path_matched = false;
    for route in ROUTES {
        if let Some(params) = match_template(route.path, rest) {
            if route.method == method.as_str() {
                return Ok(Matched { route, params });
            }
            path_matched = true;
        }
    }
    if path_matched { Err(ApiError::MethodNotAllowed) } else { Err(ApiError::RouteNotFound(path_for_message(path))) }
}

/// The template a path matches, for metrics labels (`unmatched` when none does).
pub fn label(path: &str) -> &'static str {
    path.strip_prefix(PREFIX)
        .and_then(|rest| ROUTES.iter().find(|route| match_template(route.path, rest).is_some()))
        .map_or("unmatched", |route| route.path)
}

fn match_template(template: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for expected in template.split('/') {
        let segment = segments.next()?;
        if expected.starts_with('{') {
            if segment.is_empty() {
                return None;
            }
            params.push(percent_decode(segment));
        } else if expected != segment {
            return None;
        }
    }
    segments.next().is_none().then_some(params)
}

fn percent_decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| segment.to_owned(), |(_, value)| value.into_owned())
}

/// The path as echoed in a 404, cut short and without control characters.
fn path_for_message(path: &str) -> String {
    path.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_distinguishes_unknown_paths_from_wrong_methods() {
        let matched = resolve(&Method::GET, "/api/v1/documents/abc/events").expect("route");
        assert_eq!(matched.route.endpoint, Endpoint::DocumentEvents);
        assert_eq!(matched.params, vec!["abc".to_owned()]);
        assert_eq!(resolve(&Method::PUT, "/api/v1/documents/abc").err(), Some(ApiError::MethodNotAllowed));
        assert!(matches!(resolve(&Method::GET, "/api/v1/documents/abc/nope"), Err(ApiError::RouteNotFound(_))));
        assert!(matches!(resolve(&Method::GET, "/api/v1/documents/"), Err(ApiError::RouteNotFound(_))));
        assert!(matches!(resolve(&Method::GET, "/health"), Err(ApiError::RouteNotFound(_))));
    }

    #[test]
    fn every_route_is_unique() {
        for (index, route) in ROUTES.iter().enumerate() {
            let same = ROUTES[index + 1..].iter().any(|other| other.method == route.method && other.path == route.path);
            assert!(!same, "{} {} is listed twice", route.method, route.path);
        }
    }
}
