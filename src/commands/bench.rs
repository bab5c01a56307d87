//! `dossier bench append`: append throughput/latency and catch-up read throughput, printed as JSON.
//!
//! Each run works on a scratch store (a temporary directory, or a scratch database on DATABASE_URL's server) that
//! it removes afterwards, so it never touches real data.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_events::postgres::connect::{create_database, drop_database, parse_url};
use dossier_events::postgres::{PostgresOptions, PostgresStore};
use dossier_events::sqlite::{SqliteOptions, SqliteStore};
use dossier_events::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamId};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::cli::BenchBackend;
use crate::error::AppError;
use crate::settings::Settings;

/// Parameters of `bench append`.
#[derive(Debug, Clone, Copy)]
pub struct AppendBench {
    /// How long each append measurement runs.
    pub duration: Duration,
    /// Events read back in the catch-up measurement.
    pub read_events: u64,
}

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    single_event_appends: Throughput,
    batch_appends: Throughput,
    catch_up_read: ReadThroughput,
}

#[derive(Serialize)]
struct Throughput {
    writers: usize,
    events_per_append: usize,
    appends: u64,
    events: u64,
    seconds: f64,
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Serialize)]
struct ReadThroughput {
    page_size: usize,
    events: u64,
    seconds: f64,
    events_per_sec: f64,
}

/// A store created for one benchmark run and removed afterwards: a temporary directory, or a scratch database on
/// DATABASE_URL's server.
pub struct ScratchStore {
    /// The store.
    pub store: Arc<dyn EventStore>,
    /// A temporary directory (the embedded database, blobs).
    pub dir: std::path::PathBuf,
    database: Option<(tokio_postgres::Config, String)>,
}

impl ScratchStore {
    /// Creates it on `backend` (the configured one when `None`).
    pub async fn create(settings: &Settings, backend: Option<BenchBackend>) -> Result<Self, AppError> {
        let dir = std::env::temp_dir().join(format!("dossier-bench-{}", Uuid::now_v7()));
        let backend = backend.unwrap_or(if settings.database_url.is_some() {
            BenchBackend::Postgres
        } else {
            BenchBackend::Embedded
        });
        match backend {
            BenchBackend::Embedded => {
                let store = SqliteStore::open(&dir, SqliteOptions::default()).await?;
                Ok(Self { store: Arc::new(store), dir, database: None })
            }
            BenchBackend::Postgres => {
                let url = settings
                    .database_url
                    .as_ref()
                    .ok_or_else(|| AppError::Usage("bench --backend postgres needs DATABASE_URL".into()))?;
                let admin = parse_url(url.expose_secret())?;
                let name = format!("dossier_bench_{}", Uuid::now_v7().simple());
                let config = create_database(&admin, &name).await?;
                let options = PostgresOptions { pool_size: 8, ..PostgresOptions::default() };
                match PostgresStore::connect_with(config, options).await {
                    Ok(store) => Ok(Self { store: Arc::new(store), dir, database: Some((admin, name)) }),
                    Err(error) => {
                        drop_database(&admin, &name).await?;
                        Err(error.into())
                    }
                }
            }
        }
    }

    /// The scratch database's configuration (Postgres only).
    pub fn database_config(&self) -> Option<tokio_postgres::Config> {
        self.database.as_ref().map(|(admin, name)| {
            let mut config = admin.clone();
            config.dbname(name);
            config
        })
    }

    /// The scratch database's URL (Postgres only): `admin_url` (DATABASE_URL) naming the scratch database instead.
    pub fn database_url(&self, admin_url: &str) -> Option<String> {
        let (_, name) = self.database.as_ref()?;
        let (base, query) = admin_url.split_once('?').map_or((admin_url, None), |(base, query)| (base, Some(query)));
        // `postgres://user@host:port/db`: the part before the database name (a URL without one keeps it whole).
        let server = base.rsplit_once('/').filter(|(server, _)| server.contains("//") && !server.ends_with('/'));
        let server = server.map_or(base, |(server, _)| server);
        Some(match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        })
    }

    /// Removes the directory and the database.
    pub async fn remove(self) -> Result<(), AppError> {
        drop(self.store);
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((admin, name)) = self.database {
            drop_database(&admin, &name).await?;
        }
        Ok(())
    }
}

/// Runs the benchmark on `backend` (the configured one when `None`) and prints one JSON object.
pub async fn append(settings: &Settings, backend: Option<BenchBackend>, params: AppendBench) -> Result<(), AppError> {
    let scratch = ScratchStore::create(settings, backend).await?;
    let result = measure(Arc::clone(&scratch.store), params).await;
    scratch.remove().await?;
    print(&result?)
}

/// Prints a report as pretty JSON on stdout.
pub fn print(report: &impl Serialize) -> Result<(), AppError> {
    println!("{}", serde_json::to_string_pretty(report).map_err(|error| AppError::Usage(error.to_string()))?);
    Ok(())
}

async fn measure(store: Arc<dyn EventStore>, params: AppendBench) -> Result<Report, AppError> {
    let single = appends(Arc::clone(&store), 32, 1, params.duration).await?;
    tracing::info!(events_per_sec = single.events_per_sec, p99_ms = single.p99_ms, "bench_single_event_appends");
    let batch = appends(Arc::clone(&store), 4, 100, params.duration).await?;
    tracing::info!(events_per_sec = batch.events_per_sec, "bench_batch_appends");
    fill(&store, params.read_events).await?;
    let read = catch_up(&store, params.read_events).await?;
    tracing::info!(events_per_sec = read.events_per_sec, "bench_catch_up_read");
    Ok(Report {
        benchmark: "append",
        backend: store.backend_name(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        single_event_appends: single,
        batch_appends: batch,
        catch_up_read: read,
    })
}

fn sample_events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|i| {
            NewEvent::new(
                "DocumentParsed",
                1,
                json!({
                    "text_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "text_length": 1_024 + i,
                    "title": "Quarterly report",
                    "parser": "markdown",
                }),
            )
        })
        .collect()
}

/// `writers` tasks, each appending `per_append` events at a time to streams of its own, for `duration`.
async fn appends(
    store: Arc<dyn EventStore>,
    writers: usize,
    per_append: usize,
    duration: Duration,
) -> Result<Throughput, AppError> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let metadata = EventMetadata::new("bench", "bench");
            while Instant::now() < deadline {
                let stream = StreamId::for_document(Uuid::now_v7());
                let began = Instant::now();
                store.append(&stream, ExpectedVersion::NoStream, sample_events(per_append), metadata.clone()).await?;
                latencies.push(began.elapsed());
            }
            Ok::<_, dossier_events::StoreError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        let task_latencies =
            task.await.map_err(|error| AppError::Usage(format!("benchmark writer panicked: {error}")))??;
        latencies.extend(task_latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let appends = latencies.len() as u64;
    let events = appends * per_append as u64;
    Ok(Throughput {
        writers,
        events_per_append: per_append,
        appends,
        events,
        seconds,
        events_per_sec: events as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    })
}

/// The `quantile` (0 to 1) of sorted durations, in milliseconds (nearest rank; 0 when there are none).
pub fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1_000.0
}

/// Appends 100-event batches from 4 writers until the log holds `target` events.
async fn fill(store: &Arc<dyn EventStore>, target: u64) -> Result<(), AppError> {
    let head = store.head_position().await?;
    let missing = target.saturating_sub(head);
    let per_writer = missing.div_ceil(400);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(store);
        tasks.push(tokio::spawn(async move {
            let metadata = EventMetadata::new("bench", "bench");
            for _ in 0..per_writer {
                let stream = StreamId::for_document(Uuid::now_v7());
                store.append(&stream, ExpectedVersion::NoStream, sample_events(100), metadata.clone()).await?;
            }
            Ok::<_, dossier_events::StoreError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|error| AppError::Usage(format!("benchmark writer panicked: {error}")))??;
    }
    Ok(())
}

/// Reads `count` events from position 0 in pages of 1,000, as a catching-up subscriber does.
async fn catch_up(store: &Arc<dyn EventStore>, count: u64) -> Result<ReadThroughput, AppError> {
    const PAGE: usize = 1_000;
    let started = Instant::now();
    let mut position = 0;
    let mut events = 0;
    while events < count {
        let page = store.read_all(position, PAGE).await?;
        let Some(last) = page.last() else { break };
        position = last.position;
        events += page.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(ReadThroughput { page_size: PAGE, events, seconds, events_per_sec: events as f64 / seconds })
}
