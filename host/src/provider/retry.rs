//! How long to wait before sending a request again, and when to stop.
//!
//! Intuit documents no `Retry-After` on its 429s and says to wait 60 seconds;
//! the component passes that advice (`throttle-wait-secs`). Throttling can
//! last longer than a few seconds (the quota is shared with everything the app
//! does for the company), so retries stop on a time budget per request, not on
//! a count.

use crate::schedule::doubling;
use std::time::Duration;

/// How retries wait. Configurable per host so tests stay fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff after a 5xx or a failed connection; doubles each time.
    pub base: Duration,
    /// Longest single wait, `Retry-After` and throttle advice included.
    pub max_wait: Duration,
    /// Time a request may take with all its retries and waits.
    pub budget: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(250),
            max_wait: Duration::from_secs(120),
            budget: Duration::from_secs(600),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the last attempt got, as far as waiting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// 429; `Retry-After` if given.
    Throttled { retry_after: Option<Duration> },
    /// 5xx; `Retry-After` if given.
    ServerError { retry_after: Option<Duration> },
    /// Timeout or failed connection.
    Failed,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`. `throttled_in_a_row` counts the
    /// 429s without `Retry-After` so far (this one included); `jitter` is in
    /// 0.5..=1.0 and spreads out backoffs of many connections.
    pub fn wait(
        &self,
        last: Retryable,
        attempt: u32,
        throttled_in_a_row: u32,
        advice: Duration,
        jitter: f64,
    ) -> Duration {
        let backoff = || doubling(self.base, attempt, Duration::MAX).mul_f64(jitter);
        let wait = match last {
            Retryable::Throttled { retry_after: Some(after) } | Retryable::ServerError { retry_after: Some(after) } => {
                after
            }
            Retryable::Throttled { retry_after: None } if !advice.is_zero() => {
                doubling(advice, throttled_in_a_row, Duration::MAX)
            }
            _ => backoff(),
        };
        wait.min(self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_429_without_retry_after_waits_as_advised_then_backs_off_to_the_cap() {
        let policy = RetryPolicy::default();
        let throttled = Retryable::Throttled { retry_after: None };
        assert_eq!(policy.wait(throttled, 1, 1, MINUTE, 1.0), MINUTE);
        assert_eq!(policy.wait(throttled, 2, 2, MINUTE, 1.0), 2 * MINUTE);
        assert_eq!(policy.wait(throttled, 3, 3, MINUTE, 1.0), policy.max_wait);
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let policy = RetryPolicy { max_wait: Duration::from_secs(5), ..Default::default() };
        let after = |s| Retryable::Throttled { retry_after: Some(Duration::from_secs(s)) };
        assert_eq!(policy.wait(after(2), 1, 0, MINUTE, 1.0), Duration::from_secs(2));
        assert_eq!(policy.wait(after(90), 1, 0, MINUTE, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.wait(Retryable::Failed, 1, 0, MINUTE, 1.0), Duration::from_millis(250));
        assert_eq!(policy.wait(Retryable::Failed, 3, 0, MINUTE, 1.0), Duration::from_secs(1));
        assert_eq!(policy.wait(Retryable::Failed, 3, 0, MINUTE, 0.5), Duration::from_millis(500));
        assert_eq!(policy.wait(Retryable::Failed, 40, 0, MINUTE, 1.0), policy.max_wait);
        // Without advice, a 429 backs off like any failure.
        assert_eq!(policy.wait(Retryable::Throttled { retry_after: None }, 1, 1, Duration::ZERO, 1.0), policy.base);
    }
}
