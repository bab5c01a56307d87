//! The command line.

use std::net::SocketAddr;

use clap::{Parser, Subcommand, ValueEnum};

/// dossier: an event-sourced document ingestion and retrieval backend.
#[derive(Debug, Parser)]
#[command(name = "dossier", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API until SIGINT/SIGTERM.
    Serve {
        /// Listen address (overrides DOSSIER_BIND).
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Apply the schema migrations to the configured backend.
    Migrate,
    /// Print an API token (HS256 JWT signed with SECRET_KEY).
    Token {
        /// The subject: who the token acts as.
        #[arg(long)]
        sub: String,
        /// The tenant whose documents it reaches.
        #[arg(long)]
        tenant: String,
        /// A role (reader, writer or admin); repeat for several.
        #[arg(long = "role", required = true, value_parser = ["reader", "writer", "admin"])]
        roles: Vec<String>,
        /// How long it is valid: seconds, or a number with s, m, h or d (e.g. 90m, 12h, 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Print events as JSON lines.
    Events {
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Check every stream's hash chain and the global order; exit 1 naming the first bad event.
    Verify {
        /// Also compare the read model and the vector index with a replay of the log, printing every difference.
        #[arg(long)]
        projections: bool,
    },
    /// Rebuild a projection into a new generation while the live one keeps serving, then switch it in.
    Rebuild {
        /// The projection (`read_model` or `vector_index`).
        #[arg(value_parser = ["read_model", "vector_index"])]
        projection: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Retrieval quality on a BEIR data set (ingested through the pipeline into a scratch directory): nDCG@10,
    /// Recall@10, Recall@100, MRR@10 as JSON.
    Eval {
        /// The corpus (`corpus.jsonl`, optionally gzipped).
        #[arg(long)]
        corpus: std::path::PathBuf,
        /// The queries (`queries.jsonl`).
        #[arg(long)]
        queries: std::path::PathBuf,
        /// The relevance judgements (TSV: query-id, corpus-id, score).
        #[arg(long)]
        qrels: std::path::PathBuf,
        /// Retrieval mode (dense and hybrid need an embedding model).
        #[arg(long, value_enum, default_value_t = EvalMode::Sparse)]
        mode: EvalMode,
        /// A cutoff reported besides 10 and 100.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Only the first N corpus documents.
        #[arg(long)]
        limit: Option<usize>,
        /// Keep the ingested corpus in this directory and reuse it on later runs (tuning without re-embedding).
        #[arg(long)]
        workdir: Option<std::path::PathBuf>,
        /// BM25 term-frequency saturation.
        #[arg(long, default_value_t = dossier_projections::vector::Bm25Params::default().k1)]
        bm25_k1: f64,
        /// BM25 length normalisation.
        #[arg(long, default_value_t = dossier_projections::vector::Bm25Params::default().b)]
        bm25_b: f64,
        /// BM25 average chunk length in tokens.
        #[arg(long, default_value_t = dossier_projections::vector::Bm25Params::default().avg_len)]
        bm25_avg_len: f64,
        /// RRF rank constant (hybrid).
        #[arg(long, default_value_t = dossier_projections::vector::search::FusionParams::default().rrf_k)]
        rrf_k: usize,
        /// Include per-query results.
        #[arg(long)]
        per_query: bool,
    },
    /// Administer projections.
    Projections {
        /// What to do.
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Ingest files or whole directories and wait until every document is ready or failed.
    Ingest {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// The tenant the documents belong to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Benchmarks (print JSON).
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        bench: Bench,
    },
}

/// A retrieval mode for `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalMode {
    /// BM25 only.
    Sparse,
    /// The embedding only.
    Dense,
    /// Both, fused with RRF.
    Hybrid,
}

/// Projection administration.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Move a projection stopped at a poison event past it; the skip is recorded in the log first.
    Skip {
        /// The projection (`read_model` or `vector_index`).
        #[arg(value_parser = ["read_model", "vector_index"])]
        projection: String,
        /// The position of the event it stopped at (confirms which event is skipped).
        #[arg(long)]
        position: u64,
        /// Why the event can be ignored (recorded).
        #[arg(long)]
        reason: String,
        /// Who decided (recorded; default: $USER).
        #[arg(long, env = "USER", default_value = "admin")]
        actor: String,
    },
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Append throughput and latency, and catch-up read throughput.
    Append {
        /// Backend to measure: the configured one by default.
        #[arg(long, value_enum)]
        backend: Option<BenchBackend>,
        /// Events for the catch-up read measurement.
        #[arg(long, default_value_t = 1_000_000)]
        read_events: u64,
        /// Seconds each append measurement runs.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Rebuild the read model from a synthetic log: events/s, total time, peak RSS.
    Rebuild {
        /// Backend to measure: the configured one by default.
        #[arg(long, value_enum)]
        backend: Option<BenchBackend>,
        /// Documents in the synthetic log.
        #[arg(long, default_value_t = 25_000)]
        documents: usize,
        /// Events per document (5 lifecycle events, the rest metadata updates).
        #[arg(long, default_value_t = 40)]
        events_per_document: usize,
        /// Chunks (with vectors) per document.
        #[arg(long, default_value_t = 4)]
        chunks_per_document: usize,
        /// Vector length.
        #[arg(long, default_value_t = 384)]
        dimensions: usize,
        /// Events per rebuild batch (one transaction, or one flush of the vector index); the default is what
        /// `dossier rebuild` uses.
        #[arg(long, default_value_t = dossier_projections::runner::REBUILD_BATCH_SIZE)]
        batch_size: usize,
        /// The corpus whose sentences the synthetic chunks mix (`corpus.jsonl`, optionally gzipped).
        #[arg(long, default_value = "tests/data/scifact/corpus.jsonl.gz")]
        corpus: std::path::PathBuf,
        /// Characters per synthetic chunk (at most; whole sentences).
        #[arg(long, default_value_t = 1_000)]
        chunk_chars: usize,
    },
    /// Ingest a BEIR corpus through the pipeline: docs/s, chunks/s, peak RSS, overhead ratio.
    Ingest {
        /// Backend to measure: the configured one by default.
        #[arg(long, value_enum)]
        backend: Option<BenchBackend>,
        /// The corpus (`corpus.jsonl`, optionally gzipped).
        #[arg(long, default_value = "tests/data/scifact/corpus.jsonl.gz")]
        corpus: std::path::PathBuf,
        /// Only the first N documents.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// The HTTP API under closed-loop load over TCP: GET a document, search (sparse), upload; req/s and latency
    /// percentiles per endpoint.
    Api {
        /// Backend to measure: the configured one by default.
        #[arg(long, value_enum)]
        backend: Option<BenchBackend>,
        /// Seconds each endpoint is measured.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seconds each endpoint is loaded before measuring.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Concurrent keep-alive connections (each with one request in flight).
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Worker threads of the load generator (it shares the machine with the server).
        #[arg(long, default_value_t = 1)]
        client_threads: usize,
        /// Chunks in the seeded log (searched by `POST /search`).
        #[arg(long, default_value_t = 100_000)]
        chunks: usize,
        /// Chunks per seeded document.
        #[arg(long, default_value_t = 4)]
        chunks_per_document: usize,
        /// Characters per seeded chunk (at most; whole sentences).
        #[arg(long, default_value_t = 1_000)]
        chunk_chars: usize,
        /// Characters per uploaded text (at most; whole sentences).
        #[arg(long, default_value_t = 2_000)]
        upload_chars: usize,
        /// The corpus whose sentences the seeded chunks and uploads mix (`corpus.jsonl`, optionally gzipped).
        #[arg(long, default_value = "tests/data/scifact/corpus.jsonl.gz")]
        corpus: std::path::PathBuf,
        /// The queries searched for (BEIR `queries.jsonl`).
        #[arg(long, default_value = "tests/data/scifact/queries_train.jsonl")]
        queries: std::path::PathBuf,
        /// Longest wait, in seconds, for the projections to catch up with the seeded log.
        #[arg(long, default_value_t = 900)]
        catch_up_timeout: u64,
        /// A directory to write every measured request's start and latency to (`get_document.tsv`, `search.tsv`,
        /// `upload.tsv`), to find stalls.
        #[arg(long)]
        trace: Option<std::path::PathBuf>,
        /// Measure uploads open loop: this many uploads due a second, whatever the server does, each latency
        /// counted from when it was due (over at least 128 connections). Default: closed loop, like the others.
        #[arg(long)]
        upload_rate: Option<f64>,
    },
}

/// A backend to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// SQLite in a scratch directory.
    Embedded,
    /// A scratch database created next to DATABASE_URL's.
    Postgres,
}
