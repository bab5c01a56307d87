//! Replayable command responses: the first successful response under a tenant's `Idempotency-Key` is recorded
//! durably (table `api_idempotency`, schema/*/0003) with the fingerprint of the request it answered.
//!
//! A retry with the key and the same request gets that response back byte for byte (also after a restart), with
//! `Idempotent-Replayed: true`; the key with another request is a 422. The events of a command also carry the key,
//! so the log's own idempotency check backs this record up should the process die between the append and the
//! record. Only successes are recorded: a refused command wrote nothing, so it is safe to send again.
//!
//! Records are kept for the retention (`IDEMPOTENCY_RETENTION_HOURS`, default 24): an older record is never
//! replayed (its key counts as new again) and [`purge_periodically`] deletes it. The keys written into the log's
//! events are part of the log and stay: a command retried after the retention is still refused by the log if it
//! would append the same events twice.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::http::header::{HeaderName, HeaderValue};

use crate::api::error::ApiError;

/// A response as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status.
    pub status: u16,
    /// The headers that matter for a replay (content type, `Location`, `ETag`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// A JSON response.
    pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(body).map_err(|error| ApiError::Internal(error.to_string()))?;
        Ok(Self { status: status.as_u16(), headers: vec![("content-type".into(), "application/json".into())], body })
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The HTTP response.
    pub fn into_response(self) -> warp::reply::Response {
        let mut response = warp::reply::Response::new(self.body.into());
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// A recorded response with the fingerprint of its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// SHA-256 of the normalised request.
    pub fingerprint: [u8; 32],
    /// The response.
    pub response: StoredResponse,
    /// When it was recorded (the store's clock decides for the durable record).
    pub recorded_at: OffsetDateTime,
}

impl Record {
    /// How much longer the record is replayed under `retention`; zero once it has expired.
    pub fn remaining(&self, retention: Duration) -> Duration {
        let expires = self.recorded_at + retention;
        Duration::try_from(expires - OffsetDateTime::now_utc()).unwrap_or(Duration::ZERO)
    }
}

/// Records deleted per statement while purging, so a large purge never holds the database's write lock for long.
const PURGE_BATCH: i64 = 1_000;

/// How often expired records are purged (they stop being replayed the moment they expire; this only frees space).
const PURGE_EVERY: Duration = Duration::from_secs(3_600);

/// The SHA-256 of a normalised request: the route and a canonical JSON rendering of what was asked.
pub fn fingerprint(route: &str, request: &serde_json::Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(dossier_events::hash::canonical_json(request).as_bytes());
    hasher.finalize().into()
}

/// Where records live.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// The record of a key in a tenant.
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Record>, ApiError>;

    /// Records a response unless the key already has one; returns the record that holds after the call.
    async fn put(&self, tenant: &str, key: &str, record: Record) -> Result<Record, ApiError>;

    /// Deletes the records older than the retention; returns how many.
    async fn purge_expired(&self) -> Result<u64, ApiError>;
}

/// Purges expired records now and every hour until `shutdown` (every instance does; deleting is idempotent).
pub async fn purge_periodically(store: Arc<dyn IdempotencyStore>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "idempotency_records_purged"),
            Err(error) => tracing::warn!(error = %error, "idempotency_purge_failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(PURGE_EVERY) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Carries out `command` at most once per key: replays a recorded response, refuses another request under the key,
/// or runs the command and records its successful response.
pub async fn run_once<F>(
    store: &dyn IdempotencyStore,
    tenant: &str,
    key: Option<&str>,
    fingerprint: [u8; 32],
    command: F,
) -> Result<warp::reply::Response, ApiError>
where
    F: Future<Output = Result<StoredResponse, ApiError>>,
{
    let Some(key) = key else { return command.await.map(StoredResponse::into_response) };
    if let Some(record) = store.get(tenant, key).await? {
        return replay(record, fingerprint, key);
    }
    let response = match command.await {
        Ok(response) => response,
        // The log refused the key: an earlier request under it appended events but died before recording its
        // response (or is still running).
        Err(ApiError::IdempotencyMismatch(_)) => {
            return match store.get(tenant, key).await? {
                Some(record) => replay(record, fingerprint, key),
                None => Err(ApiError::IdempotencyInProgress(key.to_owned())),
            };
        }
        Err(error) => return Err(error),
    };
    let record = Record { fingerprint, response: response.clone(), recorded_at: OffsetDateTime::now_utc() };
    let stored = store.put(tenant, key, record).await?;
    if stored.fingerprint == fingerprint && stored.response == response {
        Ok(response.into_response())
    } else {
        // A concurrent request under the same key recorded first.
        replay(stored, fingerprint, key)
    }
}

fn replay(record: Record, fingerprint: [u8; 32], key: &str) -> Result<warp::reply::Response, ApiError> {
    if record.fingerprint != fingerprint {
        return Err(ApiError::IdempotencyMismatch(key.to_owned()));
    }
    Ok(record.response.with_header("idempotent-replayed", "true").into_response())
}

fn encode_headers(headers: &[(String, String)]) -> Result<String, ApiError> {
    serde_json::to_string(headers).map_err(|error| ApiError::Internal(error.to_string()))
}

fn decode(
    fingerprint: &[u8],
    status: i64,
    headers: &str,
    body: Vec<u8>,
    recorded_at: OffsetDateTime,
) -> Result<Record, ApiError> {
    let corrupt = |what: &str| ApiError::Internal(format!("unreadable idempotency record: {what}"));
    Ok(Record {
        fingerprint: fingerprint.try_into().map_err(|_| corrupt("fingerprint"))?,
        response: StoredResponse {
            status: u16::try_from(status).map_err(|_| corrupt("status"))?,
            headers: serde_json::from_str(headers).map_err(|_| corrupt("headers"))?,
            body,
        },
        recorded_at,
    })
}

/// Microseconds since the Unix epoch, as the embedded table stores times.
fn unix_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Records in the embedded SQLite database, beside the log.
pub struct SqliteIdempotency {
    connection: Arc<Mutex<rusqlite::Connection>>,
    retention: Duration,
}

impl SqliteIdempotency {
    /// Opens the database of `data_dir` (the store must have been opened first, so the table exists); records are
    /// kept for `retention`.
    pub fn open(data_dir: &std::path::Path, retention: Duration) -> Result<Self, String> {
        let path: PathBuf = data_dir.join(dossier_events::sqlite::DATABASE_FILE);
        let located = |error: rusqlite::Error| format!("{}: {error}", path.display());
        // Never creates the file: an empty database here would hide a wrong data directory until the first command.
        let flags = rusqlite::OpenFlags::default() - rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
        let mut connection = rusqlite::Connection::open_with_flags(&path, flags).map_err(located)?;
        dossier_events::sqlite::configure(&connection).map_err(located)?;
        // The lock waits every other connection to the file takes (the log's writer holds the lock for well under
        // a millisecond; SQLite's own `busy_timeout` sleeps a millisecond and more at the first conflict).
        connection.busy_handler(Some(dossier_events::sqlite::wait_for_lock)).map_err(located)?;
        connection.prepare("SELECT 1 FROM api_idempotency LIMIT 0").map_err(|error| {
            format!("{}: no idempotency table ({error}): open the event store first, which migrates it", path.display())
        })?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)), retention })
    }

    /// Records made before this are expired (microseconds since the Unix epoch).
    fn cutoff(&self) -> i64 {
        unix_micros(OffsetDateTime::now_utc() - self.retention)
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().map_err(|_| ApiError::Internal("idempotency lock poisoned".into()))?;
            work(&connection)
        })
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
    }
}

fn sqlite_error(error: rusqlite::Error) -> ApiError {
    ApiError::Internal(format!("idempotency record: {error}"))
}

fn sqlite_get(
    connection: &rusqlite::Connection,
    tenant: &str,
    key: &str,
    cutoff: i64,
) -> Result<Option<Record>, ApiError> {
    use rusqlite::OptionalExtension;
    let row = connection
        .query_row(
            "SELECT fingerprint, status, headers, body, created_at FROM api_idempotency
             WHERE tenant_id = ?1 AND key = ?2 AND created_at >= ?3",
            rusqlite::params![tenant, key, cutoff],
            |row| {
                let columns = (row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?);
                Ok((columns, row.get(3)?, row.get::<_, i64>(4)?))
            },
        )
        .optional()
        .map_err(sqlite_error)?;
    row.map(|((fingerprint, status, headers), body, micros)| {
        let recorded_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_err(|_| ApiError::Internal("unreadable idempotency record: created_at".into()))?;
        decode(&fingerprint, status, &headers, body, recorded_at)
    })
    .transpose()
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotency {
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Record>, ApiError> {
        let (tenant, key, cutoff) = (tenant.to_owned(), key.to_owned(), self.cutoff());
        self.with(move |connection| sqlite_get(connection, &tenant, &key, cutoff)).await
    }

    async fn put(&self, tenant: &str, key: &str, record: Record) -> Result<Record, ApiError> {
        let (tenant, key, cutoff) = (tenant.to_owned(), key.to_owned(), self.cutoff());
        let headers = encode_headers(&record.response.headers)?;
        self.with(move |connection| {
            // An expired record not purged yet is replaced: its key counts as new.
            connection
                .execute(
                    "INSERT INTO api_idempotency (tenant_id, key, fingerprint, status, headers, body, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (tenant_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                         status = excluded.status, headers = excluded.headers, body = excluded.body,
                         created_at = excluded.created_at
                     WHERE api_idempotency.created_at < ?8",
                    rusqlite::params![
                        tenant,
                        key,
                        record.fingerprint.as_slice(),
                        i64::from(record.response.status),
                        headers,
                        record.response.body,
                        unix_micros(OffsetDateTime::now_utc()),
                        cutoff,
                    ],
                )
                .map_err(sqlite_error)?;
            sqlite_get(connection, &tenant, &key, cutoff)?
                .ok_or_else(|| ApiError::Internal("idempotency record vanished after insert".into()))
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64, ApiError> {
        let cutoff = self.cutoff();
        self.with(move |connection| {
            let mut purged = 0;
            loop {
                let deleted = connection
                    .execute(
                        "DELETE FROM api_idempotency WHERE (tenant_id, key) IN
                         (SELECT tenant_id, key FROM api_idempotency WHERE created_at < ?1 LIMIT ?2)",
                        [cutoff, PURGE_BATCH],
                    )
                    .map_err(sqlite_error)?;
                purged += deleted as u64;
                if (deleted as i64) < PURGE_BATCH {
                    return Ok(purged);
                }
            }
        })
        .await
    }
}

/// Records in the Postgres database of the log.
pub struct PostgresIdempotency {
    pool: deadpool_postgres::Pool,
    /// The retention in seconds, as the queries take it (the database's clock decides what has expired).
    retention_secs: f64,
}

impl PostgresIdempotency {
    /// Uses `pool` (connections to the log's database); records are kept for `retention`.
    pub fn new(pool: deadpool_postgres::Pool, retention: Duration) -> Self {
        Self { pool, retention_secs: retention.as_secs_f64() }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, ApiError> {
        self.pool.get().await.map_err(|error| ApiError::Unavailable(format!("Postgres: {error}")))
    }
}

fn postgres_error(error: tokio_postgres::Error) -> ApiError {
    ApiError::Internal(format!("idempotency record: {}", dossier_events::postgres::connect::cause(&error)))
}

async fn postgres_get(
    client: &tokio_postgres::Client,
    tenant: &str,
    key: &str,
    retention_secs: f64,
) -> Result<Option<Record>, ApiError> {
    let row = client
        .query_opt(
            "SELECT fingerprint, status, headers, body, created_at FROM api_idempotency
             WHERE tenant_id = $1 AND key = $2 AND created_at >= now() - $3::float8 * interval '1 second'",
            &[&tenant, &key, &retention_secs],
        )
        .await
        .map_err(postgres_error)?;
    row.map(|row| decode(row.get::<_, &[u8]>(0), i64::from(row.get::<_, i32>(1)), row.get(2), row.get(3), row.get(4)))
        .transpose()
}

#[async_trait]
impl IdempotencyStore for PostgresIdempotency {
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Record>, ApiError> {
        let client = self.client().await?;
        postgres_get(&client, tenant, key, self.retention_secs).await
    }

    async fn put(&self, tenant: &str, key: &str, record: Record) -> Result<Record, ApiError> {
        let client = self.client().await?;
        let headers = encode_headers(&record.response.headers)?;
        client
            .execute(
                // An expired record not purged yet is replaced: its key counts as new.
                "INSERT INTO api_idempotency (tenant_id, key, fingerprint, status, headers, body)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                     status = excluded.status, headers = excluded.headers, body = excluded.body,
                     created_at = excluded.created_at
                 WHERE api_idempotency.created_at < now() - $7::float8 * interval '1 second'",
                &[
                    &tenant,
                    &key,
                    &record.fingerprint.as_slice(),
                    &i32::from(record.response.status),
                    &headers,
                    &record.response.body,
                    &self.retention_secs,
                ],
            )
            .await
            .map_err(postgres_error)?;
        postgres_get(&client, tenant, key, self.retention_secs)
            .await?
            .ok_or_else(|| ApiError::Internal("idempotency record vanished after insert".into()))
    }

    async fn purge_expired(&self) -> Result<u64, ApiError> {
        let client = self.client().await?;
        let mut purged = 0;
        loop {
            let deleted = client
                .execute(
                    "DELETE FROM api_idempotency WHERE (tenant_id, key) IN
                     (SELECT tenant_id, key FROM api_idempotency
                      WHERE created_at < now() - $1::float8 * interval '1 second' LIMIT $2)",
                    &[&self.retention_secs, &PURGE_BATCH],
                )
                .await
                .map_err(postgres_error)?;
            purged += deleted;
            if (deleted as i64) < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(ago: Duration) -> Record {
        let response = StoredResponse { status: 202, headers: Vec::new(), body: Vec::new() };
        Record { fingerprint: [0; 32], response, recorded_at: OffsetDateTime::now_utc() - ago }
    }

    #[test]
    fn opening_the_records_of_a_directory_without_a_migrated_database_fails_and_creates_nothing() {
        let dir = std::env::temp_dir().join(format!("dossier-idempotency-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = SqliteIdempotency::open(&dir, Duration::from_secs(60)).err().expect("no database: an error");
        assert!(missing.contains(dossier_events::sqlite::DATABASE_FILE), "{missing}");
        assert!(!dir.join(dossier_events::sqlite::DATABASE_FILE).exists(), "nothing created");
        rusqlite::Connection::open(dir.join(dossier_events::sqlite::DATABASE_FILE)).expect("an empty database");
        let unmigrated = SqliteIdempotency::open(&dir, Duration::from_secs(60)).err().expect("no table: an error");
        assert!(unmigrated.contains("no idempotency table"), "{unmigrated}");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn remaining_within_retention_is_what_is_left_and_past_it_is_zero() {
        let day = Duration::from_secs(24 * 3_600);
        let left = recorded(Duration::from_secs(23 * 3_600)).remaining(day);
        assert!(left > Duration::from_secs(3_590) && left <= Duration::from_secs(3_600), "{left:?}");
        assert_eq!(recorded(Duration::from_secs(25 * 3_600)).remaining(day), Duration::ZERO);
    }
}
