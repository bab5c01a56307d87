//! Live events across instances through Redis: a commit taken by one instance wakes the live clients and the
//! projection runners of another at once, although that one re-reads the log unprompted only once a minute; and
//! keeps doing so after Redis drops the subscribers' connections.

use std::time::Duration;

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::json;

use crate::support::api::{
    TestApi, eventually, eventually_within, read_sse, redis_connection, redis_namespace, redis_url, token,
};
use crate::support::{Backend, Scratch};

/// The instances' log poll: far longer than the test waits, so only an announcement can wake them in time.
const SLOW_POLL_MS: &str = "60000";

/// What "at once" is allowed to take here (a loaded machine included).
const PROMPTLY: Duration = Duration::from_secs(10);

/// A counter's value in a `/metrics` text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from the metrics:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_on_one_instance_reaches_live_clients_and_runners_of_another_promptly() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let redis = redis_url();
    let settings =
        [("REDIS_URL", redis.as_str()), ("LOG_POLL_INTERVAL_MS", SLOW_POLL_MS), ("RATE_LIMIT_PER_MINUTE", "0")];
    let admin = token("root", "acme", &[Role::Admin]);
    // The follower starts first and takes every projection lease: its runners must be woken by the other's commits.
    let follower = TestApi::start_with(&scratch, &settings).await;
    eventually("the first instance never ran every projection", || async {
        let answer = follower.get("/projections", &admin).await;
        let projections = answer.json["projections"].as_array().cloned().unwrap_or_default();
        let all_here = !projections.is_empty() && projections.iter().all(|p| p["runs_here"] == json!(true));
        if all_here { Ok(()) } else { Err(answer.text) }
    })
    .await;
    let writer = TestApi::start_with(&scratch, &settings).await;
    let mut live = follower.request(Method::GET, "/events/live", Some(&admin)).send().await.expect("connect");
    assert_eq!(live.status(), 200);

    let id = upload_seen_live(&writer, &admin, "fanout.txt", &mut live).await;
    // The follower's live client saw it; its read-model runner projects the whole pipeline, which ran on the writer.
    eventually_within(PROMPTLY, "the follower's runner never projected the document", || async {
        let answer = follower.get("/documents?limit=100&status=ready", &admin).await;
        let listed = answer.json["documents"].as_array().is_some_and(|docs| docs.iter().any(|doc| doc["id"] == id));
        if listed { Ok(()) } else { Err(answer.text) }
    })
    .await;

    // Subscribers whose connection drops subscribe again: the next commit still arrives promptly.
    let mut redis = redis_connection().await;
    let channel = format!("{}:log", redis_namespace(&scratch));
    let _: u64 =
        ::redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut redis).await.expect("kill");
    eventually("the instances never subscribed again", || {
        let mut redis = redis.clone();
        let channel = channel.clone();
        async move {
            let counts: (String, u64) =
                ::redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel).query_async(&mut redis).await.expect("numsub");
            if counts.1 == 2 { Ok(()) } else { Err(format!("{counts:?}")) }
        }
    })
    .await;
    upload_seen_live(&writer, &admin, "after-reconnect.txt", &mut live).await;

    let written = writer.send(writer.request(Method::GET, "/metrics", None)).await.text;
    let followed = follower.send(follower.request(Method::GET, "/metrics", None)).await.text;
    assert!(counter(&written, "dossier_log_hints_published_total") >= 1, "{written}");
    assert!(counter(&followed, "dossier_log_hints_received_total") >= 1, "{followed}");
    drop(live);
    writer.stop().await;
    follower.stop().await;
}

/// Uploads `name` through `writer` and waits (briefly) for `live` to show it; returns the document's id.
async fn upload_seen_live(writer: &TestApi, token: &str, name: &str, live: &mut reqwest::Response) -> String {
    let uploaded = writer.upload_text(token, name, &format!("{name} announced across instances")).await;
    assert_eq!(uploaded.status, 202, "{}", uploaded.text);
    let id = uploaded.json["id"].as_str().expect("id").to_owned();
    let stream = json!(format!("document-{id}"));
    read_sse(live, PROMPTLY, |events| {
        events.iter().any(|(_, name, data)| name == "DocumentUploaded" && data["stream_id"] == stream)
    })
    .await;
    id
}
