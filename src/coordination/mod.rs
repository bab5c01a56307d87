//! Coordination between dossier instances that share one log: per-subject rate limits, the idempotency response
//! cache, projection leases and the fan-out of live events, in Redis when `REDIS_URL` is set and in-process
//! otherwise.
//!
//! Each concern is a small trait with an in-process implementation (one instance) and a Redis one (several):
//! [`RateLimiter`](crate::api::rate_limit::RateLimiter), [`IdempotencyStore`](crate::api::idempotency::IdempotencyStore)
//! (Redis caches in front of the durable record, which stays the source of truth) and [`lease::LeaseStore`]. The
//! live fan-out ([`fanout`]) needs nothing in process: the store's own head watch already wakes its followers.

pub mod fanout;
pub mod lease;
pub mod redis;

use std::sync::Arc;

use dossier_events::EventStore;

use crate::api::idempotency::IdempotencyStore;
use crate::api::rate_limit::{InProcessRateLimiter, RateLimiter};
use crate::error::AppError;
use crate::settings::Settings;
use fanout::FanOut;
use lease::{InProcessLeases, LeaseStore};

/// The coordination services of one instance.
pub struct Coordination {
    /// Per-subject request allowance.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Recorded command responses (cached when Redis is configured).
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Who runs each projection.
    pub leases: Arc<dyn LeaseStore>,
    /// Announces commits to the other instances and hears theirs (with Redis).
    pub fanout: Option<FanOut>,
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
                let retention = settings.idempotency_retention();
                Ok(Self {
                    rate_limiter: Arc::new(redis::RedisRateLimiter::new(redis.clone(), settings.rate_limit_per_minute)),
                    idempotency: Arc::new(redis::CachedIdempotency::new(redis.clone(), durable, retention)),
                    leases: Arc::new(redis::RedisLeases::new(redis.clone())),
                    fanout: Some(FanOut::new(redis)),
                })
            }
            None => Ok(Self {
                rate_limiter: Arc::new(InProcessRateLimiter::new(settings.rate_limit_per_minute)),
                idempotency: durable,
                leases: Arc::new(InProcessLeases),
                fanout: None,
            }),
        }
    }

    /// `store` as this instance's parts must use it: with Redis, its commits are announced to the other instances.
    pub fn announcing(&self, store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
        match &self.fanout {
            Some(fanout) => fanout.announcing(store),
            None => store,
        }
    }
}
