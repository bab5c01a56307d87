//! Bad input: every case of the issue's list answers a 4xx problem+json naming the field or header, never a 500,
//! and writes nothing to the log.

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::contract_tests;
use crate::support::api::{TestApi, eventually, token};
use crate::support::{Backend, Scratch};

contract_tests!(
    bad_json_bodies_return_400_naming_the_field_and_write_nothing,
    bad_queries_paths_and_cursors_return_400_naming_the_parameter,
    oversized_and_traversing_uploads_are_refused_and_write_nothing,
    headers_with_control_characters_return_400_naming_the_header,
    unknown_routes_and_methods_return_problem_json,
);

async fn event_count(scratch: &Scratch) -> i64 {
    scratch.query_count("SELECT count(*) FROM events").await
}

async fn bad_json_bodies_return_400_naming_the_field_and_write_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"filename": "a.txt", "text": "x""#, "$"),
        (r#"{"filename": 5, "text": "hello"}"#, "filename"),
        (r#"{"filename": "a.txt", "text": "hello", "colour": "red"}"#, "colour"),
        (r#"{"text": "hello"}"#, "filename"),
        (r#"{"filename": "a.txt"}"#, "text"),
        (r#"{"filename": "a.txt", "text": "hello", "metadata": []}"#, "metadata"),
        (r#"{"filename": "a.txt", "content_base64": "%%%"}"#, "content_base64"),
        (r#"[1, 2, 3]"#, "$"),
        ("", "$"),
    ];
    for (body, field) in cases {
        let answer = api
            .send(
                api.request(Method::POST, "/documents", Some(&writer))
                    .header("content-type", "application/json")
                    .body(body.to_owned()),
            )
            .await;
        let problem = answer.assert_problem(400, "invalid_body");
        assert_eq!(problem["field"], json!(field), "{body}: {}", answer.text);
        assert!(problem["detail"].as_str().is_some_and(|detail| field == "$" || detail.contains(field)), "{problem}");
    }
    let answer = api
        .send(api.request(Method::POST, "/documents", Some(&writer)).header("content-type", "text/csv").body("a,b"))
        .await;
    answer.assert_problem(415, "unsupported_media_type");
    let id = api.upload_text(&writer, "ok.txt", "fine").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    let before = event_count(&scratch).await;
    for (body, field) in [
        (json!({"metadata": {"a": 1}, "extra": true}), "extra"),
        (json!({"metadata": "not an object"}), "metadata"),
        (json!({}), "metadata"),
        (json!({"metadata": {"": 1}}), "metadata"),
    ] {
        let answer = api.json(Method::PATCH, &format!("/documents/{id}"), &writer, &body).await;
        assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!(field), "{body}");
    }
    let answer = api.json(Method::POST, &format!("/documents/{id}/reprocess"), &writer, &json!({"why": 1})).await;
    assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!("why"));
    assert_eq!(event_count(&scratch).await, before, "refused commands must write nothing");
    api.stop().await;
}

async fn bad_queries_paths_and_cursors_return_400_naming_the_parameter(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let reader = token("alice", "acme", &[Role::Reader]);
    let admin = token("root", "acme", &[Role::Admin]);
    let cases = [
        ("/documents?limit=-1", "limit"),
        ("/documents?limit=0", "limit"),
        ("/documents?limit=100000000000000000000000", "limit"),
        ("/documents?limit=ten", "limit"),
        ("/documents?status=lost", "status"),
        ("/documents?colour=red", "colour"),
        ("/documents?limit=1&limit=2", "limit"),
        ("/documents?cursor=forged", "cursor"),
        ("/documents?cursor=eyJ0ZW5hbnQiOiJhY21lIn0.AAAA", "cursor"),
        ("/documents/not-a-uuid", "id"),
        ("/documents/not-a-uuid/events", "id"),
        ("/documents/0190c3c4-0000-7000-8000-000000000000/history", "version"),
        ("/documents/0190c3c4-0000-7000-8000-000000000000/history?version=0", "version"),
        ("/documents/0190c3c4-0000-7000-8000-000000000000/history?at=yesterday", "at"),
        ("/documents/0190c3c4-0000-7000-8000-000000000000/events?include=everything", "include"),
    ];
    for (path, field) in cases {
        let answer = api.get(path, &reader).await;
        assert_eq!(answer.status, 400, "{path}: {}", answer.text);
        assert_eq!(answer.json["field"], json!(field), "{path}: {}", answer.text);
    }
    for path in ["/events?limit=-5", "/events?after=x", "/events?limit=1001"] {
        let answer = api.get(path, &admin).await;
        answer.assert_problem(400, "invalid_query");
    }
    // A cursor from another tenant's listing, or from a listing with another filter, is refused.
    let writer = token("alice", "acme", &[Role::Writer]);
    let other_writer = token("bob", "globex", &[Role::Writer]);
    for n in 0..3 {
        api.upload_text(&writer, &format!("a{n}.txt"), &format!("acme document {n}")).await;
        api.upload_text(&other_writer, &format!("b{n}.txt"), &format!("globex document {n}")).await;
    }
    let other_reader = token("bob", "globex", &[Role::Reader]);
    let page = wait_for_cursor(&api, &other_reader).await;
    let answer = api.get(&format!("/documents?limit=1&cursor={page}"), &reader).await;
    assert_eq!(answer.assert_problem(400, "invalid_query")["field"], json!("cursor"));
    let answer = api.get(&format!("/documents?limit=1&status=ready&cursor={page}"), &other_reader).await;
    assert_eq!(answer.assert_problem(400, "invalid_query")["field"], json!("cursor"));
    api.stop().await;
}

/// A `next_cursor` from a one-document page of `token`'s tenant, once the read model lists two documents.
async fn wait_for_cursor(api: &TestApi, token: &str) -> String {
    eventually("no second page", || async {
        let answer = api.get("/documents?limit=1", token).await;
        answer.json["next_cursor"].as_str().map(str::to_owned).ok_or(answer.text)
    })
    .await
}

async fn oversized_and_traversing_uploads_are_refused_and_write_nothing(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start_with(&scratch, &[("MAX_UPLOAD_BYTES", "1000")]).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let big = "x".repeat(1_001);
    api.upload_text(&writer, "big.txt", &big).await.assert_problem(413, "payload_too_large");
    // A body far over the route's limit is refused from its Content-Length, before it is read.
    let huge = json!({"filename": "huge.txt", "text": "y".repeat(200_000)});
    api.json(Method::POST, "/documents", &writer, &huge).await.assert_problem(413, "payload_too_large");
    let multipart_big = multipart("big.txt", "text/plain", big.as_bytes(), None);
    multipart_upload(&api, &writer, multipart_big).await.assert_problem(413, "payload_too_large");
    for filename in ["../../etc/passwd", "..", "dir/file.txt", "C:\\evil\\file.txt", "tab\tname.txt"] {
        let answer = api.upload_text(&writer, filename, "harmless").await;
        assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!("filename"), "{filename}");
        let answer = multipart_upload(&api, &writer, multipart(filename, "text/plain", b"harmless", None)).await;
        assert_eq!(answer.status, 400, "{filename}: {}", answer.text);
    }
    let answer = multipart_upload(&api, &writer, multipart("a.txt", "text/plain", b"x", Some("{not json"))).await;
    assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!("metadata"));
    let answer = api.upload_text(&writer, "empty.txt", "").await;
    assert_eq!(answer.assert_problem(400, "invalid_body")["field"], json!("file"));
    api.stop().await;
    assert_eq!(event_count(&scratch).await, 0, "nothing may be written");
    let blobs = scratch.data_dir().join("blobs");
    let stored = std::fs::read_dir(&blobs).map(|entries| entries.count()).unwrap_or(0);
    assert_eq!(stored, 0, "no blob may be stored for a refused upload");
}

/// A multipart body with a `file` part and, optionally, a `metadata` part; returns (content type, body).
pub fn multipart(filename: &str, media_type: &str, bytes: &[u8], metadata: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "dossier-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    if let Some(metadata) = metadata {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts a multipart upload.
pub async fn multipart_upload(
    api: &TestApi,
    token: &str,
    (content_type, body): (String, Vec<u8>),
) -> crate::support::api::Answer {
    api.send(api.request(Method::POST, "/documents", Some(token)).header("content-type", content_type).body(body)).await
}

async fn headers_with_control_characters_return_400_naming_the_header(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = api.upload_text(&writer, "a.txt", "hello").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    let before = event_count(&scratch).await;
    for header in ["X-Request-Id", "Idempotency-Key", "If-Match", "X-Correlation-Id"] {
        for (method, path) in [(Method::POST, "/documents".to_owned()), (Method::PATCH, format!("/documents/{id}"))] {
            let answer = api
                .send(
                    api.request(method, &path, Some(&writer))
                        .header("content-type", "application/json")
                        .header(header, "abc\tdef")
                        .body(json!({"filename": "b.txt", "text": "other", "metadata": {"a": 1}}).to_string()),
                )
                .await;
            let problem = answer.assert_problem(400, "invalid_header");
            assert_eq!(problem["field"], json!(header), "{}", answer.text);
            assert!(answer.header("x-request-id").is_some_and(|id| !id.contains('\t')));
        }
    }
    let answer =
        api.send(api.request(Method::GET, "/documents", Some(&writer)).header("X-Request-Id", "x".repeat(300))).await;
    assert_eq!(answer.assert_problem(400, "invalid_header")["field"], json!("X-Request-Id"));
    for (header, value) in [("If-Match", "\"not-a-version\""), ("X-Correlation-Id", "not-a-uuid")] {
        let answer = api
            .send(
                api.request(Method::PATCH, &format!("/documents/{id}"), Some(&writer))
                    .header("content-type", "application/json")
                    .header(header, value)
                    .body(json!({"metadata": {"a": 1}}).to_string()),
            )
            .await;
        assert_eq!(answer.assert_problem(400, "invalid_header")["field"], json!(header));
    }
    assert_eq!(event_count(&scratch).await, before, "refused commands must write nothing");
    api.stop().await;
}

async fn unknown_routes_and_methods_return_problem_json(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let reader = token("alice", "acme", &[Role::Reader]);
    api.get("/nothing-here", &reader).await.assert_problem(404, "route_not_found");
    api.get("/documents/a/b/c", &reader).await.assert_problem(404, "route_not_found");
    let outside = api.send(api.client.get(api.base.replace("/api/v1", "/elsewhere"))).await;
    outside.assert_problem(404, "route_not_found");
    let put = api.send(api.request(Method::PUT, "/documents", Some(&reader))).await;
    put.assert_problem(405, "method_not_allowed");
    let delete = api.send(api.request(Method::DELETE, "/health", None)).await;
    delete.assert_problem(405, "method_not_allowed");
    assert!(delete.header("x-request-id").is_some());
    let echoed = api.send(api.request(Method::GET, "/health", None).header("X-Request-Id", "req-42")).await;
    assert_eq!(echoed.header("x-request-id"), Some("req-42"));
    assert_eq!(echoed.json["status"], Value::from("ok"));
    api.stop().await;
}
