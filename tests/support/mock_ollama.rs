//! `mock_ollama`: a real local HTTP server speaking the OpenAI-compatible API that Ollama and vLLM serve, so tests
//! exercise our HTTP clients end to end instead of mocking our own code.
//!
//! - `POST /v1/embeddings` answers deterministic, L2-normalised vectors ([`embedding_for`]) of a configurable
//!   dimension (default 8), and counts requests, their batch sizes and how many were in flight at once.
//! - `POST /v1/chat/completions` answers [`CHAT_ANSWER`], as one JSON object or, with `"stream": true`, as SSE chunks
//!   ending in `data: [DONE]`; every request body is recorded ([`MockOllama::chat_bodies`]).
//!
//! A test scripts misbehaviour through the handle: each scripted [`Behaviour`] applies to one embeddings request,
//! in order, then normal service resumes. Chat requests have their own queue of scripted [`ChatReply`]s (an
//! answer's content, a failure status, a reply cut off by the token limit, a hang), used the same way. The server runs on its own task, on `127.0.0.1` and a port the OS picks,
//! and stops when the handle is dropped (a request hanging at that moment is released at once).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// The dimension of the vectors served when a test does not choose one.
pub const DEFAULT_DIMENSION: usize = 8;

/// The fixed answer of `/v1/chat/completions`.
pub const CHAT_ANSWER: &str = "The answer is in the documents.";

/// One scripted answer to one embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Answer this status with an OpenAI-style error body.
    Fail(u16),
    /// Answer 429 with this `Retry-After` value (seconds or an HTTP-date).
    RateLimit(String),
    /// Wait this long before answering normally (longer than the client's timeout, to test it).
    Hang(Duration),
    /// Answer vectors of this dimension instead of the configured one.
    WrongDimension(usize),
    /// Answer one vector fewer than there were inputs.
    FewerVectors,
}

/// One scripted answer to one chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatReply {
    /// Answer with this message content (`finish_reason: stop`).
    Answer(String),
    /// Answer with this content, as cut off by the token limit (`finish_reason: length`).
    Truncated(String),
    /// Answer this status with an OpenAI-style error body.
    Fail(u16),
    /// Wait this long (or until the server stops) before answering [`CHAT_ANSWER`], to test a client's timeout.
    Hang(Duration),
}

/// A running stub server; dropping it stops the server.
pub struct MockOllama {
    base_url: String,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

struct State {
    dimension: usize,
    api_key: Option<String>,
    latency: Mutex<Duration>,
    script: Mutex<VecDeque<Behaviour>>,
    requests: AtomicUsize,
    chat_requests: AtomicUsize,
    chat_script: Mutex<VecDeque<ChatReply>>,
    chat_bodies: Mutex<Vec<serde_json::Value>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    batch_sizes: Mutex<Vec<usize>>,
    shutdown: watch::Receiver<bool>,
}

impl MockOllama {
    /// Starts a server answering vectors of [`DEFAULT_DIMENSION`], with no API key required.
    pub async fn start() -> Self {
        Self::start_with(DEFAULT_DIMENSION, None).await
    }

    /// Starts a server answering vectors of `dimension`; with `api_key`, requests without `Bearer <api_key>` get 401.
    pub async fn start_with(dimension: usize, api_key: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock_ollama");
        let address = listener.local_addr().expect("mock_ollama address");
        let (shutdown, receiver) = watch::channel(false);
        let state = Arc::new(State {
            dimension,
            api_key: api_key.map(str::to_owned),
            latency: Mutex::new(Duration::ZERO),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
            chat_requests: AtomicUsize::new(0),
            chat_script: Mutex::new(VecDeque::new()),
            chat_bodies: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            batch_sizes: Mutex::new(Vec::new()),
            shutdown: receiver.clone(),
        });
        let mut stop = receiver;
        let server = warp::serve(routes(Arc::clone(&state))).incoming(listener).graceful(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        tokio::spawn(server.run());
        Self { base_url: format!("http://{address}/v1"), state, shutdown }
    }

    /// The API root to configure a client with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Queues one scripted answer (for the next embeddings request not already scripted).
    pub fn push(&self, behaviour: Behaviour) {
        self.state.script.lock().expect("script lock").push_back(behaviour);
    }

    /// The next `n` embeddings requests fail with HTTP 500.
    pub fn fail_next(&self, n: usize) {
        (0..n).for_each(|_| self.push(Behaviour::Fail(500)));
    }

    /// The next embeddings request gets HTTP 429 with this `Retry-After` value.
    pub fn rate_limit_next(&self, retry_after: &str) {
        self.push(Behaviour::RateLimit(retry_after.to_owned()));
    }

    /// The next embeddings request is answered only after `duration` (or when the server stops).
    pub fn hang_next(&self, duration: Duration) {
        self.push(Behaviour::Hang(duration));
    }

    /// The next embeddings request gets vectors of `dimension`.
    pub fn wrong_dimension_next(&self, dimension: usize) {
        self.push(Behaviour::WrongDimension(dimension));
    }

    /// The next embeddings request gets one vector fewer than it sent inputs.
    pub fn fewer_vectors_next(&self) {
        self.push(Behaviour::FewerVectors);
    }

    /// Every embeddings request from now on takes at least `latency` (so concurrent requests overlap).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().expect("latency lock") = latency;
    }

    /// Embeddings requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Queues one scripted chat reply (for the next chat request not already scripted).
    pub fn push_chat(&self, reply: ChatReply) {
        self.state.chat_script.lock().expect("chat script lock").push_back(reply);
    }

    /// Queues a chat answer with this content for the next unscripted chat request.
    pub fn push_chat_answer(&self, content: impl Into<String>) {
        self.push_chat(ChatReply::Answer(content.into()));
    }

    /// The JSON bodies of the chat requests received so far, in arrival order.
    pub fn chat_bodies(&self) -> Vec<serde_json::Value> {
        self.state.chat_bodies.lock().expect("chat bodies lock").clone()
    }

    /// Chat completion requests received so far.
    pub fn chat_requests(&self) -> usize {
        self.state.chat_requests.load(Ordering::SeqCst)
    }

    /// The most embeddings requests that were being handled at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The number of inputs of each embeddings request, in arrival order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.state.batch_sizes.lock().expect("batch sizes lock").clone()
    }
}

impl Drop for MockOllama {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A base URL where nothing listens (a port just bound and released), for connection-refused tests.
pub async fn unused_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}/v1")
}

/// The vector the stub serves for `text`: pseudo-random from a hash of the text, L2-normalised.
pub fn embedding_for(text: &str, dimension: usize) -> Vec<f32> {
    // FNV-1a, then splitmix64: stable across Rust versions, unlike `DefaultHasher`.
    let mut seed = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let raw: Vec<f64> = (0..dimension).map(|_| (next() >> 11) as f64 / (1_u64 << 53) as f64 * 2.0 - 1.0).collect();
    let norm = raw.iter().map(|value| value * value).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
    raw.iter().map(|value| (value / norm) as f32).collect()
}

// ---- HTTP ----

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: EmbeddingsInput,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingsInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    model: String,
    data: Vec<EmbeddingData>,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize)]
struct ErrorDetail {
    message: String,
    r#type: &'static str,
    param: Option<String>,
    code: Option<String>,
}

#[derive(Deserialize)]
#[serde(try_from = "serde_json::Value")]
struct ChatRequest {
    model: String,
    stream: bool,
    body: serde_json::Value,
}

/// The fields the stub reads, and the whole body for [`MockOllama::chat_bodies`]; a body without a string `model`
/// is rejected, as a typed request struct would reject it.
impl TryFrom<serde_json::Value> for ChatRequest {
    type Error = String;

    fn try_from(body: serde_json::Value) -> Result<Self, Self::Error> {
        let model = body.get("model").and_then(serde_json::Value::as_str).ok_or("missing field `model`")?.to_owned();
        let stream = match body.get("stream") {
            None | Some(serde_json::Value::Null) => false,
            Some(value) => value.as_bool().ok_or("`stream` is not a boolean")?,
        };
        Ok(Self { model, stream, body })
    }
}

#[derive(Serialize)]
struct ChatResponse {
    id: &'static str,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<ChatChoice>,
    usage: ChatUsage,
}

#[derive(Serialize)]
struct ChatChoice {
    index: u32,
    message: ChatMessage,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ChatMessage {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ChatUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
    total_tokens: u32,
}

#[derive(Serialize)]
struct ChatChunk {
    id: &'static str,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<ChunkChoice>,
}

#[derive(Serialize)]
struct ChunkChoice {
    index: u32,
    delta: ChunkDelta,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChunkDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

fn routes(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_state = warp::any().map(move || Arc::clone(&state));
    let authorization = warp::header::optional::<String>("authorization");
    let embeddings = warp::path!("v1" / "embeddings")
        .and(warp::post())
        .and(authorization)
        .and(warp::body::json())
        .and(with_state.clone())
        .then(embeddings);
    let chat =
        warp::path!("v1" / "chat" / "completions").and(warp::post()).and(warp::body::json()).and(with_state).then(chat);
    embeddings
        .or(chat)
        .unify()
        .recover(|_rejection: warp::Rejection| async move {
            Ok::<_, Infallible>(error_reply(StatusCode::NOT_FOUND, "not found"))
        })
        .unify()
}

/// Counts a request as in flight until dropped (also when the client gives up and the handler is cancelled).
struct InFlight(Arc<State>);

impl InFlight {
    fn enter(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn embeddings(authorization: Option<String>, request: EmbeddingsRequest, state: Arc<State>) -> Response {
    let _in_flight = InFlight::enter(&state);
    state.requests.fetch_add(1, Ordering::SeqCst);
    let inputs = match request.input {
        EmbeddingsInput::One(text) => vec![text],
        EmbeddingsInput::Many(texts) => texts,
    };
    state.batch_sizes.lock().expect("batch sizes lock").push(inputs.len());
    let latency = *state.latency.lock().expect("latency lock");
    if !latency.is_zero() {
        pause(&state, latency).await;
    }
    if let Some(expected) = &state.api_key
        && authorization.as_deref() != Some(format!("Bearer {expected}").as_str())
    {
        return error_reply(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    let behaviour = state.script.lock().expect("script lock").pop_front();
    let mut dimension = state.dimension;
    let mut answered = inputs.len();
    match behaviour {
        None => {}
        Some(Behaviour::Fail(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error_reply(status, "scripted failure");
        }
        Some(Behaviour::RateLimit(retry_after)) => {
            let reply = error_reply(StatusCode::TOO_MANY_REQUESTS, "rate limit reached");
            return warp::reply::with_header(reply, "retry-after", retry_after).into_response();
        }
        Some(Behaviour::Hang(duration)) => pause(&state, duration).await,
        Some(Behaviour::WrongDimension(wrong)) => dimension = wrong,
        Some(Behaviour::FewerVectors) => answered = answered.saturating_sub(1),
    }
    let data = inputs
        .iter()
        .take(answered)
        .enumerate()
        .map(|(index, text)| EmbeddingData { object: "embedding", index, embedding: embedding_for(text, dimension) })
        .collect();
    let tokens = inputs.iter().map(|text| text.split_whitespace().count()).sum();
    let body = EmbeddingsResponse {
        object: "list",
        model: request.model,
        data,
        usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
    };
    warp::reply::json(&body).into_response()
}

async fn chat(request: ChatRequest, state: Arc<State>) -> Response {
    state.chat_requests.fetch_add(1, Ordering::SeqCst);
    state.chat_bodies.lock().expect("chat bodies lock").push(request.body);
    let scripted = state.chat_script.lock().expect("chat script lock").pop_front();
    let (answer, finish_reason) = match scripted {
        None => (CHAT_ANSWER.to_owned(), "stop"),
        Some(ChatReply::Answer(content)) => (content, "stop"),
        Some(ChatReply::Truncated(content)) => (content, "length"),
        Some(ChatReply::Fail(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error_reply(status, "scripted failure");
        }
        Some(ChatReply::Hang(duration)) => {
            pause(&state, duration).await;
            (CHAT_ANSWER.to_owned(), "stop")
        }
    };
    if !request.stream {
        let body = ChatResponse {
            id: "chatcmpl-mock",
            object: "chat.completion",
            created: 0,
            model: request.model,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage { role: "assistant", content: answer },
                finish_reason,
            }],
            usage: ChatUsage { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        };
        return warp::reply::json(&body).into_response();
    }
    let chunk = |delta: ChunkDelta, finish_reason: Option<&'static str>| {
        let chunk = ChatChunk {
            id: "chatcmpl-mock",
            object: "chat.completion.chunk",
            created: 0,
            model: request.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, finish_reason }],
        };
        warp::sse::Event::default().data(serde_json::to_string(&chunk).expect("serialise chunk"))
    };
    let mut events = vec![chunk(ChunkDelta { role: Some("assistant"), content: None }, None)];
    for word in answer.split_inclusive(' ') {
        events.push(chunk(ChunkDelta { role: None, content: Some(word.to_owned()) }, None));
    }
    events.push(chunk(ChunkDelta { role: None, content: None }, Some(finish_reason)));
    events.push(warp::sse::Event::default().data("[DONE]"));
    let stream = futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
    warp::sse::reply(stream).into_response()
}

fn error_reply(status: StatusCode, message: &str) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = ErrorBody { error: ErrorDetail { message: message.to_owned(), r#type: kind, param: None, code: None } };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// Sleeps for `duration`, or less if the server is stopping.
async fn pause(state: &State, duration: Duration) {
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = shutdown.wait_for(|stopped| *stopped) => {}
    }
}
