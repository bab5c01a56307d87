//! Document commands and queries over HTTP: upload (JSON and multipart), deduplication, reads, lists with cursors,
//! metadata updates under If-Match, idempotent retries (also across a restart), reprocess and delete.

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::bad_input::{multipart, multipart_upload};
use crate::contract_tests;
use crate::support::api::{Answer, TestApi, token};
use crate::support::{Backend, Scratch};

contract_tests!(
    upload_returns_202_with_location_etag_and_duplicate_returns_200_deduplicated,
    list_pages_with_cursor_and_filters_by_status,
    patch_with_if_match_updates_and_stale_version_returns_412,
    idempotency_key_replays_the_response_across_a_restart_and_refuses_another_body,
    reprocess_and_delete_return_202_and_delete_hides_the_document,
    command_events_carry_caller_tenant_request_and_correlation_ids,
    concurrent_retries_under_one_key_append_once,
);

async fn upload_returns_202_with_location_etag_and_duplicate_returns_200_deduplicated(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let answer = api.upload_text(&writer, "notes.md", "# Notes\n\nSome text.").await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let id = answer.json["id"].as_str().expect("id").to_owned();
    assert_eq!(answer.header("location"), Some(format!("/api/v1/documents/{id}").as_str()));
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert_eq!(answer.json["status"], json!("uploaded"));
    assert_eq!(answer.json["version"], json!(1));
    assert_eq!(answer.json["deduplicated"], json!(false));
    assert_eq!(answer.json["metadata"], json!({"source": "test"}));
    // The 202 is built from the actor's state without reading the log back; it is the log's document all the same,
    // field for field (timestamps included): its history at version 1.
    let history = api.get(&format!("/documents/{id}/history?version=1"), &writer).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let mut from_log = history.json.clone();
    from_log["deduplicated"] = json!(false);
    assert_eq!(answer.json, from_log);
    let again = api.upload_text(&writer, "copy.md", "# Notes\n\nSome text.").await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["id"], json!(id));
    assert_eq!(again.json["deduplicated"], json!(true));

    let pdf_like = multipart("report.txt", "text/plain", b"multipart body text", Some(r#"{"team": "red"}"#));
    let uploaded = multipart_upload(&api, &writer, pdf_like).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    assert_eq!(uploaded.json["filename"], json!("report.txt"));
    assert_eq!(uploaded.json["metadata"], json!({"team": "red"}));
    let base64 = json!({"filename": "b.txt", "content_base64": "aGVsbG8gYmFzZTY0", "media_type": "text/plain"});
    let answer = api.json(Method::POST, "/documents", &writer, &base64).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(answer.json["size_bytes"], json!(12));

    let ready = api.wait_for_status(&writer, &id, "ready").await;
    assert!(ready["version"].as_u64().is_some_and(|version| version > 1));
    assert!(ready["chunk_count"].as_u64().is_some_and(|chunks| chunks >= 1));
    let fetched = api.get(&format!("/documents/{id}"), &writer).await;
    assert_eq!(fetched.header("etag"), Some(format!("\"{}\"", ready["version"]).as_str()));
    api.stop().await;
}

async fn list_pages_with_cursor_and_filters_by_status(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let mut ids = Vec::new();
    for n in 0..5 {
        let answer = api.upload_text(&writer, &format!("doc{n}.txt"), &format!("document number {n}")).await;
        ids.push(answer.json["id"].as_str().expect("id").to_owned());
    }
    for id in &ids {
        api.wait_for_status(&writer, id, "ready").await;
    }
    // The read model applies events in log order, so wait until every document is listed as ready.
    for id in &ids {
        api.wait_until_listed(&writer, id, "?status=ready&limit=100").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("/documents?status=ready&limit=2&cursor={cursor}"),
            None => "/documents?status=ready&limit=2".to_owned(),
        };
        let page = api.get(&query, &writer).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let documents = page.json["documents"].as_array().expect("documents").clone();
        assert!(documents.len() <= 2);
        seen.extend(documents.iter().map(|document| document["id"].as_str().expect("id").to_owned()));
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every document once, in id order");
    let failed = api.get("/documents?status=failed", &writer).await;
    assert_eq!(failed.json["documents"], json!([]));
    api.stop().await;
}

async fn patch_with_if_match_updates_and_stale_version_returns_412(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = api.upload_text(&writer, "a.txt", "hello").await.json["id"].as_str().expect("id").to_owned();
    let ready = api.wait_for_status(&writer, &id, "ready").await;
    let version = ready["version"].as_u64().expect("version");
    let patch = |if_match: String, body: Value| {
        api.request(Method::PATCH, &format!("/documents/{id}"), Some(&writer))
            .header("content-type", "application/json")
            .header("if-match", if_match)
            .body(body.to_string())
    };
    let updated =
        api.send(patch(format!("\"{version}\""), json!({"metadata": {"owner": "ops", "source": null}}))).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["metadata"], json!({"owner": "ops"}));
    assert_eq!(updated.header("etag"), Some(format!("\"{}\"", version + 1).as_str()));
    let before = scratch.query_count("SELECT count(*) FROM events").await;
    let stale = api.send(patch(format!("\"{version}\""), json!({"metadata": {"owner": "someone else"}}))).await;
    let problem = stale.assert_problem(412, "version_mismatch");
    assert!(problem["detail"].as_str().is_some_and(|detail| detail.contains(&(version + 1).to_string())));
    assert_eq!(scratch.query_count("SELECT count(*) FROM events").await, before, "a 412 writes nothing");
    let current = api.get(&format!("/documents/{id}"), &writer).await;
    assert_eq!(current.json["metadata"], json!({"owner": "ops"}));
    api.stop().await;
}

async fn idempotency_key_replays_the_response_across_a_restart_and_refuses_another_body(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let upload = |api: &TestApi, key: &str, text: &str| {
        api.request(Method::POST, "/documents", Some(&writer))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(json!({"filename": "a.txt", "text": text}).to_string())
    };
    let first = api.send(upload(&api, "key-1", "first body")).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let id = first.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    let replay = api.send(upload(&api, "key-1", "first body")).await;
    assert_eq!((replay.status, replay.text.as_str()), (202, first.text.as_str()), "the same response, byte for byte");
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.header("location"), first.header("location"));
    let other = api.send(upload(&api, "key-1", "another body")).await;
    other.assert_problem(422, "idempotency_key_reused");
    // The key is not a way to read another user's response, even in the same tenant.
    let bob = token("bob", "acme", &[Role::Writer]);
    let bobs = api
        .send(
            api.request(Method::POST, "/documents", Some(&bob))
                .header("content-type", "application/json")
                .header("idempotency-key", "key-1")
                .body(json!({"filename": "a.txt", "text": "first body"}).to_string()),
        )
        .await;
    bobs.assert_problem(422, "idempotency_key_reused");
    let patch = |api: &TestApi, key: &str, value: &str| {
        api.request(Method::PATCH, &format!("/documents/{id}"), Some(&writer))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(json!({"metadata": {"v": value}}).to_string())
    };
    let patched = api.send(patch(&api, "key-2", "one")).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let uploads = "SELECT count(*) FROM events WHERE event_type = 'DocumentUploaded'";
    let updates = "SELECT count(*) FROM events WHERE event_type = 'MetadataUpdated'";
    assert_eq!((scratch.query_count(uploads).await, scratch.query_count(updates).await), (1, 1));
    api.stop().await;

    let api = TestApi::start(&scratch).await;
    let after_restart = api.send(upload(&api, "key-1", "first body")).await;
    assert_eq!((after_restart.status, after_restart.text.as_str()), (202, first.text.as_str()));
    let patched_again = api.send(patch(&api, "key-2", "one")).await;
    assert_eq!((patched_again.status, patched_again.text.as_str()), (200, patched.text.as_str()));
    api.send(patch(&api, "key-2", "two")).await.assert_problem(422, "idempotency_key_reused");
    // Keys are per tenant: another tenant may use the same key for its own request.
    let other_tenant = token("bob", "globex", &[Role::Writer]);
    let theirs = api
        .send(
            api.request(Method::POST, "/documents", Some(&other_tenant))
                .header("content-type", "application/json")
                .header("idempotency-key", "key-1")
                .body(json!({"filename": "b.txt", "text": "globex body"}).to_string()),
        )
        .await;
    assert_eq!(theirs.status, 202, "{}", theirs.text);
    let counts = (scratch.query_count(uploads).await, scratch.query_count(updates).await);
    assert_eq!(counts, (2, 1), "replays append nothing; only the other tenant's upload is new");
    api.stop().await;
}

async fn reprocess_and_delete_return_202_and_delete_hides_the_document(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = api.upload_text(&writer, "a.txt", "hello world").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    let reprocess =
        api.json(Method::POST, &format!("/documents/{id}/reprocess"), &writer, &json!({"reason": "new chunker"})).await;
    assert_eq!(reprocess.status, 202, "{}", reprocess.text);
    assert_eq!(reprocess.json["status"], json!("uploaded"));
    assert_eq!(reprocess.json["generation"], json!(2));
    api.wait_for_status(&writer, &id, "ready").await;
    let delete = api.send(api.request(Method::DELETE, &format!("/documents/{id}"), Some(&writer))).await;
    assert_eq!(delete.status, 202, "{}", delete.text);
    assert_eq!(delete.json["status"], json!("deleted"));
    api.get(&format!("/documents/{id}"), &writer).await.assert_problem(404, "document_not_found");
    let again = api.json(Method::PATCH, &format!("/documents/{id}"), &writer, &json!({"metadata": {"a": 1}})).await;
    again.assert_problem(409, "invalid_state");
    // The stream stays for audit.
    let events = api.get(&format!("/documents/{id}/events"), &writer).await;
    assert_eq!(events.status, 200, "{}", events.text);
    let types: Vec<&str> =
        events.json["events"].as_array().expect("events").iter().filter_map(|e| e["event_type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"DocumentUploaded"));
    assert_eq!(types.last(), Some(&"DocumentDeleted"));
    assert!(types.contains(&"ReprocessRequested"));
    api.stop().await;
}

async fn command_events_carry_caller_tenant_request_and_correlation_ids(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let correlation = "0190c3c4-1111-7000-8000-000000000001";
    let answer = api
        .send(
            api.request(Method::POST, "/documents", Some(&writer))
                .header("content-type", "application/json")
                .header("x-request-id", "req-upload-1")
                .header("x-correlation-id", correlation)
                .header("idempotency-key", "upload-key")
                .body(json!({"filename": "a.txt", "text": "hello"}).to_string()),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(answer.header("x-request-id"), Some("req-upload-1"));
    let id = answer.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    let events = api.get(&format!("/documents/{id}/events"), &writer).await;
    let events = events.json["events"].as_array().expect("events").clone();
    let upload = &events[0]["metadata"];
    assert_eq!(upload["actor"], json!("alice"));
    assert_eq!(upload["tenant_id"], json!("acme"));
    assert_eq!(upload["request_id"], json!("req-upload-1"));
    assert_eq!(upload["correlation_id"], json!(correlation));
    assert_eq!(upload["idempotency_key"], json!("upload-key"));
    assert!(upload["causation_id"].is_string());
    // The pipeline's events share the correlation id and are caused by the event before them.
    for pair in events.windows(2) {
        assert_eq!(pair[1]["metadata"]["correlation_id"], json!(correlation));
        assert_eq!(pair[1]["metadata"]["causation_id"], pair[0]["event_id"]);
        assert_eq!(pair[1]["metadata"]["actor"], json!("system:pipeline"));
    }
    api.stop().await;
}

async fn concurrent_retries_under_one_key_append_once(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    // Without content deduplication only the idempotency machinery stands between the retries and duplicates.
    let api = TestApi::start_with(&scratch, &[("DOSSIER_DEDUPLICATE", "false")]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let send = || {
        api.send(
            api.request(Method::POST, "/documents", Some(&writer))
                .header("content-type", "application/json")
                .header("idempotency-key", "burst")
                .body(json!({"filename": "a.txt", "text": "sent five times at once"}).to_string()),
        )
    };
    let answers = futures::future::join_all((0..5).map(|_| send())).await;
    // Whichever request recorded its response first, every success is that response; a retry that raced it is
    // told to come back (409) rather than given something else.
    let succeeded: Vec<&Answer> = answers.iter().filter(|answer| answer.status < 300).collect();
    assert!(!succeeded.is_empty(), "{answers:?}");
    assert!(succeeded.iter().all(|answer| answer.text == succeeded[0].text), "{answers:?}");
    assert!(answers.iter().all(|answer| answer.status < 300 || answer.status == 409), "{answers:?}");
    let uploads = scratch.query_count("SELECT count(*) FROM events WHERE event_type = 'DocumentUploaded'").await;
    assert_eq!(uploads, 1, "one document, however the retries raced");
    let retried = send().await;
    assert_eq!((retried.status, &retried.text), (succeeded[0].status, &succeeded[0].text));
    api.stop().await;
}
