//! The HTTP transport under async-openai: one request, one response, never a retry.
//!
//! Why not async-openai's own: its default executor (0.43) wraps reqwest in `OpenAIRetryLayer`, which silently
//! retries HTTP 429, 5xx and connect errors up to 3 more times (sleeping up to 8 s, or the server's `Retry-After`),
//! and the error it returns for a failed status keeps the status code but drops the headers, so `Retry-After` is
//! lost. Both break our contract: the pipeline retries, and every attempt must be visible to it. With the crate's
//! `middleware` feature, `Client::with_http_service` replaces that executor entirely; the service here sends the
//! request once and turns any non-2xx response into an [`HttpStatusError`] (status, `Retry-After`, a bounded
//! excerpt of the body), which reaches the embedder as `OpenAIError::Boxed`. Everything above the transport
//! (request building, auth header, JSON types) is still async-openai's.
//!
//! [`openai_client`] builds such a client for any OpenAI-compatible endpoint; the embedder uses it, and so does
//! anything else that calls the same kind of server (the evaluation judge's chat completions), so there is one HTTP
//! stack and one way of configuring it.

use std::time::{Duration, SystemTime};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use secrecy::{ExposeSecret, SecretString};

/// How much of an error body is kept for the error message (servers sometimes answer with whole HTML pages).
const BODY_EXCERPT_CHARS: usize = 300;

/// A response with a non-success status, as the transport saw it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub(crate) struct HttpStatusError {
    /// The response's status.
    pub status: StatusCode,
    /// The parsed `Retry-After` header, if there was a valid one.
    pub retry_after: Option<Duration>,
    /// The start of the response body (lossy UTF-8), or why it could not be read.
    pub body: String,
}

/// An async-openai client for the OpenAI-compatible API at `base_url` (e.g. `http://localhost:11434/v1`) that sends
/// every request exactly once, with `timeout` for the whole request (connecting: at most 10 s of it). Returns the
/// normalised base URL (trimmed, no trailing `/`) with the client.
///
/// Fails, with a reason to be prefixed by the caller's context, on a base URL that is not `http(s)://…`, a zero
/// timeout, or a TLS setup that cannot be built. Sends nothing.
pub fn openai_client(
    base_url: &str,
    api_key: Option<&SecretString>,
    timeout: Duration,
) -> Result<(String, Client<OpenAIConfig>), String> {
    let base_url = base_url.trim().trim_end_matches('/').to_owned();
    match reqwest::Url::parse(&base_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        Ok(_) | Err(_) => return Err(format!("base URL `{base_url}` is not an http(s) URL")),
    }
    if timeout.is_zero() {
        return Err("the request timeout must be non-zero".to_owned());
    }
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|error| format!("HTTP client: {error}"))?;
    // Every field is set explicitly: `OpenAIConfig::new()` otherwise falls back to the OPENAI_API_KEY,
    // OPENAI_ORG_ID and OPENAI_PROJECT_ID environment variables, which would send an OpenAI key to whatever
    // server `base_url` names. No key means an empty bearer token, which keyless servers (Ollama) ignore.
    let config = OpenAIConfig::new()
        .with_api_base(base_url.clone())
        .with_api_key(api_key.map(|key| key.expose_secret().to_owned()).unwrap_or_default())
        .with_org_id("")
        .with_project_id("");
    Ok((base_url, single_attempt_client(config, http)))
}

/// An async-openai client whose every request is sent exactly once through `http`.
fn single_attempt_client(config: OpenAIConfig, http: reqwest::Client) -> Client<OpenAIConfig> {
    let service = tower::service_fn(move |factory: HttpRequestFactory| {
        let http = http.clone();
        async move {
            let request = factory.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if response.status().is_success() {
                return Ok(response);
            }
            Err(OpenAIError::Boxed(Box::new(read_failure(response).await)))
        }
    });
    Client::with_config(config).with_http_service(service)
}

async fn read_failure(response: reqwest::Response) -> HttpStatusError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    let body = match response.bytes().await {
        Ok(bytes) => excerpt(&String::from_utf8_lossy(&bytes)),
        Err(error) => format!("(body unreadable: {error})"),
    };
    HttpStatusError { status, retry_after, body }
}

/// Parses a `Retry-After` value: delay-seconds (integer, or a decimal some servers send) or an HTTP-date, which
/// becomes the time from `now` until then (zero if it is already past). Anything else is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first [`BODY_EXCERPT_CHARS`] characters of `text`, trimmed, with a marker when cut.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_retry_after_with_seconds_returns_them() {
        assert_eq!(parse_retry_after("1", SystemTime::now()), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", SystemTime::now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0.5", SystemTime::now()), Some(Duration::from_millis(500)));
    }

    #[test]
    fn parse_retry_after_with_http_date_returns_time_until_it() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        let later = "Wed, 21 Oct 2015 07:28:30 GMT";
        assert_eq!(parse_retry_after(later, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn parse_retry_after_with_past_http_date_returns_zero() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
    }

    #[test]
    fn parse_retry_after_with_garbage_returns_none() {
        for value in ["", "soon", "-1", "NaN", "inf", "1e400"] {
            assert_eq!(parse_retry_after(value, SystemTime::now()), None, "{value:?}");
        }
    }

    #[test]
    fn excerpt_with_long_text_cuts_on_a_char_boundary() {
        let long = "é".repeat(BODY_EXCERPT_CHARS + 10);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("  short \n"), "short");
    }
}
