//! Several instances on one Postgres and one Redis: each projection runs in exactly one instance (two real
//! `dossier serve` processes), the rate limit is shared, and recorded responses replay on any instance.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dossier::api::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::api::{SECRET, TestApi, eventually, redis_connection, redis_namespace, redis_url, token};
use crate::support::{Backend, Scratch, free_port, terminate};

/// A `dossier serve` child process, stopped (SIGTERM, then SIGKILL) when dropped; its stderr goes to a file in the
/// scratch directory, printed when the test fails.
struct Instance {
    child: Option<Child>,
    base: String,
    log: std::path::PathBuf,
}

impl Instance {
    fn start(scratch: &Scratch, namespace: &str) -> Self {
        let port = free_port();
        let log = scratch.dir.join(format!("serve-{port}.log"));
        let mut command: Command = scratch.dossier();
        command
            .env("SECRET_KEY", SECRET)
            .env("REDIS_URL", redis_url())
            .env("REDIS_NAMESPACE", namespace)
            .env("PROJECTION_LEASE_MS", "1000")
            // The test polls both instances; the shared rate limit is tested on its own.
            .env("RATE_LIMIT_PER_MINUTE", "0")
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("instance log"));
        let child = command.spawn().expect("spawn dossier serve");
        Self { child: Some(child), base: format!("http://127.0.0.1:{port}/api/v1"), log }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let exit = terminate(&mut child, Duration::from_secs(20));
        assert!(exit.success(), "clean shutdown, got {exit:?}");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ({}) ---\n{log}", self.base, self.log.display());
        }
    }
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> Option<Value> {
    let response = client.get(url).bearer_auth(token).send().await.ok()?;
    response.json().await.ok()
}

/// Polls every instance's `/projections` until `check` accepts their `runs_here` flags.
async fn wait_for_runners(
    client: &reqwest::Client,
    instances: &[&Instance],
    admin: &str,
    check: impl Fn(&[bool]) -> bool,
) {
    eventually("the projection runners never settled", || async {
        let mut flags = Vec::new();
        for instance in instances {
            let answer = get(client, &format!("{}/projections", instance.base), admin).await;
            flags.push(answer.as_ref().and_then(|body| body["projections"][0]["runs_here"].as_bool()));
        }
        match flags.iter().copied().collect::<Option<Vec<bool>>>() {
            Some(flags) if check(&flags) => Ok(()),
            _ => Err(format!("{flags:?}")),
        }
    })
    .await;
}

async fn upload_and_wait_listed(client: &reqwest::Client, instance: &Instance, writer: &str, name: &str) {
    let response = client
        .post(format!("{}/documents", instance.base))
        .bearer_auth(writer)
        .header("content-type", "application/json")
        .body(json!({"filename": name, "text": format!("contents of {name}")}).to_string())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.expect("json")["id"].clone();
    eventually(&format!("{name} was never projected"), || async {
        let listed = get(client, &format!("{}/documents?limit=100", instance.base), writer).await;
        match listed {
            Some(body) if body["documents"].as_array().is_some_and(|docs| docs.iter().any(|d| d["id"] == id)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_run_the_projection_in_exactly_one_and_hand_it_over_on_shutdown() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let namespace = format!("lease-test-{}", uuid::Uuid::now_v7().simple());
    // Migrate first, so the two instances start on a ready database.
    assert!(scratch.dossier().arg("migrate").output().expect("migrate").status.success());
    let mut first = Instance::start(&scratch, &namespace);
    let mut second = Instance::start(&scratch, &namespace);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let admin = token("root", "acme", &[Role::Admin]);
    let writer = token("alice", "acme", &[Role::Writer]);
    wait_for_runners(&client, &[&first, &second], &admin, |flags| flags.iter().filter(|here| **here).count() == 1)
        .await;
    // Whichever instance takes a command, the one runner projects it.
    upload_and_wait_listed(&client, &first, &writer, "one.txt").await;
    upload_and_wait_listed(&client, &second, &writer, "two.txt").await;
    let flags: Vec<bool> = {
        let mut flags = Vec::new();
        for instance in [&first, &second] {
            let body = get(&client, &format!("{}/projections", instance.base), &admin).await.expect("projections");
            let projection = &body["projections"][0];
            assert_eq!(projection["lease"], json!("redis"));
            if projection["runs_here"] == json!(false) {
                assert_eq!(projection["state"], json!("standby"), "{body}");
            }
            flags.push(projection["runs_here"] == json!(true));
        }
        flags
    };
    assert_eq!(flags.iter().filter(|here| **here).count(), 1, "exactly one runner: {flags:?}");
    // Stopping the runner hands the projection to the other instance.
    let (leader, survivor) = if flags[0] { (&mut first, &mut second) } else { (&mut second, &mut first) };
    leader.stop();
    wait_for_runners(&client, &[&*survivor], &admin, |flags| flags == [true]).await;
    upload_and_wait_listed(&client, survivor, &writer, "three.txt").await;
    survivor.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_and_recorded_responses_are_shared_across_instances() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let redis = redis_url();
    let settings = [("REDIS_URL", redis.as_str()), ("RATE_LIMIT_PER_MINUTE", "4")];
    let first = TestApi::start_with(&scratch, &settings).await;
    let second = TestApi::start_with(&scratch, &settings).await;
    let alice = token("alice", "acme", &[Role::Writer]);
    let upload = |api: &TestApi| {
        api.request(Method::POST, "/documents", Some(&alice))
            .header("content-type", "application/json")
            .header("idempotency-key", "shared-key")
            .body(json!({"filename": "a.txt", "text": "once"}).to_string())
    };
    let created = first.send(upload(&first)).await;
    assert_eq!(created.status, 202, "{}", created.text);
    let replayed = second.send(upload(&second)).await;
    assert_eq!((replayed.status, replayed.text.as_str()), (202, created.text.as_str()));
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    // The response is cached in Redis, in this deployment's namespace.
    let namespace = redis_namespace(&scratch);
    let mut connection = redis_connection().await;
    let cached: Vec<String> =
        ::redis::cmd("KEYS").arg(format!("{namespace}:idem:*")).query_async(&mut connection).await.expect("keys");
    assert_eq!(cached.len(), 1, "{cached:?}");
    // Two of four requests spent; two more anywhere, then the fifth is refused on either instance.
    assert_eq!(first.get("/documents", &alice).await.status, 200);
    assert_eq!(second.get("/documents", &alice).await.status, 200);
    let limited = first.get("/documents", &alice).await;
    limited.assert_problem(429, "rate_limited");
    second.get("/documents", &alice).await.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_while_another_instance_holds_the_rebuild_lease_returns_409() {
    let scratch = Scratch::new(Backend::Postgres).await;
    let redis = redis_url();
    let api = TestApi::start_with(&scratch, &[("REDIS_URL", redis.as_str())]).await;
    let admin = token("root", "acme", &[Role::Admin]);
    // Play the other instance: hold the rebuild lease under this server's namespace.
    let namespace = redis_namespace(&scratch);
    let key = format!("{namespace}:lease:read_model:rebuild");
    let mut connection = redis_connection().await;
    let _: () = ::redis::cmd("SET")
        .arg(&key)
        .arg("another-instance")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut connection)
        .await
        .expect("set");
    let refused = api.send(api.request(Method::POST, "/projections/read_model/rebuild", Some(&admin))).await;
    let problem = refused.assert_problem(409, "invalid_state");
    assert!(problem["detail"].as_str().is_some_and(|detail| detail.contains("another instance")), "{problem}");
    let _: () = ::redis::cmd("DEL").arg(&key).query_async(&mut connection).await.expect("del");
    let started = api.send(api.request(Method::POST, "/projections/read_model/rebuild", Some(&admin))).await;
    assert_eq!(started.status, 202, "{}", started.text);
    eventually("the rebuild never released its lease", || async {
        let mut connection = connection.clone();
        let holder: Option<String> =
            ::redis::cmd("GET").arg(&key).query_async(&mut connection).await.map_err(|e| e.to_string())?;
        match holder {
            None => Ok(()),
            Some(holder) => Err(holder),
        }
    })
    .await;
    api.stop().await;
}
