//! The Redis implementations: a token-bucket rate limiter (one Lua script, Redis's clock), a read-through cache of
//! recorded command responses, and leases (`SET NX PX`, renewed and released only by their holder).
//!
//! Keys, under the namespace (`REDIS_NAMESPACE`, default `dossier`): `<ns>:rate:<sha256(tenant, subject)>`,
//! `<ns>:idem:<sha256(tenant, key)>`, `<ns>:lease:<name>`; and the channel `<ns>:log` ([`super::fanout`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::api::idempotency::{IdempotencyStore, Record, StoredResponse};
use crate::api::rate_limit::RateLimiter;
use crate::coordination::lease::LeaseStore;

/// Takes one token from a bucket; returns 0 when granted, else the milliseconds until a token is due.
const TOKEN_BUCKET: &str = r"
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / per_ms)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return wait
";

/// Extends a lease if the caller still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes a lease if the caller still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A connection to Redis, shared by the services (it reconnects by itself).
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    connection: ConnectionManager,
    namespace: Arc<str>,
}

impl Redis {
    /// Connects to `url`; fails with one line (without the password) when Redis does not answer.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, String> {
        // The parser's message may quote the URL, password included: say what is expected instead.
        let client = redis::Client::open(url)
            .map_err(|_| "invalid REDIS_URL: expected redis://[:password@]host[:port][/db]".to_owned())?;
        let address = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let connection =
            tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager_with_config(config))
                .await
                .map_err(|_| format!("cannot connect to Redis at {address}: no answer within 5 s"))?
                .map_err(|error| format!("cannot connect to Redis at {address}: {error}"))?;
        Ok(Self { client, connection, namespace: Arc::from(namespace) })
    }

    /// The shared connection (for commands).
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The client, for connections of their own (a pub/sub subscription holds its connection).
    pub(crate) fn client(&self) -> redis::Client {
        self.client.clone()
    }

    /// The prefix of this deployment's keys and channels.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `<namespace>:<kind>:<sha256 of the parts>`.
    fn hashed_key(&self, kind: &str, parts: &[&str]) -> String {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        format!("{}:{kind}:{}", self.namespace, hex::encode(hasher.finalize()))
    }
}

/// Token buckets in Redis, shared by every instance.
pub struct RedisRateLimiter {
    redis: Redis,
    per_minute: u32,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// `per_minute` requests a minute per subject; 0 means no limit.
    pub fn new(redis: Redis, per_minute: u32) -> Self {
        Self { redis, per_minute, script: redis::Script::new(TOKEN_BUCKET) }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, tenant: &str, subject: &str) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let key = self.redis.hashed_key("rate", &[tenant, subject]);
        let per_ms = f64::from(self.per_minute) / 60_000.0;
        let waited: redis::RedisResult<u64> =
            self.script.key(key).arg(self.per_minute).arg(per_ms).invoke_async(&mut self.redis.connection()).await;
        match waited {
            Ok(0) => Ok(()),
            Ok(wait_ms) => Err(ApiError::TooManyRequests { retry_after_secs: wait_ms.div_ceil(1_000) }),
            // Fail open: an unreachable Redis (reported by /health) must not take the whole API down with it.
            Err(error) => {
                tracing::warn!(error = %error, "rate_limit_unavailable");
                Ok(())
            }
        }
    }
}

/// A record as cached.
#[derive(Serialize, Deserialize)]
struct CachedRecord {
    fingerprint: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Microseconds since the Unix epoch (an entry cached before this field existed no longer reads: a miss).
    recorded_at: i64,
}

impl CachedRecord {
    fn from_record(record: &Record) -> Self {
        Self {
            fingerprint: hex::encode(record.fingerprint),
            status: record.response.status,
            headers: record.response.headers.clone(),
            body: STANDARD.encode(&record.response.body),
            recorded_at: i64::try_from(record.recorded_at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX),
        }
    }

    fn into_record(self) -> Option<Record> {
        Some(Record {
            fingerprint: hex::decode(self.fingerprint).ok()?.try_into().ok()?,
            response: StoredResponse {
                status: self.status,
                headers: self.headers,
                body: STANDARD.decode(self.body).ok()?,
            },
            recorded_at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.recorded_at) * 1_000).ok()?,
        })
    }
}

/// Recorded command responses read through a Redis cache; the database record stays the source of truth (a
/// cache that is down or evicted only costs a database read). An entry expires when its record does.
pub struct CachedIdempotency {
    redis: Redis,
    durable: Arc<dyn IdempotencyStore>,
    retention: Duration,
}

impl CachedIdempotency {
    /// A cache in front of `durable`, whose records are kept for `retention`.
    pub fn new(redis: Redis, durable: Arc<dyn IdempotencyStore>, retention: Duration) -> Self {
        Self { redis, durable, retention }
    }

    async fn cache(&self, key: &str, record: &Record) {
        // A record read back late in its life is cached only for the rest of it.
        let remaining_ms = record.remaining(self.retention).as_millis() as u64;
        if remaining_ms == 0 {
            return;
        }
        let Ok(json) = serde_json::to_string(&CachedRecord::from_record(record)) else { return };
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(json)
            .arg("PX")
            .arg(remaining_ms)
            .query_async(&mut self.redis.connection())
            .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, "idempotency_cache_write_failed");
        }
    }
}

#[async_trait]
impl IdempotencyStore for CachedIdempotency {
    async fn get(&self, tenant: &str, key: &str) -> Result<Option<Record>, ApiError> {
        let cache_key = self.redis.hashed_key("idem", &[tenant, key]);
        let cached: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(&cache_key).query_async(&mut self.redis.connection()).await;
        match cached {
            Ok(Some(json)) => {
                let cached = serde_json::from_str::<CachedRecord>(&json).ok().and_then(CachedRecord::into_record);
                // Expired (the retention was shortened since it was cached): the database decides.
                if let Some(record) = cached.filter(|record| record.remaining(self.retention) > Duration::ZERO) {
                    return Ok(Some(record));
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(error = %error, "idempotency_cache_read_failed"),
        }
        let record = self.durable.get(tenant, key).await?;
        if let Some(record) = &record {
            self.cache(&cache_key, record).await;
        }
        Ok(record)
    }

    async fn put(&self, tenant: &str, key: &str, record: Record) -> Result<Record, ApiError> {
        let stored = self.durable.put(tenant, key, record).await?;
        self.cache(&self.redis.hashed_key("idem", &[tenant, key]), &stored).await;
        Ok(stored)
    }

    async fn purge_expired(&self) -> Result<u64, ApiError> {
        // Cached entries expire by themselves.
        self.durable.purge_expired().await
    }
}

/// Leases in Redis: a key holding the holder's id with a time to live.
pub struct RedisLeases {
    redis: Redis,
    renew: redis::Script,
    release: redis::Script,
}

impl RedisLeases {
    /// Leases in `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis, renew: redis::Script::new(RENEW), release: redis::Script::new(RELEASE) }
    }
}

impl RedisLeases {
    fn key(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.redis.namespace)
    }
}

#[async_trait]
impl LeaseStore for RedisLeases {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(name))
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.redis.connection())
            .await
            .map_err(|error| error.to_string())?;
        Ok(set.is_some())
    }

    async fn renew(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, String> {
        let renewed: i64 = self
            .renew
            .key(self.key(name))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(|error| error.to_string())?;
        Ok(renewed == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), String> {
        let _: i64 = self
            .release
            .key(self.key(name))
            .arg(holder)
            .invoke_async(&mut self.redis.connection())
            .await
            .map_err(|error| error.to_string())?;
        Ok(())
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, String> {
        redis::cmd("GET").arg(self.key(name)).query_async(&mut self.redis.connection()).await.map_err(|e| e.to_string())
    }
}
