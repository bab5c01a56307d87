//! `dossier bench api`: the real HTTP server, loaded over TCP on 127.0.0.1 by a closed-loop client in the same
//! process ([`crate::commands::load`]), printing one JSON object.
//!
//! On a scratch store (see [`ScratchStore`]) it appends a synthetic log of ready documents whose chunks are
//! corpus-like prose ([`crate::commands::synthetic_log`]), starts the server on port 0 over it (BM25 only: no
//! embedding or chat model, no external Qdrant), waits until both projections have caught up, then measures in turn
//! `GET /documents/{id}` over the seeded documents, `POST /search` (sparse, top 10) with real SciFact queries, and
//! `POST /documents` with distinct ~2 KB texts (last, as every upload leaves pipeline work behind).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode, Uri};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::cli::BenchBackend;
use crate::commands::bench::{ScratchStore, print};
use crate::commands::bench_api_client::{Client, wait_for_background_optimize};
use crate::commands::load::{self, LoadReport, MakeRequest};
use crate::commands::synthetic::SyntheticText;
use crate::commands::synthetic_log::{LogShape, fill};
use crate::error::AppError;
use crate::server::Server;
use crate::settings::Settings;

/// Parameters of `bench api`.
#[derive(Clone, Debug)]
pub struct ApiBench {
    /// Concurrent connections.
    pub connections: usize,
    /// Worker threads of the load generator.
    pub client_threads: usize,
    /// Time measured per endpoint.
    pub duration: Duration,
    /// Time loaded before measuring, per endpoint.
    pub warmup: Duration,
    /// Chunks in the seeded log.
    pub chunks: usize,
    /// Chunks per seeded document.
    pub chunks_per_document: usize,
    /// Characters per seeded chunk (at most).
    pub chunk_chars: usize,
    /// Characters per uploaded text (at most).
    pub upload_chars: usize,
    /// BEIR queries (`queries.jsonl`) to search for.
    pub queries: PathBuf,
    /// Longest wait for the projections to catch up with the seeded log.
    pub catch_up_timeout: Duration,
    /// Where each endpoint's latency trace goes (see `load::run`), if anywhere.
    pub trace: Option<PathBuf>,
    /// Uploads due per second: the upload phase runs open loop at this rate (see [`load`]); `None`: closed loop.
    pub upload_rate: Option<f64>,
}

/// Connections of an open-loop upload phase: enough that a connection is free whenever an upload is due, unless the
/// server falls behind (which the latencies then show).
const OPEN_LOOP_CONNECTIONS: usize = 128;

impl ApiBench {
    /// The trace file of `endpoint`, when tracing.
    fn trace_file(&self, endpoint: &str) -> Option<PathBuf> {
        self.trace.as_ref().map(|dir| dir.join(format!("{endpoint}.tsv")))
    }
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    connections: usize,
    client_threads: usize,
    warmup_seconds: f64,
    documents: usize,
    chunks: usize,
    chunk_chars: usize,
    fill_seconds: f64,
    catch_up_seconds: f64,
    get_document: LoadReport,
    search: SearchReport,
    upload: UploadReport,
    peak_rss_mib: f64,
}

#[derive(Serialize)]
struct SearchReport {
    mode: &'static str,
    top_k: u32,
    queries: usize,
    /// Hits of the first query, searched once before the run (the index answers).
    first_query_hits: usize,
    #[serde(flatten)]
    load: LoadReport,
}

#[derive(Serialize)]
struct UploadReport {
    text_chars: usize,
    /// Time from the end of the run until the pipeline had processed every upload and the projections applied it.
    settle_seconds: f64,
    #[serde(flatten)]
    load: LoadReport,
}

/// Runs the benchmark on `backend` (the configured one when `None`) and prints one JSON object.
pub async fn run(
    settings: &Settings,
    backend: Option<BenchBackend>,
    params: ApiBench,
    text: Arc<SyntheticText>,
) -> Result<(), AppError> {
    if params.chunks_per_document == 0 || params.chunks == 0 {
        return Err(AppError::Usage("--chunks and --chunks-per-document must be at least 1".into()));
    }
    let queries: Vec<String> =
        crate::eval::read_queries(&params.queries)?.into_iter().map(|query| query.text).collect();
    if queries.is_empty() {
        return Err(AppError::Usage(format!("{}: no queries", params.queries.display())));
    }
    let scratch = ScratchStore::create(settings, backend).await?;
    let result = measure(settings, &scratch, &params, text, queries).await;
    scratch.remove().await?;
    print(&result?)
}

async fn measure(
    settings: &Settings,
    scratch: &ScratchStore,
    params: &ApiBench,
    text: Arc<SyntheticText>,
    queries: Vec<String>,
) -> Result<Report, AppError> {
    let shape = LogShape {
        documents: params.chunks.div_ceil(params.chunks_per_document),
        events_per_document: 4,
        chunks_per_document: params.chunks_per_document,
        dimensions: 0,
        chunk_chars: params.chunk_chars,
    };
    let started = Instant::now();
    let ids = fill(&scratch.store, shape, Arc::clone(&text)).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    tracing::info!(documents = ids.len(), fill_seconds, "bench_api_log_filled");

    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let server_settings = server_settings(settings, scratch, &secret)?;
    let server = Server::start(&server_settings, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = server.address();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));
    let client = Client::new(address, &secret)?;
    let result = scenarios(&client, params, ids, &text, queries).await;
    let _ = stop.send(());
    serving.await.map_err(|error| AppError::Usage(format!("the server task failed: {error}")))?;
    // The stopped projection actors drop their last handles on the vector index a moment later, and qdrant-edge
    // flushes a shard when its last handle goes (panicking if the scratch directory is already gone); there is no
    // handle to wait on from here, so the scratch store is removed after a grace period.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (catch_up_seconds, get_document, search, upload) = result?;
    Ok(Report {
        benchmark: "api",
        backend: scratch.store.backend_name(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        connections: params.connections,
        client_threads: params.client_threads,
        warmup_seconds: params.warmup.as_secs_f64(),
        documents: shape.documents,
        chunks: shape.documents * shape.chunks_per_document,
        chunk_chars: shape.chunk_chars,
        fill_seconds,
        catch_up_seconds,
        get_document,
        search,
        upload,
        peak_rss_mib: crate::commands::bench_ingest::peak_rss_mib(),
    })
}

/// The server's settings: the caller's, over the scratch store, with a fresh signing key, BM25 only (no model is
/// called), the embedded vector index, a rate limit no run reaches (so its check stays on the path) and, when Redis
/// is configured, a namespace of its own.
fn server_settings(settings: &Settings, scratch: &ScratchStore, secret: &str) -> Result<Settings, AppError> {
    let mut server = settings.clone();
    server.data_dir = scratch.dir.clone();
    server.database_url = match &settings.database_url {
        Some(url) => scratch.database_url(url.expose_secret()).map(SecretString::from),
        None => None,
    };
    if scratch.database_config().is_some() && server.database_url.is_none() {
        return Err(AppError::Usage("bench api: no URL for the scratch database".into()));
    }
    server.secret_key = Some(SecretString::from(secret.to_owned()));
    server.auto_migrate = true;
    server.embedding_model = None;
    server.embedding_model_dir = None;
    server.chat_model = None;
    server.qdrant_url = None;
    server.qdrant_api_key = None;
    server.rate_limit_per_minute = u32::MAX;
    server.redis_namespace = format!("dossier-bench-{}", Uuid::now_v7().simple());
    Ok(server)
}

type Measured = (f64, LoadReport, SearchReport, UploadReport);

async fn scenarios(
    client: &Client,
    params: &ApiBench,
    ids: Vec<Uuid>,
    text: &Arc<SyntheticText>,
    queries: Vec<String>,
) -> Result<Measured, AppError> {
    let caught_up = client.wait_until_settled(false, params.catch_up_timeout).await?;
    let catch_up_seconds = caught_up + wait_for_background_optimize(params.catch_up_timeout).await?;
    tracing::info!(catch_up_seconds, "bench_api_projections_caught_up");
    let load = client.load(params);

    let uris: Vec<Uri> = ids
        .iter()
        .map(|id| Uri::try_from(format!("/api/v1/documents/{id}")))
        .collect::<Result<_, _>>()
        .map_err(|error| AppError::Usage(error.to_string()))?;
    let (host, reader) = (client.host.clone(), client.reader.clone());
    // A stride through the documents (coprime with their count), so consecutive requests read unrelated streams.
    let stride = stride_for(uris.len());
    let make: MakeRequest = Arc::new(move |n| {
        let uri = uris[((n * stride) % uris.len() as u64) as usize].clone();
        Client::request(&host, &reader, Method::GET, uri, None)
    });
    let get_document = load::run(load, StatusCode::OK, make, params.trace_file("get_document")).await?;
    tracing::info!(requests_per_sec = get_document.requests_per_sec, p99_ms = get_document.p99_ms, "bench_api_get");

    let top_k = 10;
    let bodies: Vec<Bytes> = queries
        .iter()
        .map(|query| Bytes::from(json!({ "query": query, "mode": "sparse", "top_k": top_k }).to_string()))
        .collect();
    let first_query_hits = client.search_hits(bodies[0].clone()).await?;
    let (host, reader, count) = (client.host.clone(), client.reader.clone(), bodies.len());
    let make: MakeRequest = Arc::new(move |n| {
        let body = bodies[(n % bodies.len() as u64) as usize].clone();
        Client::request(&host, &reader, Method::POST, Uri::from_static("/api/v1/search"), Some(body))
    });
    let search = load::run(load, StatusCode::OK, make, params.trace_file("search")).await?;
    tracing::info!(requests_per_sec = search.requests_per_sec, p99_ms = search.p99_ms, "bench_api_search");
    let search = SearchReport { mode: "sparse", top_k, queries: count, first_query_hits, load: search };

    let (host, writer, text, chars) =
        (client.host.clone(), client.writer.clone(), Arc::clone(text), params.upload_chars);
    let make: MakeRequest = Arc::new(move |n| {
        // Seeds far from the seeded chunks', so no upload repeats another's bytes (which would deduplicate).
        let body = json!({
            "filename": format!("upload-{n}.txt"),
            "text": text.text((1 << 40) + n, chars),
            "media_type": "text/plain",
        });
        let body = Bytes::from(body.to_string());
        Client::request(&host, &writer, Method::POST, Uri::from_static("/api/v1/documents"), Some(body))
    });
    let upload_load = match params.upload_rate {
        None => load,
        Some(rate) => {
            load::Load { rate: Some(rate), connections: params.connections.max(OPEN_LOOP_CONNECTIONS), ..load }
        }
    };
    let upload = load::run(upload_load, StatusCode::ACCEPTED, make, params.trace_file("upload")).await?;
    tracing::info!(accepted_per_sec = upload.ok_per_sec, p99_ms = upload.p99_ms, "bench_api_upload");
    // The uploads' processing outlives the run; the scratch store is removed only once it is done.
    let settle_seconds = client.wait_until_settled(true, params.catch_up_timeout).await?;
    Ok((catch_up_seconds, get_document, search, UploadReport { text_chars: chars, settle_seconds, load: upload }))
}

/// The smallest stride from `count / 2 + 1` up that is coprime with `count` (so `n * stride % count` visits all).
fn stride_for(count: usize) -> u64 {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    (count / 2 + 1..).find(|stride| gcd(*stride, count) == 1).unwrap_or(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_for_visits_every_document() {
        for count in [1, 2, 7, 10, 12, 25_000] {
            let stride = stride_for(count);
            let visited: std::collections::HashSet<u64> =
                (0..count as u64).map(|n| n * stride % count as u64).collect();
            assert_eq!(visited.len(), count, "stride {stride} over {count}");
        }
    }
}
