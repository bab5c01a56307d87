//! The OpenAI-compatible embedder against a real local stub server (`mock_ollama`): batching, order, concurrency,
//! and how each kind of failure is classified. One `embed` call must be exactly one attempt: every test that fails
//! a request also checks that no second request was sent behind our back.

use std::time::{Duration, Instant};

use dossier_actors::embed::{EmbedError, Embedder, OpenAiEmbedder, OpenAiEmbedderConfig};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::mock_ollama::{self, Behaviour, CHAT_ANSWER, DEFAULT_DIMENSION, MockOllama, embedding_for};

const MODEL: &str = "nomic-embed-text";

fn config(base_url: &str) -> OpenAiEmbedderConfig {
    let mut config = OpenAiEmbedderConfig::new(base_url, MODEL);
    config.dimensions = Some(DEFAULT_DIMENSION as u32);
    config.timeout = Duration::from_secs(5);
    config
}

fn embedder(config: OpenAiEmbedderConfig) -> OpenAiEmbedder {
    OpenAiEmbedder::new(config).expect("valid embedder config")
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("chunk number {i} of the sample document")).collect()
}

#[tokio::test]
async fn embed_with_150_texts_and_batch_64_sends_3_requests_in_input_order() {
    let server = MockOllama::start().await;
    let embedder = embedder(config(server.base_url()));
    let texts = texts(150);

    let vectors = embedder.embed(&texts).await.expect("embedded");

    assert_eq!(server.requests(), 3);
    let mut sizes = server.batch_sizes();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![22, 64, 64]);
    assert_eq!(vectors.len(), 150);
    for (text, vector) in texts.iter().zip(&vectors) {
        assert_eq!(vector, &embedding_for(text, DEFAULT_DIMENSION), "vector out of order for {text:?}");
    }
    assert_eq!(embedder.model(), MODEL);
    assert_eq!(embedder.dimensions(), Some(DEFAULT_DIMENSION as u32));
}

#[tokio::test]
async fn embed_with_concurrency_limit_2_keeps_at_most_2_requests_in_flight() {
    let server = MockOllama::start().await;
    server.set_latency(Duration::from_millis(150));
    let mut config = config(server.base_url());
    config.batch_size = 10;
    config.max_concurrency = 2;

    let vectors = embedder(config).embed(&texts(50)).await.expect("embedded");

    assert_eq!(vectors.len(), 50);
    assert_eq!(server.requests(), 5);
    // Exactly 2: the batches did run concurrently, and never more than the limit.
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn embed_with_two_concurrent_calls_shares_one_concurrency_limit() {
    let server = MockOllama::start().await;
    server.set_latency(Duration::from_millis(150));
    let mut config = config(server.base_url());
    config.batch_size = 10;
    config.max_concurrency = 2;
    let embedder = embedder(config);
    let (first, second) = (texts(30), texts(20));

    let (first, second) = tokio::join!(embedder.embed(&first), embedder.embed(&second));

    assert_eq!(first.expect("first call").len() + second.expect("second call").len(), 50);
    assert_eq!(server.requests(), 5);
    assert_eq!(server.max_in_flight(), 2);
}

#[tokio::test]
async fn embed_with_empty_input_returns_empty_without_a_request() {
    let server = MockOllama::start().await;

    let vectors = embedder(config(server.base_url())).embed(&[]).await.expect("embedded");

    assert!(vectors.is_empty());
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn embed_with_server_error_returns_transient_after_one_request() {
    let server = MockOllama::start().await;
    server.fail_next(1);
    let embedder = embedder(config(server.base_url()));

    let error = embedder.embed(&texts(3)).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert!(error.reason().contains("500") && error.reason().contains(MODEL), "{error}");
    // No silent retry inside the client: the pipeline must see every attempt.
    assert_eq!(server.requests(), 1);
    // The next attempt (the pipeline's retry) succeeds.
    assert_eq!(embedder.embed(&texts(3)).await.expect("second attempt").len(), 3);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn embed_with_one_failing_batch_of_three_fails_the_whole_call() {
    let server = MockOllama::start().await;
    let mut config = config(server.base_url());
    config.batch_size = 4;
    config.max_concurrency = 1;
    server.push(Behaviour::Fail(503));

    let error = embedder(config).embed(&texts(12)).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    // The first failure stops the batches not yet started.
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn embed_with_rate_limit_returns_transient_with_retry_after_1_second() {
    let server = MockOllama::start().await;
    server.rate_limit_next("1");

    let error = embedder(config(server.base_url())).embed(&texts(2)).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    assert!(error.reason().contains("429"), "{error}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn embed_with_hanging_server_returns_transient_timeout_within_the_timeout() {
    let server = MockOllama::start().await;
    server.hang_next(Duration::from_secs(10));
    let mut config = config(server.base_url());
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();

    let error = embedder(config).embed(&texts(2)).await.unwrap_err();

    let elapsed = started.elapsed();
    assert!(error.is_transient(), "{error}");
    assert!(error.reason().contains("no complete response within 300ms"), "{error}");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn embed_with_wrong_dimension_returns_permanent() {
    let server = MockOllama::start().await;
    server.wrong_dimension_next(5);

    let error = embedder(config(server.base_url())).embed(&texts(2)).await.unwrap_err();

    assert!(matches!(error, EmbedError::Permanent { .. }), "{error}");
    assert!(error.reason().contains("5 dimensions") && error.reason().contains(MODEL), "{error}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn embed_with_unconfigured_dimension_and_batches_disagreeing_returns_permanent() {
    let server = MockOllama::start().await;
    server.wrong_dimension_next(5);
    let mut config = config(server.base_url());
    config.dimensions = None;
    config.batch_size = 2;
    config.max_concurrency = 1;

    let error = embedder(config).embed(&texts(4)).await.unwrap_err();

    assert!(!error.is_transient(), "{error}");
    assert!(error.reason().contains("different dimensions"), "{error}");
}

#[tokio::test]
async fn embed_with_fewer_vectors_than_inputs_returns_permanent() {
    let server = MockOllama::start().await;
    server.fewer_vectors_next();

    let error = embedder(config(server.base_url())).embed(&texts(3)).await.unwrap_err();

    assert!(!error.is_transient(), "{error}");
    assert!(error.reason().contains("2 vectors for 3 inputs"), "{error}");
}

#[tokio::test]
async fn embed_with_nothing_listening_returns_transient_connection_error() {
    let base_url = mock_ollama::unused_base_url().await;

    let error = embedder(config(&base_url)).embed(&texts(1)).await.unwrap_err();

    assert!(error.is_transient(), "{error}");
    assert!(error.reason().contains("cannot connect"), "{error}");
}

#[tokio::test]
async fn embed_with_api_key_sends_it_and_never_shows_it() {
    let server = MockOllama::start_with(DEFAULT_DIMENSION, Some("sk-test-secret")).await;
    let mut good = config(server.base_url());
    good.api_key = Some(SecretString::from("sk-test-secret"));
    let mut bad = config(server.base_url());
    bad.api_key = Some(SecretString::from("sk-wrong"));

    assert_eq!(embedder(good.clone()).embed(&texts(1)).await.expect("authorised").len(), 1);
    let error = embedder(bad).embed(&texts(1)).await.unwrap_err();

    assert!(!error.is_transient(), "{error}");
    assert!(error.reason().contains("401") && !error.reason().contains("sk-wrong"), "{error}");
    assert!(!format!("{good:?} {:?}", embedder(good.clone())).contains("sk-test-secret"));
}

#[tokio::test]
async fn new_with_invalid_config_returns_permanent() {
    let mut zero_batch = config("http://127.0.0.1:1/v1");
    zero_batch.batch_size = 0;
    for bad in [config("not a url"), config("ftp://host/v1"), OpenAiEmbedderConfig::new("http://h/v1", " "), zero_batch]
    {
        let error = OpenAiEmbedder::new(bad).unwrap_err();
        assert!(!error.is_transient(), "{error}");
    }
}

#[tokio::test]
async fn mock_ollama_chat_completions_answers_json_and_sse() {
    let server = MockOllama::start().await;

    let plain = post_raw(server.base_url(), "/chat/completions", r#"{"model":"m","messages":[]}"#).await;
    let streamed =
        post_raw(server.base_url(), "/chat/completions", r#"{"model":"m","messages":[],"stream":true}"#).await;

    assert!(plain.starts_with("HTTP/1.1 200") && plain.contains(CHAT_ANSWER), "{plain}");
    assert!(streamed.contains("text/event-stream") && streamed.contains("data:[DONE]"), "{streamed}");
    assert!(streamed.contains("\"content\":\"answer \"") && streamed.contains("\"finish_reason\":\"stop\""));
    assert_eq!(server.chat_requests(), 2);
}

/// A bare HTTP/1.1 POST (the fixture's own check; our clients are tested above through their real code).
async fn post_raw(base_url: &str, path: &str, body: &str) -> String {
    let url = format!("{base_url}{path}");
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).into_owned()
}
