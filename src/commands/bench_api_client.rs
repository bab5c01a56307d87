//! The client side of `bench api` beyond the load itself: tokens, single requests, and waiting until the server has
//! settled (projections caught up, the pipeline idle, the vector index's background build done).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use serde::Deserialize;

use crate::api::auth::{Claims, Keys, Role};
use crate::commands::bench_api::ApiBench;
use crate::commands::load::{self, Load};
use crate::commands::synthetic_log::TENANT;
use crate::error::AppError;

/// Requests to the server under test, with tokens for the benchmark's tenant.
pub struct Client {
    address: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// `Bearer` and a reader's token.
    pub reader: HeaderValue,
    /// `Bearer` and a writer's token.
    pub writer: HeaderValue,
    admin: HeaderValue,
}

impl Client {
    /// A client of the server at `address`, with tokens signed with `secret`.
    pub fn new(address: SocketAddr, secret: &str) -> Result<Self, AppError> {
        let keys = Keys::new(Some(secret)).map_err(AppError::Usage)?;
        let bearer = |role: Role| -> Result<HeaderValue, AppError> {
            let claims = Claims {
                sub: format!("bench-{role}"),
                tenant: TENANT.into(),
                roles: vec![role],
                exp: time::OffsetDateTime::now_utc().unix_timestamp() + 24 * 3600,
                iat: None,
                nbf: None,
            };
            let token = keys.mint(&claims).map_err(AppError::Usage)?;
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|error| AppError::Usage(error.to_string()))
        };
        let host = HeaderValue::try_from(address.to_string()).map_err(|error| AppError::Usage(error.to_string()))?;
        Ok(Self {
            address,
            host,
            reader: bearer(Role::Reader)?,
            writer: bearer(Role::Writer)?,
            admin: bearer(Role::Admin)?,
        })
    }

    /// A request for `uri` with `authorization`, and a JSON body when there is one.
    pub fn request(
        host: &HeaderValue,
        authorization: &HeaderValue,
        method: Method,
        uri: Uri,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone().unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, host.clone());
        headers.insert(AUTHORIZATION, authorization.clone());
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request
    }

    /// The load generator's settings for this server.
    pub fn load(&self, params: &ApiBench) -> Load {
        Load {
            address: self.address,
            connections: params.connections,
            warmup: params.warmup,
            duration: params.duration,
            client_threads: params.client_threads,
            rate: None,
        }
    }
}

#[derive(Deserialize)]
struct ProjectionList {
    projections: Vec<ProjectionLag>,
}

#[derive(Deserialize)]
struct ProjectionLag {
    head: u64,
    checkpoint: u64,
    state: String,
}

#[derive(Deserialize)]
struct DocumentPage {
    documents: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct SearchResults {
    results: Vec<serde_json::Value>,
}

/// Statuses of documents the pipeline has not finished with.
const IN_PROGRESS: &[&str] = &["uploaded", "parsed", "chunked", "embedded"];

impl Client {
    /// One request (not measured), its answer read as `T`; `Err` holds the answer when it is not a `T`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        authorization: &HeaderValue,
        method: Method,
        uri: Uri,
        body: Option<Bytes>,
    ) -> Result<Result<T, String>, AppError> {
        let request = Self::request(&self.host, authorization, method, uri, body);
        let (status, answer) = load::fetch(self.address, request).await?;
        let parsed = if status == StatusCode::OK { serde_json::from_slice(&answer).ok() } else { None };
        Ok(parsed.ok_or_else(|| format!("{status} {}", String::from_utf8_lossy(&answer))))
    }

    /// The log's head when every projection runs and has applied it, else why not.
    async fn caught_up(&self) -> Result<Result<u64, String>, AppError> {
        let uri = Uri::from_static("/api/v1/projections");
        let list = match self.call::<ProjectionList>(&self.admin, Method::GET, uri, None).await? {
            Ok(list) => list,
            Err(answer) => return Ok(Err(answer)),
        };
        let head = list.projections.first().map_or(0, |p| p.head);
        let lagging = list.projections.iter().any(|p| p.state != "running" || p.head == 0 || p.checkpoint < p.head);
        Ok(if lagging { Err(format!("projections lagging: head {head}")) } else { Ok(head) })
    }

    /// Whether every projection runs with no lag and, when `pipeline` is set, no document is still being processed:
    /// the projections have applied the whole log, no document is in progress in the read model, and the head did
    /// not move meanwhile (so the pipeline appended nothing the read model had not shown).
    async fn settled(&self, pipeline: bool) -> Result<Result<(), String>, AppError> {
        let head = match self.caught_up().await? {
            Ok(head) => head,
            Err(why) => return Ok(Err(why)),
        };
        if !pipeline {
            return Ok(Ok(()));
        }
        for status in IN_PROGRESS {
            let uri = Uri::try_from(format!("/api/v1/documents?status={status}&limit=1"))
                .map_err(|error| AppError::Usage(error.to_string()))?;
            match self.call::<DocumentPage>(&self.reader, Method::GET, uri, None).await? {
                Ok(page) if page.documents.is_empty() => {}
                Ok(_) => return Ok(Err(format!("documents still {status}"))),
                Err(answer) => return Ok(Err(answer)),
            }
        }
        Ok(match self.caught_up().await? {
            Ok(again) if again == head => Ok(()),
            Ok(again) => Err(format!("the log moved from {head} to {again}")),
            Err(why) => Err(why),
        })
    }

    /// Polls [`Client::settled`] until it holds; returns the seconds it took.
    pub async fn wait_until_settled(&self, pipeline: bool, timeout: Duration) -> Result<f64, AppError> {
        let started = Instant::now();
        loop {
            let last = match self.settled(pipeline).await? {
                Ok(()) => return Ok(started.elapsed().as_secs_f64()),
                Err(last) => last,
            };
            if started.elapsed() > timeout {
                return Err(AppError::Usage(format!(
                    "the server did not catch up within {} s; last seen: {last}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One search (not measured): the number of hits.
    pub async fn search_hits(&self, body: Bytes) -> Result<usize, AppError> {
        let uri = Uri::from_static("/api/v1/search");
        match self.call::<SearchResults>(&self.reader, Method::POST, uri, Some(body)).await? {
            Ok(results) => Ok(results.results.len()),
            Err(answer) => Err(AppError::Usage(format!("a search before the run failed: {answer}"))),
        }
    }
}

/// The thread qdrant-edge's background `optimize()` runs on (see the vector index's embedded engine).
const OPTIMIZER_THREAD: &str = "edge-optimize";

/// Waits until the threads named [`OPTIMIZER_THREAD`] (and those they started, which inherit the name) have used
/// no CPU for half a second; returns the seconds it took. Filling the index with the seeded chunks starts background
/// index builds that run for a while after the projection caught up, taking a core; measuring then would measure
/// them. (Linux, from `/proc/self/task`; elsewhere it returns at once.)
pub async fn wait_for_background_optimize(timeout: Duration) -> Result<f64, AppError> {
    let started = Instant::now();
    let mut last = optimizer_cpu_ticks();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = optimizer_cpu_ticks();
        if now == last {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout {
            return Err(AppError::Usage(format!(
                "the vector index was still optimising after {} s",
                timeout.as_secs()
            )));
        }
        last = now;
    }
}

/// CPU time (user + system, in clock ticks) of this process's threads named [`OPTIMIZER_THREAD`].
fn optimizer_cpu_ticks() -> u64 {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    let optimizers = tasks.filter(|task| {
        std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == OPTIMIZER_THREAD)
    });
    optimizers
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .map(|stat| {
            // Fields after the parenthesised name: state is the 3rd field, utime the 14th and stime the 15th.
            let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
            field(14) + field(15)
        })
        .sum()
}
