//! Configuration: one typed [`Settings`], read from the environment (and an optional `.env` file).
//!
//! Secrets (`DATABASE_URL`, which may hold a password, and `SECRET_KEY`) are [`SecretString`]s: their `Debug` output
//! is redacted and they are never logged.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything dossier can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the Postgres log; absent means the embedded SQLite log under `data_dir`.
    pub database_url: Option<SecretString>,
    /// `DOSSIER_DATA_DIR`: embedded databases and uploaded files (default `./data`).
    pub data_dir: PathBuf,
    /// `SECRET_KEY`: signs API tokens.
    pub secret_key: Option<SecretString>,
    /// `DOSSIER_BIND`: the HTTP listen address (default `127.0.0.1:8080`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `DB_POOL_SIZE`: Postgres connections kept open (default 5).
    pub pool_size: usize,
    /// `DB_POOL_OVERFLOW`: extra Postgres connections allowed under load (default 15).
    pub pool_overflow: usize,
    /// `DOSSIER_AUTO_MIGRATE`: apply pending migrations when the server starts (default true).
    pub auto_migrate: bool,
    /// `LLM_BASE_URL`: an OpenAI-compatible endpoint (`http://host:11434/v1`); unset: no model is called.
    pub llm_base_url: Option<String>,
    /// `LLM_API_KEY`: its API key, if it needs one.
    pub llm_api_key: Option<SecretString>,
    /// `CHAT_MODEL`: the chat model at `LLM_BASE_URL` that writes `POST /ask` answers; unset: answers are extractive.
    pub chat_model: Option<String>,
    /// `LLM_TIMEOUT_MS`: time allowed for one chat completion, in milliseconds (default 120000).
    pub llm_timeout_ms: u64,
    /// `EMBEDDING_MODEL`: the embedding model at `LLM_BASE_URL`; unset: no dense vectors (search is lexical).
    pub embedding_model: Option<String>,
    /// `EMBEDDING_MODEL_DIR`: a local sentence-transformers model directory (e.g. all-MiniLM-L6-v2) run in process
    /// with candle; takes precedence over `EMBEDDING_MODEL`.
    pub embedding_model_dir: Option<PathBuf>,
    /// `EMBEDDING_DIMENSIONS`: the model's vector length, checked on every answer.
    pub embedding_dimensions: Option<u32>,
    /// `CHUNK_MAX_CHARS` / `CHUNK_OVERLAP`: chunk size and overlap in characters (default 1000 / 100).
    pub chunk_max_chars: usize,
    /// See `chunk_max_chars`.
    pub chunk_overlap: usize,
    /// `MAX_UPLOAD_BYTES`: largest accepted upload (default 50 MiB).
    pub max_upload_bytes: usize,
    /// `DOSSIER_DEDUPLICATE`: the same bytes uploaded again in a tenant return the existing document (default true).
    pub deduplicate: bool,
    /// `REDIS_URL`: Redis for rate limits, the idempotency cache, live fan-out and leases; unset: in-process.
    pub redis_url: Option<SecretString>,
    /// `REDIS_NAMESPACE`: prefix of every Redis key, so several deployments can share one Redis (default `dossier`).
    pub redis_namespace: String,
    /// `RATE_LIMIT_PER_MINUTE`: API requests a minute per (tenant, subject); 0 disables the limit (default 600).
    pub rate_limit_per_minute: u32,
    /// `LOG_POLL_INTERVAL_MS`: how often a follower of the log (live events, projections) re-reads it when no
    /// commit was announced (default 500). Commits are announced by this instance's own writer, by Postgres
    /// `LISTEN`, and with Redis by the other instances, so the poll only bounds the latency of unannounced ones.
    pub log_poll_interval_ms: u64,
    /// `IDEMPOTENCY_RETENTION_HOURS`: how long a recorded command response is replayed under its `Idempotency-Key`
    /// (default 24); older records are no longer replayed and are purged.
    pub idempotency_retention_hours: u64,
    /// `PROJECTION_LEASE_MS`: time to live of a projection lease (default 10000); its holder renews it every third.
    pub projection_lease_ms: u64,
    /// `QDRANT_URL`: a Qdrant server's gRPC endpoint (`http://host:6334`); unset: the embedded engine under the data
    /// directory.
    pub qdrant_url: Option<String>,
    /// `QDRANT_API_KEY`: its API key, if it needs one.
    pub qdrant_api_key: Option<SecretString>,
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}: {reason}")]
pub struct SettingsError {
    /// The environment variable.
    pub name: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Settings {
    /// How long recorded command responses are kept (`IDEMPOTENCY_RETENTION_HOURS`).
    pub fn idempotency_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idempotency_retention_hours.saturating_mul(3_600))
    }

    /// Reads the settings from the process environment, after loading `.env` if there is one (variables already
    /// set win over the file).
    pub fn from_env() -> Result<Self, SettingsError> {
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            return Err(SettingsError { name: ".env", reason: error.to_string() });
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        Ok(Self {
            database_url: get("DATABASE_URL").map(SecretString::from),
            data_dir: get("DOSSIER_DATA_DIR").map_or_else(|| PathBuf::from("data"), PathBuf::from),
            secret_key: get("SECRET_KEY").map(SecretString::from),
            bind: parse(&get, "DOSSIER_BIND", "127.0.0.1:8080".parse().unwrap_or(([127, 0, 0, 1], 8080).into()))?,
            log_format: match get("LOG_FORMAT").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(SettingsError { name: "LOG_FORMAT", reason: format!("{other:?} (use text or json)") });
                }
            },
            pool_size: parse(&get, "DB_POOL_SIZE", 5)?,
            pool_overflow: parse(&get, "DB_POOL_OVERFLOW", 15)?,
            auto_migrate: parse(&get, "DOSSIER_AUTO_MIGRATE", true)?,
            llm_base_url: get("LLM_BASE_URL"),
            llm_api_key: get("LLM_API_KEY").map(SecretString::from),
            chat_model: get("CHAT_MODEL"),
            llm_timeout_ms: parse(&get, "LLM_TIMEOUT_MS", 120_000)?,
            embedding_model: get("EMBEDDING_MODEL"),
            embedding_model_dir: get("EMBEDDING_MODEL_DIR").map(PathBuf::from),
            embedding_dimensions: get("EMBEDDING_DIMENSIONS")
                .map(|text| {
                    text.trim().parse().map_err(|error| SettingsError {
                        name: "EMBEDDING_DIMENSIONS",
                        reason: format!("{text:?}: {error}"),
                    })
                })
                .transpose()?,
            chunk_max_chars: parse(&get, "CHUNK_MAX_CHARS", 1_000)?,
            chunk_overlap: parse(&get, "CHUNK_OVERLAP", 100)?,
            max_upload_bytes: parse(&get, "MAX_UPLOAD_BYTES", 50 * 1024 * 1024)?,
            deduplicate: parse(&get, "DOSSIER_DEDUPLICATE", true)?,
            redis_url: get("REDIS_URL").map(SecretString::from),
            redis_namespace: get("REDIS_NAMESPACE").unwrap_or_else(|| "dossier".to_owned()),
            rate_limit_per_minute: parse(&get, "RATE_LIMIT_PER_MINUTE", 600)?,
            log_poll_interval_ms: parse(&get, "LOG_POLL_INTERVAL_MS", 500)?,
            idempotency_retention_hours: parse(&get, "IDEMPOTENCY_RETENTION_HOURS", 24)?,
            projection_lease_ms: parse(&get, "PROJECTION_LEASE_MS", 10_000)?,
            qdrant_url: get("QDRANT_URL"),
            qdrant_api_key: get("QDRANT_API_KEY").map(SecretString::from),
        })
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|error| SettingsError { name, reason: format!("{text:?}: {error}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn from_lookup_with_nothing_set_returns_embedded_defaults() {
        let settings = settings(&[]).expect("defaults");
        assert!(settings.database_url.is_none());
        assert_eq!(settings.data_dir, PathBuf::from("data"));
        assert_eq!((settings.pool_size, settings.pool_overflow), (5, 15));
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!((settings.log_poll_interval_ms, settings.idempotency_retention_hours), (500, 24));
    }

    #[test]
    fn from_lookup_with_bad_values_names_the_variable() {
        let error = settings(&[("DB_POOL_SIZE", "five")]).expect_err("bad number");
        assert_eq!(error.name, "DB_POOL_SIZE");
        let error = settings(&[("LOG_FORMAT", "xml")]).expect_err("bad format");
        assert_eq!(error.name, "LOG_FORMAT");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let settings =
            settings(&[("DATABASE_URL", "postgres://u:hunter2@h/db"), ("SECRET_KEY", "s3cr3t-value")]).expect("valid");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("s3cr3t-value"), "{debug}");
        assert_eq!(settings.secret_key.as_ref().map(|key| key.expose_secret().len()), Some(12));
    }
}
