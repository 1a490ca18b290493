//! When and how often a failed node is tried again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{NodeError, NodeErrorKind};

type RetryPredicate = Arc<dyn Fn(&NodeError) -> bool + Send + Sync>;

/// Retries a failing node with exponential backoff and jitter.
///
/// By default every error retries except permanent ones and panics; timeouts retry.
///
/// ```
/// use std::time::Duration;
/// use dashflow_graph::RetryPolicy;
///
/// let policy = RetryPolicy::new(4)
///     .backoff(Duration::from_millis(100), 2.0, Duration::from_secs(5))
///     .retry_on(|error| !error.is_timeout());
/// assert_eq!(policy.max_attempts(), 4);
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_interval: Duration,
    backoff_factor: f64,
    max_interval: Duration,
    jitter: bool,
    retry_on: RetryPredicate,
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts in all (the first included), waiting 0.5 s, then twice as
    /// long each time (at most 128 s), each wait randomised by up to ±50%.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_interval: Duration::from_millis(500),
            backoff_factor: 2.0,
            max_interval: Duration::from_secs(128),
            jitter: true,
            retry_on: Arc::new(default_retry_on),
        }
    }

    /// Sets the first wait, the factor applied per attempt, and the longest wait.
    pub fn backoff(mut self, initial: Duration, factor: f64, max: Duration) -> Self {
        self.initial_interval = initial;
        self.backoff_factor = if factor.is_finite() { factor.max(1.0) } else { 1.0 };
        self.max_interval = max;
        self
    }

    /// Waits exactly the backoff interval, without randomisation.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// Retries only the errors for which `predicate` returns true.
    pub fn retry_on(mut self, predicate: impl Fn(&NodeError) -> bool + Send + Sync + 'static) -> Self {
        self.retry_on = Arc::new(predicate);
        self
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a task that failed with `error` on attempt `attempt` (1-based) runs again.
    /// An interrupt is a pause, not a failure: it is never retried, whatever the predicate.
    pub fn should_retry(&self, attempt: u32, error: &NodeError) -> bool {
        attempt < self.max_attempts && error.kind() != NodeErrorKind::Interrupted && (self.retry_on)(error)
    }

    /// The wait before attempt `attempt + 1`; `unit` in `[0, 1)` randomises it when jitter is
    /// on (the executor passes a random number; tests pass a fixed one).
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_interval.as_secs_f64() * self.backoff_factor.powi(exponent);
        let capped = base.min(self.max_interval.as_secs_f64());
        let factor = if self.jitter { 0.5 + unit.clamp(0.0, 1.0) } else { 1.0 };
        Duration::try_from_secs_f64(capped * factor).unwrap_or(self.max_interval)
    }
}

impl Default for RetryPolicy {
    /// Three attempts with the default backoff.
    fn default() -> Self {
        Self::new(3)
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_interval", &self.initial_interval)
            .field("backoff_factor", &self.backoff_factor)
            .field("max_interval", &self.max_interval)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

fn default_retry_on(error: &NodeError) -> bool {
    !matches!(error.kind(), NodeErrorKind::Permanent | NodeErrorKind::Panicked | NodeErrorKind::Interrupted)
}
