//! Recorded command responses are kept for `IDEMPOTENCY_RETENTION_HOURS` (24 by default): within it a retry is
//! replayed, past it the record is purged and the key counts as new; the Redis cache expires with the record.

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::json;

use crate::contract_tests;
use crate::support::api::{TestApi, eventually, redis_connection, redis_namespace, redis_url, token};
use crate::support::{Backend, Scratch};

contract_tests!(
    recorded_response_past_retention_is_purged_and_its_key_counts_as_new,
    recorded_response_past_retention_before_the_purge_is_not_replayed,
);

/// An upload of `name` under `key`.
fn upload(api: &TestApi, writer: &str, key: &str, name: &str) -> reqwest::RequestBuilder {
    api.request(Method::POST, "/documents", Some(writer))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(json!({"filename": name, "text": format!("contents of {name}")}).to_string())
}

/// Makes the record of `key` `hours` older, as if it had been recorded then.
async fn age(scratch: &Scratch, key: &str, hours: u32) {
    let sql = match scratch.backend {
        Backend::Embedded => {
            format!("UPDATE api_idempotency SET created_at = created_at - {hours} * 3600 * 1000000 WHERE key = '{key}'")
        }
        Backend::Postgres => {
            format!("UPDATE api_idempotency SET created_at = created_at - interval '{hours} hours' WHERE key = '{key}'")
        }
    };
    assert_eq!(scratch.execute_sql(&sql).await, 1, "one record under {key}");
}

async fn pttl(connection: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    ::redis::cmd("PTTL").arg(key).query_async(connection).await.expect("pttl")
}

async fn records(scratch: &Scratch, key: &str) -> i64 {
    scratch.query_count(&format!("SELECT count(*) FROM api_idempotency WHERE key = '{key}'")).await
}

async fn recorded_response_past_retention_is_purged_and_its_key_counts_as_new(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let alice = token("alice", "acme", &[Role::Writer]);
    let old = api.send(upload(&api, &alice, "old-key", "old.txt")).await;
    let recent = api.send(upload(&api, &alice, "recent-key", "recent.txt")).await;
    assert_eq!((old.status, recent.status), (202, 202), "{} {}", old.text, recent.text);
    api.stop().await;
    age(&scratch, "old-key", 25).await;
    age(&scratch, "recent-key", 23).await;

    // The purge runs as the server starts, and removes only what is past the retention.
    let api = TestApi::start(&scratch).await;
    eventually("the expired record was never purged", || async {
        match records(&scratch, "old-key").await {
            0 => Ok(()),
            left => Err(format!("{left} records")),
        }
    })
    .await;
    assert_eq!(records(&scratch, "recent-key").await, 1);
    let replayed = api.send(upload(&api, &alice, "recent-key", "recent.txt")).await;
    assert_eq!((replayed.status, replayed.text.as_str()), (202, recent.text.as_str()));
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    // The old key is new again: the upload runs (its bytes are deduplicated to the document it created) and its
    // response is recorded afresh.
    let again = api.send(upload(&api, &alice, "old-key", "old.txt")).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_eq!((&again.json["id"], &again.json["deduplicated"]), (&old.json["id"], &json!(true)));
    assert_eq!(records(&scratch, "old-key").await, 1);
    let replayed = api.send(upload(&api, &alice, "old-key", "old.txt")).await;
    assert_eq!((replayed.text.as_str(), replayed.header("idempotent-replayed")), (again.text.as_str(), Some("true")));
    api.stop().await;
}

async fn recorded_response_past_retention_before_the_purge_is_not_replayed(backend: Backend) {
    let scratch = Scratch::new(backend).await;
    let api = TestApi::start(&scratch).await;
    let alice = token("alice", "acme", &[Role::Writer]);
    let first = api.send(upload(&api, &alice, "a-key", "a.txt")).await;
    assert_eq!(first.status, 202, "{}", first.text);
    age(&scratch, "a-key", 25).await;
    // Expired the moment it is past the retention, purged or not; recording anew replaces it.
    let again = api.send(upload(&api, &alice, "a-key", "a.txt")).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (200, None), "{}", again.text);
    assert_eq!(records(&scratch, "a-key").await, 1);
    let replayed = api.send(upload(&api, &alice, "a-key", "a.txt")).await;
    assert_eq!((replayed.text.as_str(), replayed.header("idempotent-replayed")), (again.text.as_str(), Some("true")));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_response_expires_with_its_record() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let redis = redis_url();
    let api = TestApi::start_with(&scratch, &[("REDIS_URL", redis.as_str())]).await;
    let alice = token("alice", "acme", &[Role::Writer]);
    let first = api.send(upload(&api, &alice, "cached-key", "cached.txt")).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let namespace = redis_namespace(&scratch);
    let mut connection = redis_connection().await;
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg(format!("{namespace}:idem:*")).query_async(&mut connection).await.expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let hour_ms = 3_600_000;
    let fresh = pttl(&mut connection, &keys[0]).await;
    assert!((23 * hour_ms..=24 * hour_ms).contains(&fresh), "a new record is cached for the retention: {fresh} ms");
    // Read back 23 hours into its life (evicted from the cache meanwhile), it is cached for the hour it has left.
    age(&scratch, "cached-key", 23).await;
    let _: () = ::redis::cmd("DEL").arg(&keys[0]).query_async(&mut connection).await.expect("del");
    let replayed = api.send(upload(&api, &alice, "cached-key", "cached.txt")).await;
    assert_eq!((replayed.text.as_str(), replayed.header("idempotent-replayed")), (first.text.as_str(), Some("true")));
    let late = pttl(&mut connection, &keys[0]).await;
    assert!((1..=hour_ms).contains(&late), "cached for the rest of its life only: {late} ms");
    api.stop().await;
}
