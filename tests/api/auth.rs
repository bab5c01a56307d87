//! Authentication and authorisation: 401 for a missing, malformed, expired or forged token, 403 for a missing role,
//! 404 (never 403) for another tenant's document.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dossier::api::auth::{Claims, Keys, Role};
use reqwest::Method;
use serde_json::json;

use crate::contract_tests;
use crate::support::api::{SECRET, TestApi, token};
use crate::support::{Backend, Scratch};

contract_tests!(
    requests_without_a_valid_token_return_401,
    requests_without_the_role_return_403,
    another_tenants_document_returns_404_everywhere,
);

fn mint(secret: &str, claims: &Claims) -> String {
    Keys::new(Some(secret)).expect("keys").mint(claims).expect("mint")
}

async fn requests_without_a_valid_token_return_401(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = Claims {
        sub: "alice".into(),
        tenant: "acme".into(),
        roles: vec![Role::Admin],
        exp: now + 60,
        iat: None,
        nbf: None,
    };
    let expired = mint(SECRET, &Claims { exp: now - 1, ..claims.clone() });
    let forged = mint("somebody-elses-secret-somebody-elses", &claims);
    let valid = mint(SECRET, &claims);
    let (header, body, _) = {
        let mut parts = valid.split('.');
        (parts.next().expect("header"), parts.next().expect("claims"), parts.next().expect("signature"))
    };
    let unsigned = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
    let elevated = format!(
        "{header}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"sub":"x","tenant":"acme","roles":["admin"],"exp":9999999999}"#),
        valid.rsplit('.').next().expect("sig")
    );
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing"),
        (Some("Basic YWxpY2U6c2VjcmV0".into()), "Bearer"),
        (Some("Bearer not.a.jwt-at-all".into()), "token"),
        (Some("Bearer abc".into()), "JWT"),
        (Some(format!("Bearer {expired}")), "expired"),
        (Some(format!("Bearer {forged}")), "signature"),
        (Some(format!("Bearer {unsigned}")), "HS256"),
        (Some(format!("Bearer {elevated}")), "signature"),
    ];
    for (authorization, expected) in cases {
        for path in ["/documents", "/events", "/projections"] {
            let mut builder = api.request(Method::GET, path, None);
            if let Some(authorization) = &authorization {
                builder = builder.header("authorization", authorization);
            }
            let answer = api.send(builder).await;
            let problem = answer.assert_problem(401, "unauthenticated");
            assert!(problem["detail"].as_str().is_some_and(|d| d.contains(expected)), "{expected}: {}", answer.text);
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Health, metrics and the OpenAPI document need no token.
    for path in ["/health", "/metrics", "/openapi.json"] {
        assert_eq!(api.send(api.request(Method::GET, path, None)).await.status, 200, "{path}");
    }
    api.stop().await;
}

async fn requests_without_the_role_return_403(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let reader = token("alice", "acme", &[Role::Reader]);
    let writer = token("bob", "acme", &[Role::Writer]);
    let nobody = token("carol", "acme", &[]);
    api.upload_text(&reader, "a.txt", "hello").await.assert_problem(403, "forbidden");
    api.get("/documents", &nobody).await.assert_problem(403, "forbidden");
    for path in ["/events", "/events/live", "/audit/verify", "/projections"] {
        let answer = api.get(path, &writer).await;
        let problem = answer.assert_problem(403, "forbidden");
        assert!(problem["detail"].as_str().is_some_and(|detail| detail.contains("admin")), "{}", answer.text);
    }
    let rebuild = api.send(api.request(Method::POST, "/projections/read_model/rebuild", Some(&writer))).await;
    rebuild.assert_problem(403, "forbidden");
    assert_eq!(scratch.query_count("SELECT count(*) FROM events").await, 0);
    api.stop().await;
}

async fn another_tenants_document_returns_404_everywhere(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let acme = token("alice", "acme", &[Role::Admin]);
    let globex = token("mallory", "globex", &[Role::Admin]);
    let uploaded = api.upload_text(&acme, "secret.txt", "acme's secret plans").await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().expect("id").to_owned();
    for path in
        [format!("/documents/{id}"), format!("/documents/{id}/events"), format!("/documents/{id}/history?version=1")]
    {
        api.get(&path, &globex).await.assert_problem(404, "document_not_found");
    }
    let patch = api.json(Method::PATCH, &format!("/documents/{id}"), &globex, &json!({"metadata": {"x": 1}})).await;
    patch.assert_problem(404, "document_not_found");
    let delete = api.send(api.request(Method::DELETE, &format!("/documents/{id}"), Some(&globex))).await;
    delete.assert_problem(404, "document_not_found");
    let reprocess = api.send(api.request(Method::POST, &format!("/documents/{id}/reprocess"), Some(&globex))).await;
    reprocess.assert_problem(404, "document_not_found");
    let listed = api.get("/events", &globex).await;
    assert_eq!(listed.json["events"], json!([]), "another tenant's events are not in the global log page");
    // The same bytes in another tenant are a new document, not a deduplicated one.
    let theirs = api.upload_text(&globex, "secret.txt", "acme's secret plans").await;
    assert_eq!(theirs.status, 202, "{}", theirs.text);
    assert_ne!(theirs.json["id"], uploaded.json["id"]);
    // The owner still sees the document unchanged.
    let mine = api.get(&format!("/documents/{id}"), &acme).await;
    assert_eq!(mine.status, 200);
    assert!(mine.json["metadata"].get("x").is_none());
    api.stop().await;
}
