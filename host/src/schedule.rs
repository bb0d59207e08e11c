//! When a stored connection runs, as plain functions of its state and the
//! time (docs/connections.md, "Scheduling"): whether it is due and why, the
//! interval in force, the next run after a success, a failure or a change of
//! interval, and the doubling backoff every retrying part of the host uses.
//! The runner, the scheduler, the API and the stores all ask here, so the
//! rule is written once; it depends on no other layer.

use std::time::Duration;

/// A connection runs this often when neither it nor its component says.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest a failing connection waits between tries.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(3600);

/// The interval in force: the connection's own, else the component's
/// declared frequency, else [`DEFAULT_INTERVAL`].
pub fn interval_in_force(own: Option<Duration>, component: Option<Duration>) -> Duration {
    own.or(component).unwrap_or(DEFAULT_INTERVAL)
}

/// What of a connection decides whether it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    pub paused: bool,
    /// Its credentials were refused for good: it waits to be authorised again.
    pub needs_reauth: bool,
    /// Its last run failed: it waits out its backoff, notifications or not.
    pub failing: bool,
    /// No time: as soon as possible (new, or asked for through the API).
    pub next_run_at_us: Option<i64>,
    /// The provider's newest notification not yet read by a run.
    pub notified_at_us: Option<i64>,
}

/// Why a connection is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Its time came (or it has none).
    Scheduled,
    /// Only because the provider said something changed, and has been quiet
    /// for the quiet period since: a burst of notifications makes one run.
    Notified,
}

/// Whether the connection is due at `now_us`, and why; `None` when it is not.
pub fn due(timing: &Timing, now_us: i64, quiet: Duration) -> Option<Due> {
    if timing.paused || timing.needs_reauth {
        return None;
    }
    if timing.next_run_at_us.unwrap_or(i64::MIN) <= now_us {
        return Some(Due::Scheduled);
    }
    let quiet_since = now_us.saturating_sub(micros(quiet));
    let notified = !timing.failing && timing.notified_at_us.is_some_and(|at| at <= quiet_since);
    notified.then_some(Due::Notified)
}

/// After a successful run: one interval after its start, so a run's own
/// length does not push the schedule later and later.
pub fn next_after_success(started_us: i64, interval: Duration) -> i64 {
    started_us.saturating_add(micros(interval))
}

/// After the `failures_in_a_row`-th failed run in a row (1 for the first):
/// its end plus the backoff, `base` doubling per failure up to
/// [`MAX_FAILURE_BACKOFF`].
pub fn next_after_failure(ended_us: i64, failures_in_a_row: u32, base: Duration) -> i64 {
    ended_us.saturating_add(micros(doubling(base, failures_in_a_row, MAX_FAILURE_BACKOFF)))
}

/// After the interval changed: one new interval after the last run's start
/// (or after now, if it never ran). A failing connection keeps its backoff.
pub fn next_after_interval_change(
    last_started_us: Option<i64>,
    now_us: i64,
    interval: Duration,
    current_next_us: Option<i64>,
    failing: bool,
) -> Option<i64> {
    if failing {
        current_next_us
    } else {
        Some(last_started_us.unwrap_or(now_us).saturating_add(micros(interval)))
    }
}

/// After the wall clock stepped back (or at start-up, when it may have
/// while the host was down): a next run further ahead than the interval
/// (for a failing connection, the interval plus the longest backoff) was
/// set by the clock before the step, and would postpone the run by as much
/// as the clock moved. Returns the time to set instead, now plus the
/// interval; `None` when the next run stands.
pub fn cap_after_clock_step(next_us: Option<i64>, now_us: i64, interval: Duration, failing: bool) -> Option<i64> {
    let next = next_us?;
    let slack = if failing { MAX_FAILURE_BACKOFF } else { Duration::ZERO };
    let latest = now_us.saturating_add(micros(interval)).saturating_add(micros(slack));
    (next > latest).then(|| now_us.saturating_add(micros(interval)))
}

/// `base` doubled for each attempt after the first (`attempt` counts from
/// 1; 0 is taken as 1), at most `max`. Runs, provider retries and webhook
/// deliveries all back off this way.
pub fn doubling(base: Duration, attempt: u32, max: Duration) -> Duration {
    base.saturating_mul(1 << attempt.max(1).saturating_sub(1).min(16)).min(max)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const QUIET: Duration = Duration::from_secs(3);

    fn timing(next: Option<i64>, notified: Option<i64>) -> Timing {
        Timing { next_run_at_us: next, notified_at_us: notified, ..Default::default() }
    }

    #[test]
    fn a_connection_is_due_when_its_time_comes_or_when_it_has_none() {
        assert_eq!(due(&timing(None, None), 100 * S, QUIET), Some(Due::Scheduled), "new, or asked for");
        assert_eq!(due(&timing(Some(100 * S), None), 100 * S, QUIET), Some(Due::Scheduled), "at its time");
        assert_eq!(due(&timing(Some(100 * S + 1), None), 100 * S, QUIET), None, "a moment before");
    }

    #[test]
    fn a_notification_makes_it_due_once_quiet_and_never_cuts_a_backoff_short() {
        let notified = timing(Some(1000 * S), Some(97 * S));
        assert_eq!(due(&notified, 100 * S - 1, QUIET), None, "still inside the quiet period");
        assert_eq!(due(&notified, 100 * S, QUIET), Some(Due::Notified));
        let failing = Timing { failing: true, ..notified };
        assert_eq!(due(&failing, 100 * S, QUIET), None, "a failing connection waits out its backoff");
        assert_eq!(due(&Timing { next_run_at_us: Some(0), ..failing }, 100 * S, QUIET), Some(Due::Scheduled));
    }

    #[test]
    fn paused_or_unauthorised_connections_are_never_due() {
        for timing in
            [Timing { paused: true, ..timing(None, Some(0)) }, Timing { needs_reauth: true, ..timing(None, Some(0)) }]
        {
            assert_eq!(due(&timing, 100 * S, QUIET), None, "{timing:?}");
        }
    }

    #[test]
    fn the_interval_in_force_is_the_connection_s_then_the_component_s_then_an_hour() {
        let (minute, day) = (Duration::from_secs(60), Duration::from_secs(86_400));
        assert_eq!(interval_in_force(Some(minute), Some(day)), minute);
        assert_eq!(interval_in_force(None, Some(day)), day);
        assert_eq!(interval_in_force(None, None), DEFAULT_INTERVAL);
    }

    #[test]
    fn the_next_run_counts_from_the_last_start_after_a_success_and_from_the_end_after_a_failure() {
        assert_eq!(next_after_success(10 * S, Duration::from_secs(60)), 70 * S);
        let base = Duration::from_secs(30);
        assert_eq!(next_after_failure(10 * S, 1, base), 40 * S);
        assert_eq!(next_after_failure(10 * S, 2, base), 70 * S);
        assert_eq!(next_after_failure(10 * S, 40, base), 10 * S + 3600 * S, "at most an hour");
        assert_eq!(next_after_success(i64::MAX - 1, Duration::MAX), i64::MAX, "no overflow into the past");
    }

    #[test]
    fn a_changed_interval_counts_from_the_last_start_unless_the_connection_is_failing() {
        let hour = Duration::from_secs(3600);
        assert_eq!(next_after_interval_change(Some(5 * S), 9 * S, hour, Some(99 * S), false), Some(3605 * S));
        assert_eq!(next_after_interval_change(None, 9 * S, hour, None, false), Some(3609 * S));
        assert_eq!(next_after_interval_change(Some(5 * S), 9 * S, hour, Some(99 * S), true), Some(99 * S));
    }

    #[test]
    fn a_clock_stepped_back_postpones_no_run_by_more_than_its_interval() {
        let ten = Duration::from_secs(10);
        // Set at 7200 s for 7210 s; the clock went back two hours to 0 s.
        assert_eq!(cap_after_clock_step(Some(7210 * S), 0, ten, false), Some(10 * S));
        assert_eq!(cap_after_clock_step(Some(10 * S), 0, ten, false), None, "one interval ahead stands");
        assert_eq!(cap_after_clock_step(None, 0, ten, false), None, "no time: as soon as possible already");
        // A failing connection's backoff (up to an hour) is no clock step.
        assert_eq!(cap_after_clock_step(Some(3610 * S), 0, ten, true), None);
        assert_eq!(cap_after_clock_step(Some(7210 * S), 0, ten, true), Some(10 * S));
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (0..8).map(|n| doubling(base, n, Duration::from_secs(60)).as_secs()).collect();
        assert_eq!(waits, vec![1, 1, 2, 4, 8, 16, 32, 60]);
        assert_eq!(doubling(base, u32::MAX, Duration::MAX), base * (1 << 16), "the exponent is capped, no overflow");
    }
}
