//! Retrieval over HTTP: `POST /search` (sparse, hybrid with the stub embedder, tenant isolation, filters, deletion)
//! and `POST /ask` (extractive with citations into the document, streamed as SSE, written by the stub chat model,
//! the chat model failing), and every bad input a 400 naming its field.

use std::time::Duration;

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::contract_tests;
use crate::support::api::{Answer, TestApi, eventually, token};
use crate::support::mock_ollama::{ChatReply, MockOllama};
use crate::support::{Backend, Scratch};

contract_tests!(
    search_finds_the_matching_chunk_with_its_byte_range_and_only_in_the_callers_tenant,
    search_filters_by_document_ids_and_metadata,
    search_no_longer_finds_a_deleted_document,
    hybrid_search_with_the_stub_embedder_finds_the_document,
    extractive_ask_cites_sentences_whose_byte_ranges_point_into_the_document,
    streaming_ask_sends_citations_then_deltas_then_done,
    llm_ask_sends_numbered_contexts_and_returns_the_models_answer,
    llm_failures_return_502_and_504_problems,
    bad_search_and_ask_bodies_return_400_naming_the_field,
);

const FRUIT: &str = "The first paragraph talks about apples and their orchards.\n\n\
                     Pears ripen after picking. Plums are purple and sweet.\n\n\
                     The last paragraph is about citrus groves in the south.";

/// A server without rate limit (tests poll search) and with small chunks, so a document has several.
async fn start(scratch: &Scratch, extra: &[(&str, &str)]) -> TestApi {
    let mut settings = vec![("RATE_LIMIT_PER_MINUTE", "0"), ("CHUNK_MAX_CHARS", "70"), ("CHUNK_OVERLAP", "5")];
    settings.extend_from_slice(extra);
    TestApi::start_with(scratch, &settings).await
}

/// Uploads a text document with `metadata`, waits until it is ready and search finds it by `probe`; returns its id.
async fn upload_searchable(api: &TestApi, token: &str, name: &str, text: &str, metadata: Value, probe: &str) -> String {
    let body = json!({ "filename": name, "text": text, "metadata": metadata });
    let uploaded = api.json(Method::POST, "/documents", token, &body).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(token, &id, "ready").await;
    api.wait_until_searchable(token, probe, &id).await;
    id
}

fn results(answer: &Answer) -> &Vec<Value> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json["results"].as_array().expect("results")
}

fn document_ids(answer: &Answer) -> Vec<String> {
    results(answer).iter().map(|result| result["document_id"].as_str().expect("document_id").to_owned()).collect()
}

/// The slice of `text` a result or citation says it covers.
fn slice<'a>(text: &'a str, item: &Value) -> &'a str {
    let start = item["byte_start"].as_u64().expect("byte_start") as usize;
    let end = item["byte_end"].as_u64().expect("byte_end") as usize;
    &text[start..end]
}

async fn search_finds_the_matching_chunk_with_its_byte_range_and_only_in_the_callers_tenant(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let reader = token("rita", "acme", &[Role::Reader]);
    let globex = token("bob", "globex", &[Role::Writer]);
    let id = upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "apples").await;
    let other = "Notes on databases and indexes, nothing about orchards.";
    upload_searchable(&api, &writer, "db.txt", other, json!({}), "databases").await;
    upload_searchable(&api, &globex, "theirs.txt", "Pears and plums in the globex orchard.", json!({}), "pears").await;

    let found = api.search(&reader, &json!({ "query": "when do pears ripen?" })).await;
    assert_eq!(found.json["mode"], json!("sparse"), "no model configured: sparse by default");
    assert!(found.json["took_ms"].is_u64(), "{}", found.text);
    let top = &results(&found)[0];
    assert_eq!(top["document_id"], json!(id), "{}", found.text);
    assert!(top["text"].as_str().is_some_and(|text| text.contains("Pears ripen")), "{}", found.text);
    assert_eq!(slice(FRUIT, top), top["text"].as_str().expect("text"), "the byte range is the chunk's");
    assert!(top["chunk_index"].as_u64().is_some_and(|index| index >= 1), "not the first chunk: {top}");
    assert!(top["score"].as_f64().is_some_and(|score| score > 0.0));
    assert!(
        document_ids(&found).iter().all(|found| *found == id),
        "globex's pears and the database note are not acme's pears: {}",
        found.text
    );
    let limited = api.search(&reader, &json!({ "query": "paragraph orchards databases", "top_k": 1 })).await;
    assert_eq!(results(&limited).len(), 1);

    // Another tenant's token finds only its own documents, even for the same words.
    let theirs = api.search(&globex, &json!({ "query": "apples pears plums citrus" })).await;
    assert!(!document_ids(&theirs).contains(&id), "{}", theirs.text);
    assert_eq!(results(&theirs).len(), 1, "{}", theirs.text);
    let nobody = token("eve", "initech", &[Role::Reader]);
    assert_eq!(results(&api.search(&nobody, &json!({ "query": "pears" })).await).len(), 0);
    // Nothing but stop words matches nothing.
    assert_eq!(results(&api.search(&reader, &json!({ "query": "the of and" })).await).len(), 0);
    let anonymous = api.send(api.request(Method::POST, "/search", None).body(r#"{"query":"pears"}"#)).await;
    anonymous.assert_problem(401, "unauthenticated");
    api.stop().await;
}

async fn search_filters_by_document_ids_and_metadata(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let mut ids = Vec::new();
    for (team, year, draft) in [("red", 2024, false), ("blue", 2025, true)] {
        let text = format!("Orchard report: the {team} team's apples.");
        let metadata = json!({ "team": team, "year": year, "draft": draft });
        ids.push(upload_searchable(&api, &writer, &format!("{team}.txt"), &text, metadata, "orchard").await);
    }
    let (red, blue) = (ids[0].clone(), ids[1].clone());
    let all = api.search(&writer, &json!({ "query": "orchard report" })).await;
    let mut both = document_ids(&all);
    both.sort();
    let mut expected = vec![red.clone(), blue.clone()];
    expected.sort();
    assert_eq!(both, expected);

    let only = |filters: Value| json!({ "query": "orchard report", "filters": filters });
    let by_id = api.search(&writer, &only(json!({ "document_ids": [blue] }))).await;
    assert_eq!(document_ids(&by_id), std::slice::from_ref(&blue));
    let by_ids = api.search(&writer, &only(json!({ "document_ids": [blue, red] }))).await;
    assert_eq!(document_ids(&by_ids).len(), 2);
    for (metadata, expected) in [
        (json!({"team": "red"}), vec![red.clone()]),
        (json!({"year": 2025}), vec![blue.clone()]),
        (json!({"draft": true}), vec![blue.clone()]),
        (json!({"team": "red", "year": 2025}), vec![]),
        (json!({"team": "green"}), vec![]),
    ] {
        let found = api.search(&writer, &only(json!({ "metadata": metadata }))).await;
        assert_eq!(document_ids(&found), expected, "metadata {metadata}: {}", found.text);
    }
    let unknown = api.search(&writer, &only(json!({ "document_ids": [uuid::Uuid::now_v7()] }))).await;
    assert_eq!(results(&unknown).len(), 0);
    api.stop().await;
}

async fn search_no_longer_finds_a_deleted_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let gone = upload_searchable(&api, &writer, "gone.txt", "Quinces are fragrant.", json!({}), "quinces").await;
    let kept = upload_searchable(&api, &writer, "kept.txt", "Quinces make jelly.", json!({}), "quinces").await;
    let deleted = api.send(api.request(Method::DELETE, &format!("/documents/{gone}"), Some(&writer))).await;
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    eventually("the deleted document is still found", || async {
        let found = api.search(&writer, &json!({ "query": "quinces" })).await;
        if document_ids(&found) == [kept.clone()] { Ok(()) } else { Err(found.text) }
    })
    .await;
    let asked = api.ask(&writer, &json!({ "question": "Are quinces fragrant?" })).await;
    assert!(asked.json["citations"].as_array().expect("citations").iter().all(|c| c["document_id"] == json!(kept)));
    api.stop().await;
}

async fn hybrid_search_with_the_stub_embedder_finds_the_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let mock = MockOllama::start().await;
    let stub = [("LLM_BASE_URL", mock.base_url()), ("EMBEDDING_MODEL", "stub-embed"), ("EMBEDDING_DIMENSIONS", "8")];
    let api = start(&scratch, &stub).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "pears").await;
    let before = mock.requests();
    let hybrid = api.search(&writer, &json!({ "query": "Pears ripen after picking." })).await;
    assert_eq!(hybrid.json["mode"], json!("hybrid"), "a model is configured: hybrid by default");
    assert_eq!(mock.requests(), before + 1, "the query was embedded once");
    let top = &results(&hybrid)[0];
    assert_eq!(top["document_id"], json!(id));
    assert!(top["text"].as_str().is_some_and(|text| text.contains("Pears ripen")), "{}", hybrid.text);
    // Dense alone: the stub's vectors are a hash of the text, so the chunk's exact text is its own nearest neighbour.
    let chunk = top["text"].as_str().expect("text");
    let dense = api.search(&writer, &json!({ "query": chunk, "mode": "dense", "top_k": 1 })).await;
    assert_eq!(dense.json["mode"], json!("dense"));
    assert_eq!(results(&dense)[0]["text"], json!(chunk), "{}", dense.text);
    // The embedding server failing is a 502 naming it, not a 500.
    mock.fail_next(1);
    let failed = api.search(&writer, &json!({ "query": "pears", "mode": "hybrid" })).await;
    assert!(failed.assert_problem(502, "upstream_failed")["detail"].as_str().is_some_and(|d| d.contains("embedding")));
    let sparse = api.search(&writer, &json!({ "query": "pears", "mode": "sparse" })).await;
    assert_eq!(sparse.json["mode"], json!("sparse"));
    api.stop().await;
}

async fn extractive_ask_cites_sentences_whose_byte_ranges_point_into_the_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let reader = token("rita", "acme", &[Role::Reader]);
    let id = upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "plums").await;
    let asked = api.ask(&reader, &json!({ "question": "What colour are plums?" })).await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    assert_eq!(asked.json["mode"], json!("extractive"));
    let answer = asked.json["answer"].as_str().expect("answer");
    let citations = asked.json["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{}", asked.text);
    assert_eq!(citations[0]["text"], json!("Plums are purple and sweet."), "the best sentence first: {}", asked.text);
    for (index, citation) in citations.iter().enumerate() {
        let n = index + 1;
        assert_eq!(citation["n"], json!(n));
        assert_eq!(citation["document_id"], json!(id));
        let text = citation["text"].as_str().expect("text");
        assert_eq!(slice(FRUIT, citation), text, "citation {n}'s byte range is its text in the document");
        assert!(answer.contains(&format!("{text} [{n}]")), "each sentence is followed by its marker: {answer}");
    }
    assert!(answer.starts_with("Plums are purple and sweet. [1]"), "{answer}");

    let nothing = api.ask(&reader, &json!({ "question": "How do submarines dive?" })).await;
    assert_eq!(nothing.status, 200, "{}", nothing.text);
    assert_eq!(nothing.json["citations"], json!([]));
    assert!(nothing.json["answer"].as_str().is_some_and(|a| a.contains("No relevant passage")), "{}", nothing.text);
    api.stop().await;
}

/// Reads a finished SSE body into (event, data) pairs.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

/// Asserts the `citations`, `delta`..., `done` order and that the deltas spell the final answer; returns the events.
#[track_caller]
fn assert_answer_stream(answer: &Answer) -> Vec<(String, Value)> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.header("content-type").is_some_and(|kind| kind.starts_with("text/event-stream")));
    let events = sse_events(&answer.text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"citations"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(names[1..names.len() - 1].iter().all(|name| *name == "delta") && names.len() > 2, "{names:?}");
    let spelled: String =
        events.iter().filter(|(name, _)| name == "delta").filter_map(|(_, d)| d["text"].as_str()).collect();
    let done = &events[events.len() - 1].1;
    assert_eq!(done["answer"].as_str(), Some(spelled.trim()), "the deltas spell the answer");
    assert_eq!(done["citations"], events[0].1["citations"], "done repeats the citations sent first");
    events
}

async fn streaming_ask_sends_citations_then_deltas_then_done(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "plums").await;
    let question = "Which paragraph talks about apples and plums?";
    let streamed = api.ask(&writer, &json!({ "question": question, "stream": true })).await;
    let events = assert_answer_stream(&streamed);
    let citations = events[0].1["citations"].as_array().expect("citations").len();
    let deltas = events.iter().filter(|(name, _)| name == "delta").count();
    assert_eq!(deltas, citations, "extractive: one delta per cited sentence");
    // The same answer as the JSON one.
    let whole = api.ask(&writer, &json!({ "question": question })).await;
    assert_eq!(events[events.len() - 1].1["answer"], whole.json["answer"]);
    // Accept: text/event-stream asks for the same.
    let builder = api
        .request(Method::POST, "/ask", Some(&writer))
        .header("accept", "text/event-stream")
        .header("content-type", "application/json")
        .body(json!({ "question": question }).to_string());
    assert_answer_stream(&api.send(builder).await);
    api.stop().await;
}

async fn llm_ask_sends_numbered_contexts_and_returns_the_models_answer(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let mock = MockOllama::start().await;
    let api = start(&scratch, &[("LLM_BASE_URL", mock.base_url()), ("CHAT_MODEL", "stub-chat")]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "plums").await;
    mock.push_chat_answer("Plums are purple [1].");
    let question = "What colour are plums?";
    let asked = api.ask(&writer, &json!({ "question": question, "top_k": 2 })).await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    assert_eq!(asked.json["answer"], json!("Plums are purple [1]."));
    assert_eq!(asked.json["mode"], json!("llm"));
    let citations = asked.json["citations"].as_array().expect("citations").clone();
    assert!(!citations.is_empty() && citations.len() <= 2, "{}", asked.text);
    let bodies = mock.chat_bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["model"], json!("stub-chat"));
    let prompt = bodies[0]["messages"][0]["content"].as_str().expect("prompt");
    assert!(prompt.contains(&format!("Question: {question}")), "{prompt}");
    for citation in &citations {
        assert_eq!(citation["document_id"], json!(id));
        let text = citation["text"].as_str().expect("text");
        assert_eq!(slice(FRUIT, citation), text, "an LLM citation is the whole chunk");
        let numbered = format!("[{}] {}", citation["n"], text.trim());
        assert!(prompt.contains(&numbered), "the prompt numbers the contexts as cited: {numbered:?} in {prompt}");
    }
    assert!(citations[0]["text"].as_str().is_some_and(|text| text.contains("Plums")), "{}", asked.text);

    // Nothing retrieved: the model is not asked to make something up.
    let asked_before = mock.chat_requests();
    let nothing = api.ask(&writer, &json!({ "question": "How do submarines dive?" })).await;
    assert_eq!((nothing.status, nothing.json["citations"].clone()), (200, json!([])), "{}", nothing.text);
    assert!(nothing.json["answer"].as_str().is_some_and(|a| a.contains("No relevant passage")), "{}", nothing.text);
    assert_eq!(mock.chat_requests(), asked_before);

    mock.push_chat_answer("Purple, see [1].");
    let streamed = api.ask(&writer, &json!({ "question": question, "stream": true })).await;
    let events = assert_answer_stream(&streamed);
    assert_eq!(events[events.len() - 1].1["answer"], json!("Purple, see [1]."));
    assert!(events.iter().filter(|(name, _)| name == "delta").count() >= 3, "the model's tokens: {events:?}");
    assert_eq!(mock.chat_bodies()[1]["stream"], json!(true));
    api.stop().await;
}

async fn llm_failures_return_502_and_504_problems(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let mock = MockOllama::start().await;
    let llm = [("LLM_BASE_URL", mock.base_url()), ("CHAT_MODEL", "stub-chat"), ("LLM_TIMEOUT_MS", "500")];
    let api = start(&scratch, &llm).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    upload_searchable(&api, &writer, "fruit.txt", FRUIT, json!({}), "plums").await;
    let question = json!({ "question": "What colour are plums?" });
    mock.push_chat(ChatReply::Fail(500));
    let failed = api.ask(&writer, &question).await;
    let detail = failed.assert_problem(502, "upstream_failed")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains("stub-chat") && detail.contains("500"), "{detail}");
    mock.push_chat(ChatReply::Fail(503));
    let streamed = api.ask(&writer, &json!({ "question": "What colour are plums?", "stream": true })).await;
    streamed.assert_problem(502, "upstream_failed");
    mock.push_chat(ChatReply::Truncated("Plums are".into()));
    api.ask(&writer, &question).await.assert_problem(502, "upstream_failed");
    mock.push_chat(ChatReply::Hang(Duration::from_secs(10)));
    let slow = api.ask(&writer, &question).await;
    assert!(slow.assert_problem(504, "upstream_timeout")["detail"].as_str().is_some_and(|d| d.contains("stub-chat")));
    // Nothing was answered in their place: the next question gets the model's answer again.
    assert_eq!(api.ask(&writer, &question).await.json["mode"], json!("llm"));
    api.stop().await;
}

async fn bad_search_and_ask_bodies_return_400_naming_the_field(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = start(&scratch, &[]).await;
    let reader = token("rita", "acme", &[Role::Reader]);
    let search_cases = [
        (json!({}), "query"),
        (json!({ "query": "" }), "query"),
        (json!({ "query": "   " }), "query"),
        (json!({ "query": "x".repeat(4_001) }), "query"),
        (json!({ "query": 5 }), "query"),
        (json!({ "query": "pears", "top_k": 0 }), "top_k"),
        (json!({ "query": "pears", "top_k": 1001 }), "top_k"),
        (json!({ "query": "pears", "top_k": -1 }), "top_k"),
        (json!({ "query": "pears", "top_k": "5" }), "top_k"),
        (json!({ "query": "pears", "top_k": 2.5 }), "top_k"),
        (json!({ "query": "pears", "mode": "fuzzy" }), "mode"),
        (json!({ "query": "pears", "mode": "dense" }), "mode"),
        (json!({ "query": "pears", "mode": "hybrid" }), "mode"),
        (json!({ "query": "pears", "limit": 5 }), "limit"),
        (json!({ "query": "pears", "filters": { "tenant": "globex" } }), "tenant"),
        (json!({ "query": "pears", "filters": { "document_ids": ["nope"] } }), "filters.document_ids[0]"),
        (json!({ "query": "pears", "filters": { "document_ids": "nope" } }), "filters.document_ids"),
        (json!({ "query": "pears", "filters": { "metadata": { "a.b": "x" } } }), "filters.metadata.a.b"),
        (json!({ "query": "pears", "filters": { "metadata": { "": "x" } } }), "filters.metadata."),
        (json!({ "query": "pears", "filters": { "metadata": { "score": 1.5 } } }), "filters.metadata.score"),
        (json!({ "query": "pears", "filters": { "metadata": { "tags": ["a"] } } }), "filters.metadata.tags"),
        (json!({ "query": "pears", "filters": { "metadata": { "owner": null } } }), "filters.metadata.owner"),
        (json!({ "query": "pears", "filters": { "metadata": "team=red" } }), "filters.metadata"),
        (json!(["pears"]), "$"),
    ];
    for (body, field) in search_cases {
        let answer = api.search(&reader, &body).await;
        let problem = answer.assert_problem(400, "invalid_body");
        assert_eq!(problem["field"], json!(field), "{body} → {}", answer.text);
        assert!(problem["detail"].as_str().is_some_and(|detail| !detail.is_empty()));
    }
    let dense = api.search(&reader, &json!({ "query": "pears", "mode": "dense" })).await;
    assert!(dense.json["detail"].as_str().is_some_and(|d| d.contains("embedding model")), "{}", dense.text);
    let ask_cases = [
        (json!({ "query": "pears" }), "query"),
        (json!({ "question": "" }), "question"),
        (json!({ "question": "pears", "top_k": 0 }), "top_k"),
        (json!({ "question": "pears", "top_k": 51 }), "top_k"),
        (json!({ "question": "pears", "stream": "yes" }), "stream"),
        (json!({ "question": "pears", "mode": "sparse" }), "mode"),
        (json!({ "question": "pears", "filters": { "document_ids": [1] } }), "filters.document_ids[0]"),
    ];
    for (body, field) in ask_cases {
        let answer = api.ask(&reader, &body).await;
        assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!(field), "{body} → {}", answer.text);
    }
    let not_json = api.send(api.request(Method::POST, "/search", Some(&reader)).body("query=pears")).await;
    not_json.assert_problem(400, "invalid_body");
    let query_string = api.json(Method::POST, "/search?top_k=5", &reader, &json!({ "query": "pears" })).await;
    query_string.assert_problem(400, "invalid_query");
    api.send(api.request(Method::GET, "/search", Some(&reader))).await.assert_problem(405, "method_not_allowed");
    api.stop().await;
}
