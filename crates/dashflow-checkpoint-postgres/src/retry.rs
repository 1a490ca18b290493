//! Bounded retries of operations that failed transiently.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Retry};

/// How often and how patiently an operation is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Tries in all, the first included (at least 1).
    pub(crate) attempts: u32,
    /// The pause before the first retry; it doubles with each further retry.
    pub(crate) base_delay: Duration,
    /// The longest pause.
    pub(crate) max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Five tries over about half a second ride out a killed connection, a deadlock or a
        // serialization failure. A retry after a lost connection waits in the pool for the
        // server, so a restart shorter than the pool's acquire timeout is ridden out too;
        // longer outages reach the caller as a retryable error, for the run's own retry
        // policy to handle.
        Self { attempts: 5, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(500) }
    }
}

/// Whether running an operation twice is the same as running it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotence {
    /// Safe to run again even when an earlier try may have committed.
    Idempotent,
    /// Run again only when the earlier try certainly did not commit.
    Once,
}

impl RetryPolicy {
    /// Runs `attempt` (given the try number, from 1) until it succeeds, fails for good, or the
    /// tries run out; the last error is returned.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        idempotence: Idempotence,
        attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.run_after(None, operation, idempotence, attempt).await
    }

    /// As [`RetryPolicy::run`], when the operation's first try was made elsewhere and failed
    /// with `first` (when `Some`): the next try is number 2, if the policy allows one.
    pub(crate) async fn run_after<T, F, Fut>(
        &self,
        mut first: Option<Error>,
        operation: &'static str,
        idempotence: Idempotence,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut number = 1;
        loop {
            let error = match first.take() {
                Some(error) => error,
                None => match attempt(number).await {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                },
            };
            let again = match error.retry() {
                Retry::No => false,
                Retry::RolledBack => true,
                Retry::InDoubt => idempotence == Idempotence::Idempotent,
                // Retrying a pool timeout would multiply the pool's acquire timeout by the
                // number of tries: a server down for longer than that is the caller's call.
                Retry::Later => false,
            };
            if !again || number >= self.attempts {
                return Err(error);
            }
            let delay = self.delay(number);
            tracing::debug!(operation, attempt = number, ?delay, error = %error, "retrying a checkpoint operation");
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }

    /// The pause after try `number`: exponential, capped, with jitter so that writers that
    /// failed together do not retry in lockstep.
    fn delay(&self, number: u32) -> Duration {
        let doubled = self.base_delay.saturating_mul(1u32 << number.saturating_sub(1).min(16));
        let capped = doubled.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests;
