//! How long to wait between attempts: pure functions, so the pipeline's retry loop (which records every attempt
//! as an event) stays deterministic under test. The embedder itself never retries.

use std::time::Duration;

use super::EmbedError;

/// The delay before the attempt after `attempt` (1-based: `1` means the first attempt just failed).
///
/// Exponential with *equal jitter*: the un-jittered delay is `base · 2^(attempt-1)` (capped at `max`), and the
/// result lies in `[half, full)` of it, `jitter` in `[0, 1)` choosing where. Equal rather than full jitter so a
/// retry is never immediate, while concurrent documents still spread out. A server's `Retry-After` is honoured:
/// the delay is never shorter than it. Everything is capped at `max`, including a `Retry-After` longer than `max`
/// (a misbehaving server cannot park the pipeline for a day; that attempt then simply fails again, visibly).
///
/// `attempt` 0 is treated as 1; a `jitter` outside `[0, 1)` (or NaN) is clamped into it. Never panics.
pub fn backoff_delay(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = attempt.max(1) - 1;
    let full = base.saturating_mul(2_u32.saturating_pow(exponent)).min(max);
    let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0 - f64::EPSILON) };
    let half = full / 2;
    // Clamped into [half, full) exactly: float rounding in `mul_f64` must not reach `full`.
    let jittered = (half + (full - half).mul_f64(jitter)).min(full.saturating_sub(Duration::from_nanos(1))).max(half);
    jittered.max(retry_after.unwrap_or_default()).min(max)
}

/// A uniformly random jitter in `[0, 1)` for [`backoff_delay`].
pub fn random_jitter() -> f64 {
    rand::random::<f64>()
}

/// The house retry rule for embedding: 3 attempts in all, exponential backoff with jitter, `Retry-After` honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The un-jittered delay after the first failure.
    pub base: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, base: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// After attempt number `attempt` (1-based) failed with `error`: how long to wait before the next one, or
    /// `None` when there must be no next one (the failure is permanent, or the attempts are used up).
    pub fn next_delay(&self, attempt: u32, error: &EmbedError, jitter: f64) -> Option<Duration> {
        if !error.is_transient() || attempt >= self.max_attempts {
            return None;
        }
        Some(backoff_delay(attempt, self.base, self.max, error.retry_after(), jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn backoff_delay_without_jitter_doubles_each_attempt_from_half_the_base() {
        assert_eq!(backoff_delay(1, BASE, MAX, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(2, BASE, MAX, None, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, BASE, MAX, None, 0.0), Duration::from_millis(200));
    }

    #[test]
    fn backoff_delay_with_jitter_stays_between_half_and_full() {
        for attempt in 1..=5 {
            let full = BASE * 2_u32.pow(attempt - 1);
            for jitter in [0.0, 0.25, 0.5, 0.999_999] {
                let delay = backoff_delay(attempt, BASE, MAX, None, jitter);
                assert!(delay >= full / 2 && delay < full, "attempt {attempt} jitter {jitter}: {delay:?}");
            }
        }
        assert_eq!(backoff_delay(2, BASE, MAX, None, 0.5), Duration::from_millis(150));
    }

    #[test]
    fn backoff_delay_with_large_attempt_is_capped_at_max() {
        assert_eq!(backoff_delay(40, BASE, MAX, None, 0.5), Duration::from_millis(7500));
        assert!(backoff_delay(u32::MAX, BASE, MAX, None, 0.999_999) <= MAX);
    }

    #[test]
    fn backoff_delay_with_retry_after_is_never_shorter_than_it() {
        let retry_after = Some(Duration::from_secs(1));
        assert_eq!(backoff_delay(1, BASE, MAX, retry_after, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(1, BASE, MAX, retry_after, 0.999), Duration::from_secs(1));
        // A backoff already longer than Retry-After is kept.
        assert_eq!(backoff_delay(6, BASE, MAX, retry_after, 0.0), Duration::from_millis(1600));
    }

    #[test]
    fn backoff_delay_with_retry_after_beyond_max_is_capped_at_max() {
        assert_eq!(backoff_delay(1, BASE, MAX, Some(Duration::from_secs(86_400)), 0.3), MAX);
    }

    #[test]
    fn backoff_delay_with_out_of_range_inputs_does_not_panic() {
        assert_eq!(backoff_delay(0, BASE, MAX, None, 0.0), backoff_delay(1, BASE, MAX, None, 0.0));
        assert_eq!(backoff_delay(1, BASE, MAX, None, -3.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(1, BASE, MAX, None, f64::NAN), Duration::from_millis(50));
        assert!(backoff_delay(1, BASE, MAX, None, 7.0) < BASE);
        assert_eq!(backoff_delay(3, Duration::ZERO, MAX, None, 0.5), Duration::ZERO);
    }

    #[test]
    fn random_jitter_is_in_unit_interval() {
        for _ in 0..1000 {
            let jitter = random_jitter();
            assert!((0.0..1.0).contains(&jitter));
        }
    }

    #[test]
    fn next_delay_with_transient_error_allows_three_attempts_in_all() {
        let policy = RetryPolicy::default();
        let error = EmbedError::transient("HTTP 503");
        assert_eq!(policy.next_delay(1, &error, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(policy.next_delay(2, &error, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(policy.next_delay(3, &error, 0.0), None);
    }

    #[test]
    fn next_delay_with_permanent_error_returns_none() {
        assert_eq!(RetryPolicy::default().next_delay(1, &EmbedError::permanent("HTTP 401"), 0.0), None);
    }

    #[test]
    fn next_delay_with_retry_after_honours_it() {
        let error = EmbedError::Transient { reason: "HTTP 429".into(), retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(RetryPolicy::default().next_delay(1, &error, 0.9), Some(Duration::from_secs(2)));
    }
}
