//! Health, metrics, the OpenAPI document (checked against the routes actually served), projections and rebuilds,
//! and the per-subject rate limit.

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::contract_tests;
use crate::support::api::{TestApi, eventually, token};
use crate::support::{Backend, Scratch};

contract_tests!(
    health_reports_every_component_and_503_when_a_configured_one_is_down,
    metrics_count_requests_events_and_projection_lag,
    openapi_lists_exactly_the_routes_served,
    projections_report_progress_and_rebuild_returns_202,
    rate_limit_returns_429_with_retry_after_per_subject,
);

async fn health_reports_every_component_and_503_when_a_configured_one_is_down(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let health = api.send(api.request(Method::GET, "/health", None)).await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.json["status"], json!("ok"));
    let backend_name = if backend == Backend::Embedded { "embedded" } else { "postgres" };
    for component in ["event_store", "read_model"] {
        assert_eq!(health.json["components"][component]["status"], json!("ok"), "{}", health.text);
        assert_eq!(health.json["components"][component]["backend"], json!(backend_name));
        assert!(health.json["components"][component]["latency_ms"].is_number());
    }
    // The vector index is always there (qdrant-edge in process unless QDRANT_URL names a server).
    assert_eq!(health.json["components"]["vector_index"]["status"], json!("ok"), "{}", health.text);
    assert_eq!(health.json["components"]["vector_index"]["backend"], json!("qdrant-edge"), "{}", health.text);
    for component in ["llm", "redis"] {
        assert_eq!(health.json["components"][component]["status"], json!("disabled"), "{}", health.text);
    }
    api.stop().await;
    // An LLM endpoint that does not answer makes the service degraded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{closed}/v1");
    let api = TestApi::start_with(&scratch, &[("LLM_BASE_URL", url.as_str())]).await;
    let health = api.send(api.request(Method::GET, "/health", None)).await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.json["status"], json!("degraded"));
    assert_eq!(health.json["components"]["llm"]["status"], json!("down"));
    assert!(health.json["components"]["llm"]["error"].as_str().is_some_and(|error| error.contains("127.0.0.1")));
    assert_eq!(health.json["components"]["event_store"]["status"], json!("ok"));
    api.stop().await;
    if let Ok(redis) = std::env::var("REDIS_URL") {
        let api = TestApi::start_with(&scratch, &[("REDIS_URL", redis.as_str())]).await;
        let health = api.send(api.request(Method::GET, "/health", None)).await;
        assert_eq!(health.status, 200, "{}", health.text);
        assert_eq!(health.json["components"]["redis"]["status"], json!("ok"));
        api.stop().await;
    }
}

async fn metrics_count_requests_events_and_projection_lag(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let writer = token("alice", "acme", &[Role::Writer]);
    let id = api.upload_text(&writer, "a.txt", "metrics").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&writer, &id, "ready").await;
    api.get("/documents/not-a-uuid", &writer).await;
    let text = eventually("metrics never caught up", || async {
        let metrics = api.send(api.request(Method::GET, "/metrics", None)).await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").is_some_and(|kind| kind.starts_with("text/plain")));
        let caught_up = metrics.text.contains("dossier_events_appended_total{event_type=\"DocumentReady\"} 1")
            && metrics.text.contains("dossier_projection_lag_events{projection=\"read_model\"} 0");
        if caught_up { Ok(metrics.text) } else { Err(metrics.text) }
    })
    .await;
    for expected in [
        "dossier_http_requests_total{method=\"POST\",route=\"/documents\",status=\"202\"} 1",
        "dossier_http_requests_total{method=\"GET\",route=\"/documents/{id}\",status=\"400\"} 1",
        "dossier_http_request_duration_seconds_count{route=\"/documents\"} 1",
        "dossier_events_appended_total{event_type=\"DocumentUploaded\"} 1",
        "dossier_api_events_appended_total 1",
        "dossier_pipeline_stage_duration_seconds_count{stage=\"parse\"} 1",
        "dossier_pipeline_stage_duration_seconds_count{stage=\"chunk\"} 1",
        "dossier_pipeline_stage_retries_total{stage=\"parse\"} 0",
        "dossier_log_head_position 4",
        "dossier_document_actors 1",
        "dossier_document_actor_restarts_total 0",
        "dossier_projection_checkpoint{projection=\"read_model\"} 4",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    api.stop().await;
}

async fn openapi_lists_exactly_the_routes_served(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let document = api.send(api.request(Method::GET, "/openapi.json", None)).await;
    assert_eq!(document.status, 200);
    assert!(document.json["openapi"].as_str().is_some_and(|version| version.starts_with("3.")));
    let paths = document.json["paths"].as_object().expect("paths");
    let all_methods = ["get", "post", "put", "patch", "delete"];
    let mut documented = 0;
    for (path, operations) in paths {
        let concrete = path
            .strip_prefix("/api/v1")
            .expect("every path under /api/v1")
            .replace("{id}", "0190c3c4-0000-7000-8000-000000000000")
            .replace("{name}", "read_model");
        for method in all_methods {
            let request = api.request(method.to_uppercase().parse().expect("method"), &concrete, Some(&admin));
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let streaming = response.headers().get("content-type").is_some_and(|kind| kind == "text/event-stream");
            // A live stream never ends: its status and type are the answer.
            let text = if streaming { String::new() } else { response.text().await.expect("body") };
            let code = serde_json::from_str::<Value>(&text).map(|body| body["code"].clone()).unwrap_or(Value::Null);
            if operations.get(method).is_some() {
                documented += 1;
                // Served: anything but "no such route" / "wrong method".
                assert!(
                    code != json!("route_not_found") && code != json!("method_not_allowed"),
                    "{method} {path} is documented but not served: {text}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented: {text}");
            }
        }
    }
    assert_eq!(documented, dossier::api::routes::ROUTES.len(), "one operation per route");
    // And paths the document does not list are not served.
    let reader = token("alice", "acme", &[Role::Reader]);
    for path in ["/documents/x/chunks", "/answers", "/admin"] {
        api.get(path, &reader).await.assert_problem(404, "route_not_found");
    }
    api.stop().await;
}

async fn projections_report_progress_and_rebuild_returns_202(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let admin = token("root", "acme", &[Role::Admin]);
    let id = api.upload_text(&admin, "a.txt", "rebuild me").await.json["id"].as_str().expect("id").to_owned();
    api.wait_for_status(&admin, &id, "ready").await;
    api.wait_until_listed(&admin, &id, "?status=ready").await;
    let listed = api.get("/projections", &admin).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let projection = &listed.json["projections"][0];
    assert_eq!(projection["name"], json!("read_model"));
    assert_eq!(projection["state"], json!("running"));
    assert_eq!(projection["generation"], json!(1));
    assert_eq!(projection["head"], json!(4));
    let generation_before = projection["generation"].as_u64().expect("generation");
    let started = api.send(api.request(Method::POST, "/projections/read_model/rebuild", Some(&admin))).await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.json["generation"], json!(generation_before + 1));
    let unknown = api.send(api.request(Method::POST, "/projections/nope/rebuild", Some(&admin))).await;
    unknown.assert_problem(404, "not_found");
    eventually("the rebuild never finished", || async {
        let listed = api.get("/projections", &admin).await;
        let projection = &listed.json["projections"][0];
        assert_ne!(projection["rebuild"]["state"], json!("failed"), "{}", listed.text);
        let done = projection["rebuild"]["state"] == json!("done")
            && projection["generation"] == json!(generation_before + 1)
            && projection["rebuild"]["checkpoint"] == json!(4);
        if done { Ok(()) } else { Err(listed.text) }
    })
    .await;
    // The rebuilt generation serves the same documents.
    let documents = api.get("/documents", &admin).await;
    assert_eq!(documents.json["documents"][0]["id"], Value::from(id));
    api.stop().await;
}

async fn rate_limit_returns_429_with_retry_after_per_subject(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start_with(&scratch, &[("RATE_LIMIT_PER_MINUTE", "3")]).await;
    let alice = token("alice", "acme", &[Role::Reader]);
    let bob = token("bob", "acme", &[Role::Reader]);
    for _ in 0..3 {
        assert_eq!(api.get("/documents", &alice).await.status, 200);
    }
    let limited = api.get("/documents", &alice).await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").and_then(|value| value.parse::<u64>().ok()).is_some_and(|secs| secs >= 1));
    assert_eq!(api.get("/documents", &bob).await.status, 200, "each subject has its own allowance");
    assert_eq!(api.send(api.request(Method::GET, "/health", None)).await.status, 200, "health is not limited");
    api.stop().await;
}
