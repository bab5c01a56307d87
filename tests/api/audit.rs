//! The audit trail over HTTP: the end-to-end journey (upload, ready, search, ask, audit trail, history, delete,
//! verify), the
//! global log, live events resumed with Last-Event-ID, and tamper detection.

use std::time::Duration;

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::contract_tests;
use crate::support::api::{TestApi, eventually, read_sse, token};
use crate::support::mock_ollama::MockOllama;
use crate::support::{Backend, Scratch};

/// How long a test waits for live events.
const SSE_WAIT: Duration = Duration::from_secs(30);

contract_tests!(
    end_to_end_upload_ready_search_ask_audit_history_delete_verify,
    global_log_pages_the_tenants_events_in_position_order,
    live_events_resume_after_last_event_id_and_follow_new_commits,
    verify_after_tampering_names_the_altered_event,
    embedding_vectors_are_summarised_unless_asked_for_and_retries_are_counted,
    live_events_fan_out_to_every_client_from_one_follower,
    live_client_joining_during_commits_sees_every_position_once,
);

async fn end_to_end_upload_ready_search_ask_audit_history_delete_verify(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start_with(&scratch, &[("CHUNK_MAX_CHARS", "40"), ("CHUNK_OVERLAP", "5")]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let admin = token("root", "acme", &[Role::Admin]);
    let text = "The first paragraph talks about apples.\n\nThe second one is about pears and plums.";
    let uploaded = api.upload_text(&writer, "fruit.txt", text).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().expect("id").to_owned();
    let ready = api.wait_for_status(&writer, &id, "ready").await;
    assert!(ready["chunk_count"].as_u64().is_some_and(|chunks| chunks >= 2), "{ready}");

    // Searchable once the vector projection has it; the chunk found covers its byte range of the text.
    api.wait_until_searchable(&writer, "pears", &id).await;
    let found = api.search(&writer, &json!({ "query": "pears and plums", "top_k": 3 })).await;
    assert_eq!(found.status, 200, "{}", found.text);
    let top = &found.json["results"][0];
    assert_eq!(top["document_id"], json!(id));
    let range = |item: &Value| {
        item["byte_start"].as_u64().unwrap_or(0) as usize..item["byte_end"].as_u64().unwrap_or(0) as usize
    };
    assert_eq!(Some(&text[range(top)]), top["text"].as_str(), "{}", found.text);
    assert!(text[range(top)].contains("pears"));
    let asked = api.ask(&writer, &json!({ "question": "What is the second paragraph about?" })).await;
    assert_eq!(asked.status, 200, "{}", asked.text);
    let citation = &asked.json["citations"][0];
    assert_eq!(citation["document_id"], json!(id), "{}", asked.text);
    assert_eq!(Some(&text[range(citation)]), citation["text"].as_str());
    assert!(asked.json["answer"].as_str().is_some_and(|answer| answer.contains("[1]")), "{}", asked.text);

    let trail = api.get(&format!("/documents/{id}/events"), &writer).await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    let events = trail.json["events"].as_array().expect("events").clone();
    let types: Vec<&str> = events.iter().filter_map(|event| event["event_type"].as_str()).collect();
    assert_eq!(types, ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "DocumentReady"]);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["version"], json!(index + 1));
        assert_eq!(event["hash"].as_str().map(str::len), Some(64));
        let previous = if index == 0 { json!("0".repeat(64)) } else { events[index - 1]["hash"].clone() };
        assert_eq!(event["prev_hash"], previous, "the chain links each event to the one before");
        assert_eq!(event["metadata"]["tenant_id"], json!("acme"));
    }
    let chunked = &events[2]["data"]["chunks"];
    assert!(chunked[0]["text"].as_str().is_some_and(|chunk| text.starts_with(chunk)));

    let page = api.get(&format!("/documents/{id}/events?after_version=1&limit=2"), &writer).await;
    let versions: Vec<&Value> = page.json["events"].as_array().expect("events").iter().map(|e| &e["version"]).collect();
    assert_eq!(versions, [&json!(2), &json!(3)]);
    assert_eq!(page.json["next_after_version"], json!(3));

    let first = api.get(&format!("/documents/{id}/history?version=1"), &writer).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!((first.json["status"].clone(), first.json["version"].clone()), (json!("uploaded"), json!(1)));
    assert_eq!(first.json["chunk_count"], json!(0));
    assert_eq!(first.header("etag"), Some("\"1\""));
    let at = events[2]["recorded_at"].as_str().expect("recorded_at");
    let then = api.get(&format!("/documents/{id}/history?at={}", urlencode(at)), &writer).await;
    assert_eq!(then.status, 200, "{}", then.text);
    assert!(then.json["version"].as_u64().is_some_and(|version| version >= 3), "{}", then.text);
    api.get(&format!("/documents/{id}/history?version=99"), &writer).await.assert_problem(404, "not_found");
    api.get(&format!("/documents/{id}/history?at=2000-01-01T00:00:00Z"), &writer)
        .await
        .assert_problem(404, "not_found");

    let deleted = api.send(api.request(Method::DELETE, &format!("/documents/{id}"), Some(&writer))).await;
    assert_eq!(deleted.status, 202, "{}", deleted.text);
    api.get(&format!("/documents/{id}"), &writer).await.assert_problem(404, "document_not_found");
    // Gone from lists once projected.
    eventually("the deleted document is still listed", || async {
        let listed = api.get("/documents", &writer).await;
        if listed.json["documents"] == json!([]) { Ok(()) } else { Err(listed.text) }
    })
    .await;
    eventually("the deleted document is still found by search", || async {
        let found = api.search(&writer, &json!({ "query": "pears apples" })).await;
        if found.json["results"] == json!([]) { Ok(()) } else { Err(found.text) }
    })
    .await;
    let still = api.get(&format!("/documents/{id}/history?version=1"), &writer).await;
    assert_eq!(still.status, 200, "the stream stays for audit: {}", still.text);

    let verify = api.get("/audit/verify", &admin).await;
    assert_eq!(verify.status, 200, "{}", verify.text);
    assert_eq!(verify.json["ok"], json!(true));
    assert_eq!(verify.json["events"], json!(5));
    assert!(verify.json.get("first_bad").is_none());
    api.stop().await;
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn global_log_pages_the_tenants_events_in_position_order(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let acme = token("alice", "acme", &[Role::Admin]);
    let globex = token("bob", "globex", &[Role::Writer]);
    let mine = api.upload_text(&acme, "a.txt", "acme text").await.json["id"].as_str().expect("id").to_owned();
    let theirs = api.upload_text(&globex, "b.txt", "globex text").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&acme, &mine, "ready").await;
    api.wait_for_status(&globex, &theirs, "ready").await;
    let mut positions = Vec::new();
    let mut after = 0;
    loop {
        let page = api.get(&format!("/events?after={after}&limit=2"), &acme).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let events = page.json["events"].as_array().expect("events").clone();
        for event in &events {
            assert_eq!(event["metadata"]["tenant_id"], json!("acme"), "only the caller's tenant");
            positions.push(event["position"].as_u64().expect("position"));
        }
        let next = page.json["next_after"].as_u64().expect("next_after");
        if events.is_empty() || next >= page.json["head"].as_u64().expect("head") {
            break;
        }
        assert!(next > after, "next_after moves on");
        after = next;
    }
    assert_eq!(positions.len(), 4, "acme's four events: {positions:?}");
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
    api.stop().await;
}

async fn live_events_resume_after_last_event_id_and_follow_new_commits(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let other = token("bob", "globex", &[Role::Writer]);
    let first = api.upload_text(&admin, "a.txt", "first").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&admin, &first, "ready").await;
    api.upload_text(&other, "b.txt", "another tenant").await;
    let mut response = api
        .request(Method::GET, "/events/live", Some(&admin))
        .header("last-event-id", "1")
        .send()
        .await
        .expect("connect");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().is_ok_and(|kind| kind.starts_with("text/event-stream")));
    // Resumed after position 1: the rest of the first document's events.
    let resumed =
        read_sse(&mut response, SSE_WAIT, |events| events.iter().any(|(_, name, _)| name == "DocumentReady")).await;
    assert_eq!(resumed[0].0, "2", "resumes right after Last-Event-ID");
    assert!(resumed.iter().all(|(_, _, data)| data["metadata"]["tenant_id"] == json!("acme")));
    // New commits arrive live.
    let second = api.upload_text(&admin, "c.txt", "second").await.json["id"].as_str().expect("id").to_owned();
    let live = read_sse(&mut response, SSE_WAIT, |events| {
        events.iter().any(|(_, name, data)| {
            name == "DocumentUploaded" && data["stream_id"] == json!(format!("document-{second}"))
        })
    })
    .await;
    let ids: Vec<u64> = live.iter().map(|(id, _, _)| id.parse().expect("numeric id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let bad =
        api.send(api.request(Method::GET, "/events/live", Some(&admin)).header("last-event-id", "yesterday")).await;
    assert_eq!(bad.assert_problem(400, "invalid_header")["field"], json!("Last-Event-ID"));
    drop(response);
    api.stop().await;
}

async fn verify_after_tampering_names_the_altered_event(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let id = api.upload_text(&admin, "a.txt", "original text").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&admin, &id, "ready").await;
    assert_eq!(api.get("/audit/verify", &admin).await.json["ok"], json!(true));
    let changed =
        scratch.execute_sql("UPDATE events SET data = replace(data, 'a.txt', 'b.txt') WHERE position = 1").await;
    assert_eq!(changed, 1);
    let verify = api.get("/audit/verify", &admin).await;
    assert_eq!(verify.status, 200, "{}", verify.text);
    assert_eq!(verify.json["ok"], json!(false));
    assert_eq!(verify.json["first_bad"]["position"], json!(1));
    assert_eq!(verify.json["first_bad"]["stream_id"], json!(format!("document-{id}")));
    assert_eq!(verify.json["first_bad"]["problem"], json!("hash_mismatch"));
    api.stop().await;
}

async fn embedding_vectors_are_summarised_unless_asked_for_and_retries_are_counted(backend: Backend) {
    use sha2::Digest;
    let scratch = Scratch::new(backend).await;
    let mock = MockOllama::start().await;
    let settings =
        [("LLM_BASE_URL", mock.base_url()), ("EMBEDDING_MODEL", "stub-embed"), ("EMBEDDING_DIMENSIONS", "8")];
    let api = TestApi::start_with(&scratch, &settings).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    mock.fail_next(1);
    let id = api.upload_text(&writer, "a.txt", "embed me").await.json["id"].as_str().expect("id").to_owned();
    let ready = api.wait_for_status(&writer, &id, "ready").await;
    assert_eq!(ready["embedding"], json!({"model": "stub-embed", "dimensions": 8}));
    let find = |events: &Value, event_type: &str| {
        events["events"].as_array().expect("events").iter().find(|e| e["event_type"] == event_type).cloned()
    };
    let summarised = api.get(&format!("/documents/{id}/events"), &writer).await.json;
    let embedded = find(&summarised, "ChunksEmbedded").expect("ChunksEmbedded");
    assert_eq!(embedded["data"]["vectors"]["count"], json!(1));
    assert_eq!(embedded["data"]["vectors"]["omitted"], json!(true));
    let full = api.get(&format!("/documents/{id}/events?include=vectors"), &writer).await.json;
    let vectors = find(&full, "ChunksEmbedded").expect("ChunksEmbedded")["data"]["vectors"].clone();
    let vectors: Vec<String> = serde_json::from_value(vectors).expect("the vectors themselves");
    let mut hasher = sha2::Sha256::new();
    for vector in &vectors {
        hasher.update(vector.as_bytes());
        hasher.update(b"\n");
    }
    assert_eq!(embedded["data"]["vectors"]["sha256"], json!(hex::encode(hasher.finalize())));
    let failed = find(&summarised, "StageAttemptFailed").expect("the failed attempt is in the trail");
    assert_eq!(failed["data"]["stage"], json!("embed"));
    eventually("the retry is never counted", || async {
        let metrics = api.send(api.request(Method::GET, "/metrics", None)).await.text;
        if metrics.contains("dossier_pipeline_stage_retries_total{stage=\"embed\"} 1") { Ok(()) } else { Err(metrics) }
    })
    .await;
    let health = api.send(api.request(Method::GET, "/health", None)).await;
    assert_eq!(health.json["components"]["llm"]["status"], json!("ok"), "{}", health.text);
    api.stop().await;
}

async fn live_events_fan_out_to_every_client_from_one_follower(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let connect = || api.request(Method::GET, "/events/live", Some(&admin)).send();
    let (mut first, mut second) = (connect().await.expect("first"), connect().await.expect("second"));
    // Both clients and the metrics observer follow the one feed.
    eventually("the clients never joined the feed", || async {
        let metrics = api.send(api.request(Method::GET, "/metrics", None)).await.text;
        if metrics.contains("dossier_live_followers 3") { Ok(()) } else { Err(metrics) }
    })
    .await;
    let id = api.upload_text(&admin, "a.txt", "fan me out").await.json["id"].as_str().expect("id").to_owned();
    let stream = json!(format!("document-{id}"));
    for response in [&mut first, &mut second] {
        let events =
            read_sse(response, SSE_WAIT, |events| events.iter().any(|(_, name, _)| name == "DocumentReady")).await;
        let names: Vec<&str> = events.iter().map(|(_, name, _)| name.as_str()).collect();
        assert_eq!(names, ["DocumentUploaded", "DocumentParsed", "DocumentChunked", "DocumentReady"]);
        assert!(events.iter().all(|(_, _, data)| data["stream_id"] == stream));
    }
    drop((first, second));
    eventually("the clients never left the feed", || async {
        let metrics = api.send(api.request(Method::GET, "/metrics", None)).await.text;
        if metrics.contains("dossier_live_followers 1") { Ok(()) } else { Err(metrics) }
    })
    .await;
    api.stop().await;
}

async fn live_client_joining_during_commits_sees_every_position_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let documents = 15;
    // One upload committed before the client joins (so it must be caught up from the log), the rest racing it.
    assert_eq!(api.upload_text(&admin, "first.txt", "document first").await.status, 202);
    eventually("the feed never broadcast the first upload", || async {
        // The metrics follow the same feed: once they count the upload, it has been broadcast.
        let metrics = api.send(api.request(Method::GET, "/metrics", None)).await.text;
        let seen = metrics.contains("dossier_events_appended_total{event_type=\"DocumentUploaded\"} 1");
        if seen { Ok(()) } else { Err(metrics) }
    })
    .await;
    let writer = {
        let (base, client, token) = (api.base.clone(), api.client.clone(), admin.clone());
        tokio::spawn(async move {
            for n in 1..documents {
                let body = json!({"filename": format!("d{n}.txt"), "text": format!("document {n}")});
                let response = client
                    .post(format!("{base}/documents"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("upload");
                assert_eq!(response.status(), 202);
            }
        })
    };
    // Join while the uploads (and their pipelines) are committing, resuming from the very start.
    let mut response = api
        .request(Method::GET, "/events/live", Some(&admin))
        .header("last-event-id", "0")
        .send()
        .await
        .expect("connect");
    writer.await.expect("uploads");
    let expected = documents * 4;
    let events = read_sse(&mut response, SSE_WAIT, |events| events.len() >= expected).await;
    let positions: Vec<u64> = events.iter().map(|(id, _, _)| id.parse().expect("position")).collect();
    let every: Vec<u64> = (1..=expected as u64).collect();
    assert_eq!(positions, every, "each position exactly once, in order");
    drop(response);
    api.stop().await;
}
