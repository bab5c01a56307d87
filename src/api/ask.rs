//! `POST /ask`: an answer to a question from the caller's documents, with numbered citations.
//!
//! The question retrieves the best chunks (as `POST /search` would, in the default mode). With a chat model
//! configured, the model writes the answer from the chunks given as numbered contexts, and `citations` are those
//! chunks; without one, the answer is extractive ([`crate::api::extractive`]): the best sentences, each followed by
//! its marker, and each citation is the quoted sentence with its byte range in the document. Either way `[n]` in the
//! answer is `citations[n-1]`. Nothing retrieved (or, extractive, no sentence sharing a term with the question):
//! [`NO_ANSWER`] with no citations.
//!
//! With `"stream": true` (or `Accept: text/event-stream`) the answer comes as server-sent events: `citations` first,
//! then `delta`s (one per sentence, or the model's tokens) whose texts concatenate to the answer, then `done` with
//! the whole response; a model failing mid-answer ends the stream with an `error` event holding the problem.

use std::convert::Infallible;
use std::time::Instant;

use dossier_projections::vector::SearchHit;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::sse::Event;

use crate::api::context::ApiContext;
use crate::api::error::ApiError;
use crate::api::extractive::best_sentences;
use crate::api::idempotency::StoredResponse;
use crate::api::request::ApiRequest;
use crate::api::retrieval::{Filters, QueryOptions, mode_name};

/// Chunks retrieved when the body names no `top_k`.
pub const DEFAULT_TOP_K: usize = 5;
/// The most chunks one answer may draw on (they all go into one prompt).
pub const MAX_TOP_K: usize = 50;
/// The answer when nothing relevant was found.
pub const NO_ANSWER: &str = "No relevant passage was found in your documents for this question.";

/// The body of `POST /ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskBody {
    /// The question.
    pub question: String,
    /// Chunks to draw on (1 to 50, default 5).
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Only some documents.
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// One source of the answer: `[n]` in the answer.
#[derive(Clone, Debug, Serialize)]
pub struct Citation {
    /// The marker's number.
    pub n: usize,
    /// The document.
    pub document_id: Uuid,
    /// The chunk.
    pub chunk_index: u32,
    /// Where the cited text starts in the document's extracted text (bytes).
    pub byte_start: u64,
    /// Where it ends (exclusive).
    pub byte_end: u64,
    /// The cited text (the quoted sentence, or the whole chunk given to the model).
    pub text: String,
}

/// The answer of `POST /ask` (also the `done` event's data).
#[derive(Clone, Debug, Serialize)]
pub struct AskResponse {
    /// The answer, with `[n]` markers.
    pub answer: String,
    /// The sources, `n` from 1.
    pub citations: Vec<Citation>,
    /// How the answer was written: `extractive` or `llm`.
    pub mode: &'static str,
    /// How the chunks were retrieved: `sparse` or `hybrid`.
    pub search_mode: &'static str,
}

/// `POST /ask` (reader).
pub async fn ask(context: &ApiContext, request: &ApiRequest) -> Result<warp::reply::Response, ApiError> {
    let started = Instant::now();
    let claims = request.claims()?;
    request.query(&[])?;
    let body: AskBody = request.json()?;
    let accepts_events = request.header("Accept")?.is_some_and(|accept| accept.contains("text/event-stream"));
    let stream = body.stream.unwrap_or(accepts_events);
    let options = QueryOptions {
        text_field: "question",
        text: &body.question,
        top_k: body.top_k,
        max_top_k: MAX_TOP_K,
        default_top_k: DEFAULT_TOP_K,
        mode: None,
        filters: body.filters,
    };
    let search = context.retrieval.request(&claims.tenant, options)?;
    let question = search.text.clone();
    let search_mode = mode_name(search.mode);
    let hits = context.retrieval.search(search).await?;
    let mode = if context.chat.is_some() { "llm" } else { "extractive" };
    let response = |answer: String, citations| AskResponse { answer, citations, mode, search_mode };
    let (citations, pieces): (Vec<Citation>, Pieces) = match &context.chat {
        _ if hits.is_empty() => (Vec::new(), Pieces::Ready(vec![NO_ANSWER.to_owned()])),
        None => extractive(context, &question, &hits),
        Some(chat) => {
            let citations: Vec<Citation> =
                hits.iter().enumerate().map(|(index, hit)| chunk_citation(index, hit)).collect();
            let contexts: Vec<String> = hits.iter().map(|hit| hit.text.clone()).collect();
            if stream {
                (citations, Pieces::Streamed(Box::pin(chat.answer_stream(&question, &contexts).await?)))
            } else {
                let answer = chat.answer(&question, &contexts).await?;
                (citations, Pieces::Ready(vec![answer]))
            }
        }
    };
    tracing::info!(
        tenant = %claims.tenant, mode, search_mode, hits = hits.len(), citations = citations.len(), stream,
        took_ms = started.elapsed().as_millis() as u64, "asked"
    );
    match pieces {
        Pieces::Ready(pieces) if !stream => {
            Ok(StoredResponse::json(StatusCode::OK, &response(pieces.concat(), citations))?.into_response())
        }
        Pieces::Ready(pieces) => Ok(events(
            context,
            request,
            response(String::new(), citations),
            futures::stream::iter(pieces.into_iter().map(Ok)),
        )),
        Pieces::Streamed(pieces) => Ok(events(context, request, response(String::new(), citations), pieces)),
    }
}

/// The answer's text, whole or as it is generated.
enum Pieces {
    /// Pieces whose concatenation is the answer.
    Ready(Vec<String>),
    /// The model's tokens.
    Streamed(std::pin::Pin<Box<dyn Stream<Item = Result<String, ApiError>> + Send>>),
}

fn extractive(context: &ApiContext, question: &str, hits: &[SearchHit]) -> (Vec<Citation>, Pieces) {
    let quotes = best_sentences(context.retrieval.bm25(), question, hits);
    if quotes.is_empty() {
        return (Vec::new(), Pieces::Ready(vec![NO_ANSWER.to_owned()]));
    }
    let mut citations = Vec::with_capacity(quotes.len());
    let mut pieces = Vec::with_capacity(quotes.len());
    for (index, quote) in quotes.into_iter().enumerate() {
        let n = index + 1;
        let hit = &hits[quote.hit];
        let separator = if index == 0 { "" } else { " " };
        pieces.push(format!("{separator}{} [{n}]", quote.text));
        citations.push(Citation {
            n,
            document_id: hit.document_id,
            chunk_index: hit.chunk_index,
            byte_start: quote.byte_start,
            byte_end: quote.byte_end,
            text: quote.text,
        });
    }
    (citations, Pieces::Ready(pieces))
}

fn chunk_citation(index: usize, hit: &SearchHit) -> Citation {
    Citation {
        n: index + 1,
        document_id: hit.document_id,
        chunk_index: hit.chunk_index,
        byte_start: hit.byte_start,
        byte_end: hit.byte_end,
        text: hit.text.clone(),
    }
}

#[derive(Serialize)]
struct CitationsEvent<'a> {
    citations: &'a [Citation],
    mode: &'static str,
    search_mode: &'static str,
}

#[derive(Serialize)]
struct DeltaEvent<'a> {
    text: &'a str,
}

/// The answer as server-sent events: `citations`, `delta`s, then `done` (or `error`); ends early on shutdown.
fn events(
    context: &ApiContext,
    request: &ApiRequest,
    head: AskResponse,
    pieces: impl Stream<Item = Result<String, ApiError>> + Send + 'static,
) -> warp::reply::Response {
    use warp::Reply;
    let first = event(
        "citations",
        &CitationsEvent { citations: &head.citations, mode: head.mode, search_mode: head.search_mode },
    );
    let request_id = request.request_id.clone();
    let state = (Box::pin(pieces), Some(head));
    let rest = futures::stream::unfold(state, move |(mut pieces, head)| {
        let request_id = request_id.clone();
        async move {
            let mut head = head?;
            match pieces.next().await {
                Some(Ok(piece)) => {
                    head.answer.push_str(&piece);
                    Some((event("delta", &DeltaEvent { text: &piece }), (pieces, Some(head))))
                }
                Some(Err(error)) => Some((event("error", &error.problem(Some(&request_id))), (pieces, None))),
                None => {
                    head.answer = head.answer.trim().to_owned();
                    Some((event("done", &head), (pieces, None)))
                }
            }
        }
    });
    // The model's stream is not `Sync`, which warp's SSE body needs: a task drives it and hands the events over. It
    // stops when the client goes away (the receiver is dropped) or the answer ends.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut rest = std::pin::pin!(rest);
        while let Some(event) = rest.next().await {
            if sender.send(event).await.is_err() {
                break;
            }
        }
    });
    let received = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    });
    let mut shutdown = context.shutdown.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let stream = futures::stream::once(std::future::ready(first))
        .chain(received)
        .take_until(Box::pin(stopping))
        .map(Ok::<_, Infallible>);
    warp::sse::reply(stream).into_response()
}

fn event<T: Serialize>(name: &'static str, data: &T) -> Event {
    let data = serde_json::to_string(data)
        .unwrap_or_else(|error| serde_json::json!({ "error": error.to_string() }).to_string());
    Event::default().event(name).data(data)
}
