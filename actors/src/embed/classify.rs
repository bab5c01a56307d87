//! Turning what came back from one HTTP request into vectors or a classified [`EmbedError`]: the contract checks
//! on a response, and which failures are worth another attempt. Pure functions, tested without a server.

use std::time::Duration;

use async_openai::error::{OpenAIError, WrappedError};
use async_openai::types::embeddings::CreateEmbeddingResponse;
use reqwest::StatusCode;

use super::EmbedError;
use super::transport::{HttpStatusError, excerpt};

/// Checks one batch's response against the contract and returns its vectors in input order.
pub(crate) fn check_response(
    model: &str,
    dimensions: Option<u32>,
    inputs: usize,
    response: CreateEmbeddingResponse,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut data = response.data;
    if data.len() != inputs {
        return Err(EmbedError::permanent(format!(
            "embedding model `{model}` returned {} vectors for {inputs} inputs",
            data.len()
        )));
    }
    data.sort_unstable_by_key(|embedding| embedding.index);
    if let Some((position, embedding)) =
        data.iter().enumerate().find(|(position, embedding)| embedding.index as usize != *position)
    {
        return Err(EmbedError::permanent(format!(
            "embedding model `{model}` returned a duplicate or out-of-range index {} (expected {position})",
            embedding.index
        )));
    }
    let expected = match dimensions {
        Some(dimensions) => dimensions as usize,
        None => data.first().map_or(0, |embedding| embedding.embedding.len()),
    };
    for embedding in &data {
        let found = embedding.embedding.len();
        if found != expected || found == 0 {
            return Err(EmbedError::permanent(format!(
                "embedding model `{model}` returned a vector of {found} dimensions for input {}, expected {expected}",
                embedding.index
            )));
        }
        if embedding.embedding.iter().any(|value| !value.is_finite()) {
            return Err(EmbedError::permanent(format!(
                "embedding model `{model}` returned a non-finite value for input {}",
                embedding.index
            )));
        }
    }
    Ok(data.into_iter().map(|embedding| embedding.embedding).collect())
}

/// Classifies an async-openai failure as worth retrying or not, with a reason naming the model.
pub(crate) fn classify(model: &str, timeout: Duration, error: OpenAIError) -> EmbedError {
    match error {
        OpenAIError::Reqwest(error) => classify_transport(model, timeout, &error),
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatusError>() {
            Ok(failure) => classify_status(model, failure.status, failure.retry_after, &failure.body),
            Err(other) => EmbedError::permanent(format!("embedding model `{model}`: {}", error_chain(&*other))),
        },
        // Only async-openai's own executor produces this (ours answers with `Boxed`); classified all the same.
        OpenAIError::ApiError(response) => {
            classify_status(model, response.status_code, None, &response.api_error.to_string())
        }
        OpenAIError::JSONDeserialize(error, content) => EmbedError::permanent(format!(
            "embedding model `{model}`: malformed response ({error}): {}",
            excerpt(&content)
        )),
        OpenAIError::InvalidArgument(message) => {
            EmbedError::permanent(format!("embedding model `{model}`: invalid request: {message}"))
        }
        error @ (OpenAIError::FileSaveError(_) | OpenAIError::FileReadError(_) | OpenAIError::StreamError(_)) => {
            EmbedError::permanent(format!("embedding model `{model}`: {error}"))
        }
    }
}

fn classify_transport(model: &str, timeout: Duration, error: &reqwest::Error) -> EmbedError {
    let detail = error_chain(error);
    if error.is_timeout() {
        EmbedError::transient(format!("embedding model `{model}`: no complete response within {timeout:?}: {detail}"))
    } else if error.is_connect() {
        EmbedError::transient(format!("embedding model `{model}`: cannot connect: {detail}"))
    } else if error.is_builder() || error.is_redirect() || error.is_decode() {
        EmbedError::permanent(format!("embedding model `{model}`: {detail}"))
    } else {
        // Sending or reading failed mid-way (connection reset or closed): the next attempt may well succeed.
        EmbedError::transient(format!("embedding model `{model}`: request failed: {detail}"))
    }
}

/// 408, 429 and 5xx are worth another attempt; every other status is an answer that will not change. A 429 that
/// says `insufficient_quota` (OpenAI's "no credit left") is permanent too.
pub(crate) fn classify_status(
    model: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> EmbedError {
    let reason = format!("embedding model `{model}`: HTTP {status}: {body}");
    let transient = match status.as_u16() {
        408 | 500..=599 => true,
        429 => !is_insufficient_quota(body),
        _ => false,
    };
    if transient { EmbedError::Transient { reason, retry_after } } else { EmbedError::Permanent { reason } }
}

fn is_insufficient_quota(body: &str) -> bool {
    serde_json::from_str::<WrappedError>(body).is_ok_and(|wrapped| {
        let quota = Some("insufficient_quota");
        wrapped.error.r#type.as_deref() == quota || wrapped.error.code.as_deref() == quota
    })
}

/// A one-line description of an async-openai failure through our transport, for callers other than the embedder
/// (which classifies instead): the HTTP status and body excerpt, the transport error with its causes, or the
/// malformed body.
pub fn describe_openai_error(error: &OpenAIError) -> String {
    match error {
        OpenAIError::Reqwest(error) => error_chain(error),
        OpenAIError::Boxed(boxed) => error_chain(&**boxed),
        OpenAIError::JSONDeserialize(error, content) => {
            format!("malformed response ({error}): {}", excerpt(content))
        }
        other => other.to_string(),
    }
}

/// An error and its sources, joined with `: ` (reqwest's own message alone omits the cause).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use async_openai::types::embeddings::{Embedding, EmbeddingUsage};

    use super::*;

    fn response(vectors: &[(u32, Vec<f32>)]) -> CreateEmbeddingResponse {
        CreateEmbeddingResponse {
            object: "list".into(),
            model: "m".into(),
            data: vectors
                .iter()
                .map(|(index, embedding)| Embedding {
                    index: *index,
                    object: "embedding".into(),
                    embedding: embedding.clone(),
                })
                .collect(),
            usage: EmbeddingUsage { prompt_tokens: 0, total_tokens: 0 },
        }
    }

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).expect("valid status")
    }

    #[test]
    fn check_response_with_shuffled_indices_returns_input_order() {
        let shuffled = response(&[(2, vec![2.0, 2.0]), (0, vec![0.0, 0.5]), (1, vec![1.0, 1.0])]);
        let vectors = check_response("m", Some(2), 3, shuffled).expect("valid");
        assert_eq!(vectors, vec![vec![0.0, 0.5], vec![1.0, 1.0], vec![2.0, 2.0]]);
    }

    #[test]
    fn check_response_with_fewer_vectors_is_permanent_and_names_the_model() {
        let error = check_response("nomic", None, 3, response(&[(0, vec![1.0]), (1, vec![1.0])])).unwrap_err();
        assert!(!error.is_transient());
        assert!(error.reason().contains("`nomic`") && error.reason().contains("2 vectors for 3 inputs"), "{error}");
    }

    #[test]
    fn check_response_with_wrong_dimension_is_permanent() {
        let error = check_response("m", Some(3), 1, response(&[(0, vec![1.0, 2.0])])).unwrap_err();
        assert!(!error.is_transient());
        assert!(error.reason().contains("2 dimensions") && error.reason().contains("expected 3"), "{error}");
    }

    #[test]
    fn check_response_with_mixed_lengths_and_no_configured_dimension_is_permanent() {
        let error = check_response("m", None, 2, response(&[(0, vec![1.0, 2.0]), (1, vec![1.0])])).unwrap_err();
        assert!(!error.is_transient());
    }

    #[test]
    fn check_response_with_empty_vector_is_permanent() {
        assert!(!check_response("m", None, 1, response(&[(0, vec![])])).unwrap_err().is_transient());
    }

    #[test]
    fn check_response_with_non_finite_value_is_permanent() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let error = check_response("m", Some(2), 1, response(&[(0, vec![0.0, bad])])).unwrap_err();
            assert!(!error.is_transient());
            assert!(error.reason().contains("non-finite"), "{error}");
        }
    }

    #[test]
    fn check_response_with_duplicate_index_is_permanent() {
        let error = check_response("m", None, 2, response(&[(0, vec![1.0]), (0, vec![2.0])])).unwrap_err();
        assert!(error.reason().contains("duplicate or out-of-range index"), "{error}");
        let error = check_response("m", None, 1, response(&[(5, vec![1.0])])).unwrap_err();
        assert!(!error.is_transient());
    }

    #[test]
    fn classify_status_with_retryable_codes_is_transient_with_retry_after() {
        let wait = Some(Duration::from_secs(1));
        for code in [408, 429, 500, 502, 503, 504] {
            let error = classify_status("m", status(code), wait, "busy");
            assert!(error.is_transient(), "{code}");
            assert_eq!(error.retry_after(), wait, "{code}");
        }
    }

    #[test]
    fn classify_status_with_client_errors_is_permanent_and_names_the_model() {
        for code in [400, 401, 403, 404, 422] {
            let error = classify_status("nomic-embed-text", status(code), None, "{\"error\":\"nope\"}");
            assert!(!error.is_transient(), "{code}");
            assert!(error.reason().contains("`nomic-embed-text`") && error.reason().contains(&code.to_string()));
        }
    }

    #[test]
    fn classify_status_with_insufficient_quota_429_is_permanent() {
        let body = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(!classify_status("m", status(429), None, body).is_transient());
        let rate_limited =
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert!(classify_status("m", status(429), None, rate_limited).is_transient());
    }

    #[test]
    fn classify_with_http_status_error_keeps_status_and_retry_after() {
        let failure = HttpStatusError {
            status: status(429),
            retry_after: Some(Duration::from_secs(1)),
            body: "slow down".into(),
        };
        let error = classify("m", Duration::from_secs(1), OpenAIError::Boxed(Box::new(failure)));
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
        assert!(error.reason().contains("429") && error.reason().contains("slow down"), "{error}");
    }

    #[test]
    fn classify_with_malformed_json_is_permanent() {
        let parse_error = serde_json::from_str::<CreateEmbeddingResponse>("{\"data\": 3}").unwrap_err();
        let error = classify("m", Duration::from_secs(1), OpenAIError::JSONDeserialize(parse_error, "{...}".into()));
        assert!(!error.is_transient());
        assert!(error.reason().contains("malformed response"), "{error}");
    }

    #[test]
    fn classify_with_other_boxed_error_is_permanent() {
        let other: Box<dyn std::error::Error + Send + Sync> = "layer failed".into();
        assert!(!classify("m", Duration::from_secs(1), OpenAIError::Boxed(other)).is_transient());
    }

    #[test]
    fn describe_openai_error_shows_status_body_and_malformed_content() {
        let failure =
            HttpStatusError { status: status(503), retry_after: None, body: "{\"error\":\"overloaded\"}".into() };
        let described = describe_openai_error(&OpenAIError::Boxed(Box::new(failure)));
        assert_eq!(described, "HTTP 503 Service Unavailable: {\"error\":\"overloaded\"}");
        let parse_error = serde_json::from_str::<CreateEmbeddingResponse>("{").unwrap_err();
        let described = describe_openai_error(&OpenAIError::JSONDeserialize(parse_error, "{".into()));
        assert!(described.starts_with("malformed response (") && described.ends_with("): {"), "{described}");
    }

    #[test]
    fn classify_with_invalid_argument_is_permanent() {
        assert!(!classify("m", Duration::from_secs(1), OpenAIError::InvalidArgument("x".into())).is_transient());
    }
}
