//! Per-subject rate limiting: each (tenant, subject) may send `per_minute` requests a minute, in bursts of up to
//! that many, refilled continuously (a token bucket). Over the limit: 429 with `Retry-After`.
//!
//! The in-process limiter counts per instance; a shared one (Redis) implements the same [`RateLimiter`] trait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use crate::api::error::ApiError;

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// Decides whether a subject may send another request.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request from the subject's allowance, or fails with 429.
    async fn check(&self, tenant: &str, subject: &str) -> Result<(), ApiError>;
}

/// Token buckets in this process's memory.
pub struct InProcessRateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl InProcessRateLimiter {
    /// A limiter of `per_minute` requests a minute per subject; 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, buckets: Mutex::new(HashMap::new()) }
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn check(&self, tenant: &str, subject: &str) -> Result<(), ApiError> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(|_| ApiError::Internal("rate limiter lock poisoned".into()))?;
        if buckets.len() >= MAX_BUCKETS {
            // A full bucket is the same as no bucket: drop those that have refilled.
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * per_second < capacity);
        }
        let (tokens, at) = buckets.entry((tenant.to_owned(), subject.to_owned())).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let retry_after_secs = ((1.0 - *tokens) / per_second).ceil().max(1.0) as u64;
            Err(ApiError::TooManyRequests { retry_after_secs })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_over_the_limit_returns_too_many_requests_per_subject() {
        let limiter = InProcessRateLimiter::new(2);
        assert!(limiter.check("t", "alice").await.is_ok());
        assert!(limiter.check("t", "alice").await.is_ok());
        let refused = limiter.check("t", "alice").await;
        assert!(matches!(refused, Err(ApiError::TooManyRequests { retry_after_secs }) if retry_after_secs >= 1));
        assert!(limiter.check("t", "bob").await.is_ok(), "another subject has its own allowance");
    }
}
