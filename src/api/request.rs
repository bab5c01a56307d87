//! What every handler gets from the request, and the strict readers of its parts: headers, query string and JSON
//! body, each failing with a problem that names the header, parameter or field at fault.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use warp::http::{HeaderMap, Method};

use crate::api::auth::Claims;
use crate::api::error::ApiError;

/// Longest request id, idempotency key or correlation id accepted, in bytes.
pub const MAX_ID_LEN: usize = dossier_events::envelope::MAX_METADATA_FIELD_LEN;

/// One request, parsed as far as every route needs.
#[derive(Debug)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The request id: `X-Request-Id` as sent, or a new UUIDv7.
    pub request_id: String,
    /// The route's path parameters.
    pub params: Vec<String>,
    /// The token's claims (`None` on the unauthenticated routes).
    pub claims: Option<Claims>,
}

impl ApiRequest {
    /// The claims of an authenticated route (the dispatcher authenticates before calling a handler).
    pub fn claims(&self) -> Result<&Claims, ApiError> {
        self.claims.as_ref().ok_or_else(|| ApiError::Unauthenticated("this route needs a Bearer token".into()))
    }

    /// The `{id}` path parameter as a document id.
    pub fn document_id(&self) -> Result<Uuid, ApiError> {
        let raw = self.params.first().map_or("", String::as_str);
        Uuid::parse_str(raw).map_err(|_| ApiError::InvalidPath {
            parameter: "id",
            reason: format!("{:?} is not a UUID", raw.chars().take(64).collect::<String>()),
        })
    }

    /// A header as printable ASCII, or `None` when absent; anything else is a 400 naming it.
    pub fn header(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        header_text(&self.headers, name)
    }

    /// The query string's parameters, refusing any not in `allowed` and any given twice.
    pub fn query(&self, allowed: &[&str]) -> Result<Query, ApiError> {
        Query::parse(&self.query, allowed)
    }

    /// The body as JSON of type `T`; errors name the field (`$` for the body as a whole).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }

    /// The `Idempotency-Key` header, if any.
    pub fn idempotency_key(&self) -> Result<Option<String>, ApiError> {
        let key = self.header("Idempotency-Key")?;
        if let Some(key) = key
            && (key.is_empty() || key.len() > MAX_ID_LEN)
        {
            return Err(ApiError::InvalidHeader {
                header: "Idempotency-Key".into(),
                reason: format!("must be 1 to {MAX_ID_LEN} characters"),
            });
        }
        Ok(key.map(str::to_owned))
    }

    /// The `X-Correlation-Id` header as a UUID, if any.
    pub fn correlation_id(&self) -> Result<Option<Uuid>, ApiError> {
        self.header("X-Correlation-Id")?
            .map(|value| {
                Uuid::parse_str(value).map_err(|_| ApiError::InvalidHeader {
                    header: "X-Correlation-Id".into(),
                    reason: "must be a UUID".into(),
                })
            })
            .transpose()
    }

    /// The version named by `If-Match` (`"3"`, `W/"3"` or `3`), if any.
    pub fn if_match(&self) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.header("If-Match")? else { return Ok(None) };
        let trimmed = value.trim().trim_start_matches("W/").trim_matches('"');
        trimmed.parse::<u64>().map(Some).map_err(|_| ApiError::InvalidHeader {
            header: "If-Match".into(),
            reason: "must be an ETag this API returned, e.g. \"3\"".into(),
        })
    }
}

/// A header's value if it is printable ASCII (visible characters and spaces); control characters, tabs and bytes
/// outside ASCII are refused.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidHeader { header: name.into(), reason: "must be given once".into() });
    }
    let bytes = value.as_bytes();
    if let Some(bad) = bytes.iter().find(|byte| !(b' '..=b'~').contains(*byte)) {
        return Err(ApiError::InvalidHeader {
            header: name.into(),
            reason: format!("contains the byte 0x{bad:02x}; only printable ASCII is allowed"),
        });
    }
    Ok(std::str::from_utf8(bytes).ok())
}

/// Refuses any header whose value holds a control character (tab included), naming it: such a value is either an
/// attack on something downstream (logs, other headers) or a client bug, and no header of this API needs one.
pub fn check_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    for (name, value) in headers {
        if let Some(bad) = value.as_bytes().iter().find(|byte| byte.is_ascii_control()) {
            return Err(ApiError::InvalidHeader {
                header: canonical_name(name.as_str()),
                reason: format!("contains the control character 0x{bad:02x}"),
            });
        }
    }
    Ok(())
}

/// A header name as the API documents it (`X-Request-Id`), for messages.
fn canonical_name(name: &str) -> String {
    const KNOWN: &[&str] = &["X-Request-Id", "X-Correlation-Id", "Idempotency-Key", "If-Match", "Last-Event-ID"];
    KNOWN
        .iter()
        .find(|known| known.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_owned(), |known| (*known).to_owned())
}

/// The request id for a request: `X-Request-Id` when it is a sane identifier, a new UUIDv7 when absent.
pub fn request_id(headers: &HeaderMap) -> Result<String, ApiError> {
    match header_text(headers, "X-Request-Id")? {
        None => Ok(Uuid::now_v7().to_string()),
        Some(id) if id.is_empty() || id.len() > MAX_ID_LEN || id.contains(' ') => Err(ApiError::InvalidHeader {
            header: "X-Request-Id".into(),
            reason: format!("must be 1 to {MAX_ID_LEN} visible ASCII characters"),
        }),
        Some(id) => Ok(id.to_owned()),
    }
}

/// Parses a JSON body into `T`, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would also read a struct from an array, by position.
    match body.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => return Err(ApiError::body("$", "the request body is empty; a JSON object is expected")),
        Some(b'{') => {}
        Some(_) => return Err(ApiError::body("$", "the request body must be a JSON object")),
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // A syntax error has no meaningful field: the body as a whole is not JSON.
        let field = if path == "." || inner.is_syntax() || inner.is_eof() { "$".to_owned() } else { path };
        let message = inner.to_string();
        // serde names missing and unknown fields itself; for the rest, say where.
        let field = match (message.strip_prefix("missing field `"), message.strip_prefix("unknown field `")) {
            (Some(rest), _) | (_, Some(rest)) => rest.split('`').next().unwrap_or(&field).to_owned(),
            (None, None) => field,
        };
        let detail = if field == "$" { format!("invalid JSON body: {message}") } else { format!("{field}: {message}") };
        ApiError::InvalidBody { field, detail }
    })?;
    deserializer.end().map_err(|error| ApiError::body("$", format!("invalid JSON body: {error}")))?;
    Ok(value)
}

/// A parsed query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw`, refusing unknown and repeated parameters.
    pub fn parse(raw: &str, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                let known = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
                return Err(ApiError::query(
                    name.chars().take(64).collect::<String>(),
                    format!("unknown parameter (this route takes: {known})"),
                ));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::query(name.into_owned(), "given more than once"));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// A parameter's value, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn integer(&self, name: &str, range: std::ops::RangeInclusive<u64>, default: u64) -> Result<u64, ApiError> {
        let Some(text) = self.get(name) else { return Ok(default) };
        let out_of_range = || {
            ApiError::query(name, format!("must be an integer from {} to {}, got {text:?}", range.start(), range.end()))
        };
        let value: u64 = text.parse().map_err(|_| out_of_range())?;
        if range.contains(&value) { Ok(value) } else { Err(out_of_range()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    fn field_of(body: &str) -> String {
        match parse_json::<Body>(body.as_bytes()) {
            Err(ApiError::InvalidBody { field, .. }) => field,
            other => panic!("expected a body error, got {other:?}"),
        }
    }

    #[test]
    fn parse_json_names_the_field_at_fault() {
        assert_eq!(field_of(r#"{"name":"a","count":"x"}"#), "count");
        assert_eq!(field_of(r#"{"name":"a"}"#), "count");
        assert_eq!(field_of(r#"{"name":"a","count":1,"extra":true}"#), "extra");
        assert_eq!(field_of(r#"{"name":"a","count":1"#), "$");
        assert_eq!(field_of(r#"{"name":"a","count":1} trailing"#), "$");
    }

    #[test]
    fn query_refuses_unknown_repeated_and_out_of_range_parameters() {
        assert!(Query::parse("limit=1&other=2", &["limit"]).is_err());
        assert!(Query::parse("limit=1&limit=2", &["limit"]).is_err());
        let query = Query::parse("limit=-1", &["limit"]).expect("parsed");
        assert!(query.integer("limit", 1..=100, 20).is_err());
        let query = Query::parse("limit=99999999999999999999999", &["limit"]).expect("parsed");
        assert!(query.integer("limit", 1..=100, 20).is_err());
        assert_eq!(Query::parse("", &["limit"]).expect("empty").integer("limit", 1..=100, 20), Ok(20));
    }
}
