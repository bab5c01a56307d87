//! Coordination between dossier instances that share one log: per-subject rate limits, the idempotency response
//! cache, and projection leases, in Redis when `REDIS_URL` is set and in-process otherwise.
//!
//! Each concern is a small trait with an in-process implementation (one instance) and a Redis one (several):
//! [`RateLimiter`](crate::api::rate_limit::RateLimiter), [`IdempotencyStore`](crate::api::idempotency::IdempotencyStore)
//! (Redis caches in front of the durable record, which stays the source of truth) and [`lease::LeaseStore`].

pub mod lease;
pub mod redis;

use std::sync::Arc;

use crate::api::idempotency::IdempotencyStore;
use crate::api::rate_limit::{InProcessRateLimiter, RateLimiter};
use crate::error::AppError;
use crate::settings::Settings;
use lease::{InProcessLeases, LeaseStore};

/// The coordination services of one instance.
pub struct Coordination {
    /// Per-subject request allowance.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Recorded command responses (cached when Redis is configured).
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Who runs each projection.
    pub leases: Arc<dyn LeaseStore>,
}

impl Coordination {
    /// Redis-backed services when `REDIS_URL` is set, in-process ones otherwise; `durable` is the database record
    /// of command responses.
    pub async fn connect(settings: &Settings, durable: Arc<dyn IdempotencyStore>) -> Result<Self, AppError> {
        match &settings.redis_url {
            Some(url) => {
                use secrecy::ExposeSecret;
                let redis = redis::Redis::connect(url.expose_secret(), &settings.redis_namespace)
                    .await
                    .map_err(AppError::Usage)?;
                Ok(Self {
                    rate_limiter: Arc::new(redis::RedisRateLimiter::new(redis.clone(), settings.rate_limit_per_minute)),
                    idempotency: Arc::new(redis::CachedIdempotency::new(redis.clone(), durable)),
                    leases: Arc::new(redis::RedisLeases::new(redis)),
                })
            }
            None => Ok(Self {
                rate_limiter: Arc::new(InProcessRateLimiter::new(settings.rate_limit_per_minute)),
                idempotency: durable,
                leases: Arc::new(InProcessLeases),
            }),
        }
    }
}
