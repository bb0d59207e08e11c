//! Keeping under a provider's quota for one connection: at most N requests a
//! minute (in general, per window) and M in flight, shared by everything the
//! host does for the connection in this process (one connection runs in one
//! process at a time).
//!
//! The rate is a GCRA (governor) with a burst of a tenth of the quota and a
//! steady rate of the rest, so that no window ever holds more than the quota:
//! burst + steady × window = quota.

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A provider's quota per connection; zero means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Requests allowed in any `window`.
    pub requests: u32,
    pub window: Duration,
    /// Requests in flight at once.
    pub max_concurrent: u32,
}

impl Quota {
    /// `requests` a minute and `max_concurrent` at once (0: no limit).
    pub fn per_minute(requests: u32, max_concurrent: u32) -> Self {
        Quota { requests, window: Duration::from_secs(60), max_concurrent }
    }
}

/// The GCRA quota that keeps every window under `quota`; `None` for no limit.
fn rate_limit(quota: Quota) -> Option<governor::Quota> {
    NonZeroU32::new(quota.requests).filter(|_| !quota.window.is_zero()).map(|requests| {
        let burst = (requests.get() / 10).max(1);
        let steady = requests.get().saturating_sub(burst).max(1);
        let period = quota.window / steady;
        governor::Quota::with_period(period)
            .expect("a positive period")
            .allow_burst(NonZeroU32::new(burst).expect("burst >= 1"))
    })
}

/// The pacing of one connection.
#[derive(Debug)]
pub struct Pacer {
    quota: Quota,
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: Mutex<u32>,
    freed: Condvar,
}

/// A request slot; dropping it frees the slot.
pub struct Permit<'a> {
    pacer: &'a Pacer,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.pacer.quota.max_concurrent > 0 {
            *self.pacer.in_flight.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            self.pacer.freed.notify_one();
        }
    }
}

impl Pacer {
    pub fn new(quota: Quota) -> Self {
        let rate = rate_limit(quota).map(RateLimiter::direct);
        Pacer { quota, rate, in_flight: Mutex::new(0), freed: Condvar::new() }
    }

    /// Waits (blocking) until a request may be sent. Returns the permit and
    /// how long it waited.
    pub fn acquire(&self) -> (Permit<'_>, Duration) {
        let started = std::time::Instant::now();
        if self.quota.max_concurrent > 0 {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            while *in_flight >= self.quota.max_concurrent {
                in_flight = self.freed.wait(in_flight).unwrap_or_else(|p| p.into_inner());
            }
            *in_flight += 1;
        }
        if let Some(rate) = &self.rate {
            // The limiter's own clock: making one (quanta's) costs CPU
            // identification and calibration on every request.
            while let Err(not_until) = rate.check() {
                std::thread::sleep(not_until.wait_time_from(rate.clock().now()));
            }
        }
        (Permit { pacer: self }, started.elapsed())
    }

    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// The pacers of a host's connections, by connection id.
#[derive(Default, Clone)]
pub struct Pacers {
    by_connection: Arc<Mutex<HashMap<String, Arc<Pacer>>>>,
}

impl Pacers {
    /// The connection's pacer, made anew if its quota changed.
    pub fn get(&self, connection: &str, quota: Quota) -> Arc<Pacer> {
        let mut map = self.by_connection.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(connection) {
            Some(pacer) if pacer.quota() == quota => pacer.clone(),
            _ => {
                let pacer = Arc::new(Pacer::new(quota));
                map.insert(connection.to_owned(), pacer.clone());
                pacer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_window_holds_more_than_the_quota() {
        // 120 a minute: a burst of 12 at once, then one every 60 s / 108; on
        // a clock the test moves, so the figures are exact.
        use governor::clock::FakeRelativeClock;
        let clock = FakeRelativeClock::default();
        let rate = RateLimiter::direct_with_clock(rate_limit(Quota::per_minute(120, 0)).unwrap(), clock.clone());
        for n in 0..12 {
            assert!(rate.check().is_ok(), "request {n} of the burst");
        }
        let period = Duration::from_secs(60) / 108;
        assert_eq!(rate.check().unwrap_err().wait_time_from(clock.now()), period);
        clock.advance(period - Duration::from_nanos(1));
        assert!(rate.check().is_err(), "not a moment early");
        clock.advance(Duration::from_nanos(1));
        assert!(rate.check().is_ok());

        // Three minutes of a client asking every 10 ms: no 60 s window
        // (sliding by 10 ms) lets more than 120 through.
        let mut sent = Vec::new();
        for tick in 0..18_000u64 {
            if rate.check().is_ok() {
                sent.push(tick);
            }
            clock.advance(Duration::from_millis(10));
        }
        let most = sent.iter().map(|start| sent.iter().filter(|t| (*start..start + 6000).contains(t)).count()).max();
        assert!(most.is_some_and(|most| most <= 120), "{most:?}");
        // One every 60 s / 108 for 180 s is 324; asking only every 10 ms
        // loses a little of each interval.
        assert!((320..=324).contains(&sent.len()), "the steady rate is kept: {}", sent.len());
    }

    #[test]
    fn no_quota_means_no_rate_limit() {
        assert!(Pacer::new(Quota::default()).rate.is_none());
    }

    #[test]
    fn concurrency_is_capped() {
        let pacer = Arc::new(Pacer::new(Quota::per_minute(0, 1)));
        let (permit, _) = pacer.acquire();
        let other = pacer.clone();
        let waiter = std::thread::spawn(move || drop(other.acquire()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "the second request waits while the first is in flight");
        drop(permit);
        waiter.join().unwrap();
    }
}
