//! Restart policy for supervisors (ractor has none built in): restart a failed child after an exponential
//! backoff, at most `max_restarts` times within a sliding `window`; past that budget the failure escalates.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a supervisor treats a failing child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`.
    pub max_restarts: usize,
    /// The sliding window the budget counts over.
    pub window: Duration,
    /// Delay before the first restart; doubled for each further restart inside the window.
    pub base_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What to do about one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Restart after this delay.
    Restart(Duration),
    /// The budget is spent: give up on the child and report the failure upwards.
    Escalate,
}

/// The failures of one child within the current window.
#[derive(Clone, Debug, Default)]
pub struct RestartBudget {
    failures: VecDeque<Instant>,
}

impl RestartBudget {
    /// Records a failure at `now` and decides.
    pub fn on_failure(&mut self, policy: &RestartPolicy, now: Instant) -> Decision {
        while self.failures.front().is_some_and(|&at| now.duration_since(at) > policy.window) {
            self.failures.pop_front();
        }
        if self.failures.len() >= policy.max_restarts {
            return Decision::Escalate;
        }
        let exponent = self.failures.len().min(16) as u32;
        self.failures.push_back(now);
        Decision::Restart(policy.base_backoff.saturating_mul(1 << exponent).min(policy.max_backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_failure_backs_off_exponentially_then_escalates_past_budget() {
        let policy = RestartPolicy { max_restarts: 3, ..RestartPolicy::default() };
        let mut budget = RestartBudget::default();
        let now = Instant::now();
        assert_eq!(budget.on_failure(&policy, now), Decision::Restart(Duration::from_millis(100)));
        assert_eq!(budget.on_failure(&policy, now), Decision::Restart(Duration::from_millis(200)));
        assert_eq!(budget.on_failure(&policy, now), Decision::Restart(Duration::from_millis(400)));
        assert_eq!(budget.on_failure(&policy, now), Decision::Escalate);
    }

    #[test]
    fn on_failure_after_window_passes_restores_budget() {
        let policy = RestartPolicy { max_restarts: 1, window: Duration::from_secs(10), ..RestartPolicy::default() };
        let mut budget = RestartBudget::default();
        let start = Instant::now();
        assert!(matches!(budget.on_failure(&policy, start), Decision::Restart(_)));
        assert_eq!(budget.on_failure(&policy, start + Duration::from_secs(5)), Decision::Escalate);
        assert!(matches!(budget.on_failure(&policy, start + Duration::from_secs(11)), Decision::Restart(_)));
    }
}
