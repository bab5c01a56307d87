//! The `api_client` fixture: the real dossier server on port 0 over a scratch backend, and an HTTP client for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dossier::api::auth::{Claims, Keys, Role};
use dossier::server::Server;
use dossier::settings::Settings;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::support::{Scratch, ScratchDatabase};

/// The key every test server signs with.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// A running server and a client for it.
pub struct TestApi {
    /// `http://127.0.0.1:PORT/api/v1`.
    pub base: String,
    /// The client.
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    database: ScratchDatabase,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: Value,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts a problem+json error with this status and code; returns the problem.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        assert_eq!(self.json["code"], Value::from(code), "{}", self.text);
        assert_eq!(self.json["status"], Value::from(status), "{}", self.text);
        assert!(self.json["type"].is_string() && self.json["title"].is_string() && self.json["detail"].is_string());
        &self.json
    }
}

/// Polls `probe` every 25 ms until it returns `Ok`; after 30 s fails with `what` and the last `Err` (what was seen).
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_within(Duration::from_secs(30), what, probe).await
}

/// [`eventually`] with a deadline of `within`.
pub async fn eventually_within<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{what}; last seen: {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Reads server-sent events until `done` says so, or fails after `within`; returns (id, event, data) triples.
pub async fn read_sse(
    response: &mut reqwest::Response,
    within: Duration,
    mut done: impl FnMut(&[(String, String, Value)]) -> bool,
) -> Vec<(String, String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = Instant::now() + within;
    while !done(&events) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(remaining, response.chunk()).await;
        let chunk = chunk
            .unwrap_or_else(|_| panic!("no awaited event within {within:?}; got {events:?}"))
            .expect("stream readable")
            .expect("stream still open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if !id.is_empty() {
                events.push((id, name, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    events
}

/// The Redis of the tests (scripts/test.sh starts a throwaway one).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| {
        panic!("REDIS_URL is not set: run the tests with scripts/test.sh, which starts a throwaway Redis")
    })
}

/// The Redis namespace of the test servers over `scratch`.
pub fn redis_namespace(scratch: &Scratch) -> String {
    scratch.dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A connection to the tests' Redis, to look at (or play with) what the servers keep there.
pub async fn redis_connection() -> ::redis::aio::MultiplexedConnection {
    let client = ::redis::Client::open(redis_url()).expect("redis url");
    client.get_multiplexed_async_connection().await.expect("connect to redis")
}

/// The settings of a test server over `scratch` (`extra` overrides).
pub fn settings(scratch: &Scratch, extra: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert("DOSSIER_DATA_DIR".into(), scratch.data_dir().display().to_string());
    map.insert("SECRET_KEY".into(), SECRET.into());
    // Servers of one scratch share Redis keys; tests running at the same time do not.
    map.insert("REDIS_NAMESPACE".into(), redis_namespace(scratch));
    if let Some(url) = scratch.database_url() {
        map.insert("DATABASE_URL".into(), url);
    }
    for (name, value) in extra {
        map.insert((*name).to_owned(), (*value).to_owned());
    }
    Settings::from_lookup(|name| map.get(name).cloned()).expect("valid test settings")
}

/// A token signed with [`SECRET`].
pub fn token(sub: &str, tenant: &str, roles: &[Role]) -> String {
    let claims = Claims {
        sub: sub.into(),
        tenant: tenant.into(),
        roles: roles.to_vec(),
        exp: time::OffsetDateTime::now_utc().unix_timestamp() + 600,
        iat: None,
        nbf: None,
    };
    Keys::new(Some(SECRET)).expect("keys").mint(&claims).expect("mint")
}

impl TestApi {
    /// Starts a server over `scratch`.
    pub async fn start(scratch: &Scratch) -> Self {
        Self::start_with(scratch, &[]).await
    }

    /// Starts a server over `scratch` with extra settings.
    pub async fn start_with(scratch: &Scratch, extra: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(scratch.data_dir()).expect("data dir");
        let settings = settings(scratch, extra);
        let server = Server::start(&settings, "127.0.0.1:0".parse().expect("addr")).await.expect("start server");
        let base = format!("http://{}/api/v1", server.address());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Self { base, client, stop: Some(stop), task: Some(task), database: scratch.database() }
    }

    /// Stops the server and waits for it to finish, once the vector index has caught up with the log (for at most
    /// 10 s: a test may have stopped the projection). The index writes on blocking threads that outlive a stopped
    /// server; removing the scratch directory under a write that is still flushing makes qdrant-edge panic in a
    /// destructor, which aborts the whole test binary. The checkpoint is read from the database because
    /// `GET /projections` reports the vector index at checkpoint 0 while its points are searchable.
    pub async fn stop(mut self) {
        let head = "SELECT COALESCE(MAX(position), 0) FROM events";
        let checkpoint =
            "SELECT COALESCE(MAX(position), 0) FROM projection_checkpoints WHERE name LIKE 'vector_index:%'";
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && self.database.query_count(checkpoint).await < self.database.query_count(head).await
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// A request to `path` (under `/api/v1`) with `token` as its bearer token.
    pub fn request(&self, method: reqwest::Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Answer {
        let response = builder.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, headers, json, text }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path, Some(token))).await
    }

    /// Sends a JSON body.
    pub async fn json(&self, method: reqwest::Method, path: &str, token: &str, body: &Value) -> Answer {
        let builder = self
            .request(method, path, Some(token))
            .header("content-type", HeaderValue::from_static("application/json"))
            .body(body.to_string());
        self.send(builder).await
    }

    /// Uploads a text document as JSON; returns the answer.
    pub async fn upload_text(&self, token: &str, filename: &str, text: &str) -> Answer {
        let body = serde_json::json!({ "filename": filename, "text": text, "metadata": { "source": "test" } });
        self.json(reqwest::Method::POST, "/documents", token, &body).await
    }

    /// Polls `GET /documents/{id}` until its status is `status`.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        eventually(&format!("document {id} never became {status}"), || async move {
            let answer = self.get(&format!("/documents/{id}"), token).await;
            if answer.json["status"] == status { Ok(answer.json) } else { Err(answer.text) }
        })
        .await
    }

    /// `POST /search` with `body`.
    pub async fn search(&self, token: &str, body: &Value) -> Answer {
        self.json(reqwest::Method::POST, "/search", token, body).await
    }

    /// `POST /ask` with `body`.
    pub async fn ask(&self, token: &str, body: &Value) -> Answer {
        self.json(reqwest::Method::POST, "/ask", token, body).await
    }

    /// Polls a sparse `POST /search` for `query` until document `id` is among the results (the vector projection
    /// caught up); returns the answer.
    pub async fn wait_until_searchable(&self, token: &str, query: &str, id: &str) -> Value {
        let body = serde_json::json!({ "query": query, "mode": "sparse", "top_k": 100 });
        eventually(&format!("document {id} never found by search for {query:?}"), || async {
            let answer = self.search(token, &body).await;
            let found = answer.json["results"]
                .as_array()
                .is_some_and(|results| results.iter().any(|result| result["document_id"] == id));
            if found { Ok(answer.json) } else { Err(answer.text) }
        })
        .await
    }

    /// Polls `GET /documents{query}` until `id` is listed (the read model caught up).
    pub async fn wait_until_listed(&self, token: &str, id: &str, query: &str) -> Value {
        eventually(&format!("document {id} never listed"), || async move {
            let answer = self.get(&format!("/documents{query}"), token).await;
            let listed = answer.json["documents"]
                .as_array()
                .is_some_and(|documents| documents.iter().any(|document| document["id"] == id));
            if listed { Ok(answer.json) } else { Err(answer.text) }
        })
        .await
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
