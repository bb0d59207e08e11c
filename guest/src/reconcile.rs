//! When the sync lists every customer to reconcile deletions
//! (docs/sync.md, "Reconciliation").
//!
//! QuickBooks' change data capture (CDC) is the cheap way to learn of
//! customers deleted outright (merged away), but it cannot be trusted when it
//! answers its maximum of 1000 objects (deletions come last and are what gets
//! cut), nor beyond its 30 days. Then, and at least every `reconcileEvery`
//! (24 hours by default), a pass lists every customer inside a host
//! *listing*; when the pass completes, the host soft-deletes what it did not
//! see. These are the decisions; `sync.rs` carries them out.

use chrono::{DateTime, Duration, Utc};
use std::fmt;

use crate::customer::parse_timestamp;

/// The configuration key that sets how often to reconcile at least.
pub const EVERY_KEY: &str = "reconcileEvery";
/// How often to reconcile at least, when the connection does not say.
pub const DEFAULT_EVERY: Duration = Duration::hours(24);
/// CDC answers for the last 30 days; a day of margin for clock differences.
pub const CDC_WINDOW: Duration = Duration::days(29);
/// CDC answers at most this many objects, deleted ones last.
pub const CDC_MAX_OBJECTS: usize = 1000;

/// How often a connection reconciles at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Only when CDC cannot be trusted.
    Off,
    /// Also whenever the last full listing began this long ago.
    Interval(Duration),
}

impl Every {
    /// Reads `reconcileEvery`: `off`, or a whole number followed by `s`, `m`,
    /// `h` or `d` (`24h`, `90m`). Absent: 24 hours.
    pub fn from_config(value: Option<&str>) -> Result<Every, String> {
        let Some(text) = value.map(str::trim) else { return Ok(Every::Interval(DEFAULT_EVERY)) };
        if text.eq_ignore_ascii_case("off") {
            return Ok(Every::Off);
        }
        let invalid =
            || format!("`{EVERY_KEY}` must be `off` or a duration such as `24h`, `90m` or `2d`, got `{text}`");
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let (number, unit) = text.split_at(split);
        let number: i64 = number.parse().map_err(|_| invalid())?;
        let interval = match unit {
            "s" => Duration::try_seconds(number),
            "m" => Duration::try_minutes(number),
            "h" => Duration::try_hours(number),
            "d" => Duration::try_days(number),
            _ => None,
        }
        .filter(|d| *d > Duration::zero())
        .ok_or_else(invalid)?;
        Ok(Every::Interval(interval))
    }
}

/// Why a pass lists every customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No checkpoint: the first sync of the connection (or after a reset).
    FirstSync,
    /// The checkpoint predates reconciliation: no full listing on record.
    NeverReconciled,
    /// The last full listing began at `last`, longer ago than `every`.
    Due { last: String, every: Duration },
    /// The last pass began at `since`, beyond CDC's 30 days.
    CdcWindowPassed { since: String },
    /// CDC answered its maximum of objects: deletions may have been cut.
    CdcCut { objects: usize },
    /// The listing a resumed pass had begun was closed by someone else.
    ListingLost { listing: u64 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::FirstSync => write!(f, "first sync of the connection"),
            Reason::NeverReconciled => write!(f, "no full listing on record"),
            Reason::Due { last, every } => {
                write!(f, "the last full listing began at {last}, more than {} ago", human(*every))
            }
            Reason::CdcWindowPassed { since } => write!(
                f,
                "the last pass began at {since}, beyond CDC's 30 days: deletions since then cannot be read from CDC"
            ),
            Reason::CdcCut { objects } => {
                write!(f, "CDC answered {objects} objects, its maximum: deletions, which come last, may have been cut")
            }
            Reason::ListingLost { listing } => {
                write!(f, "listing {listing}, begun by an earlier run, is no longer open: listing again from the start")
            }
        }
    }
}

fn human(duration: Duration) -> String {
    let seconds = duration.num_seconds();
    match seconds {
        s if s % 86_400 == 0 && s >= 2 * 86_400 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// At the first page of a new incremental pass, with QuickBooks' clock
/// `now`: whether to list everything instead. `last_full` is when the last
/// completed full listing began, `cdc_since` when the previous pass began.
pub fn before_incremental(
    now: Option<DateTime<Utc>>,
    last_full: Option<&str>,
    cdc_since: Option<&str>,
    every: Every,
) -> Option<Reason> {
    let Some(last_full) = last_full else { return Some(Reason::NeverReconciled) };
    // Without QuickBooks' clock (a server that omits `time`) nothing can be
    // aged; CDC's own answer still guards against cut deletions.
    let now = now?;
    if let Some(since) = cdc_since {
        if parse_timestamp(since).is_some_and(|since_at| now - since_at > CDC_WINDOW) {
            return Some(Reason::CdcWindowPassed { since: since.to_owned() });
        }
    }
    if let Every::Interval(every) = every {
        if parse_timestamp(last_full).is_none_or(|last_at| now - last_at >= every) {
            return Some(Reason::Due { last: last_full.to_owned(), every });
        }
    }
    None
}

/// After reading CDC: whether its answer may have lost deletions.
pub fn after_cdc(objects: usize) -> Option<Reason> {
    (objects >= CDC_MAX_OBJECTS).then_some(Reason::CdcCut { objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Option<DateTime<Utc>> {
        parse_timestamp(text)
    }

    const DAY: Every = Every::Interval(DEFAULT_EVERY);

    #[test]
    fn reconcile_every_reads_durations_and_off() {
        assert_eq!(Every::from_config(None), Ok(Every::Interval(Duration::hours(24))));
        assert_eq!(Every::from_config(Some("90m")), Ok(Every::Interval(Duration::minutes(90))));
        assert_eq!(Every::from_config(Some("2d")), Ok(Every::Interval(Duration::days(2))));
        assert_eq!(Every::from_config(Some("OFF")), Ok(Every::Off));
        for bad in ["", "24", "h", "-1h", "0h", "1.5h", "1w", "99999999999999999999d"] {
            let error = Every::from_config(Some(bad)).unwrap_err();
            assert!(error.contains("reconcileEvery"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_recent_full_listing_and_recent_pass_trust_cdc() {
        let now = at("2026-05-05T12:00:00-07:00");
        let last = Some("2026-05-05T01:00:00-07:00");
        assert_eq!(before_incremental(now, last, Some("2026-05-05T11:00:00-07:00"), DAY), None);
    }

    #[test]
    fn a_day_after_the_last_full_listing_it_is_due() {
        let now = at("2026-05-06T01:00:00-07:00");
        let reason = before_incremental(now, Some("2026-05-05T01:00:00-07:00"), Some("2026-05-06T00:00:00-07:00"), DAY);
        assert!(matches!(reason, Some(Reason::Due { .. })), "{reason:?}");
        assert!(reason.unwrap().to_string().contains("24 h"));
        assert_eq!(
            before_incremental(now, Some("2026-05-05T01:00:00-07:00"), Some("2026-05-06T00:00:00-07:00"), Every::Off),
            None
        );
    }

    #[test]
    fn beyond_cdc_s_window_it_reconciles_whatever_the_interval() {
        let now = at("2026-06-10T00:00:00-07:00");
        let reason =
            before_incremental(now, Some("2026-06-09T23:00:00-07:00"), Some("2026-05-05T00:00:00-07:00"), Every::Off);
        assert!(matches!(reason, Some(Reason::CdcWindowPassed { .. })), "{reason:?}");
    }

    #[test]
    fn instants_not_text_across_the_fall_back() {
        // 01:30-08:00 is an hour after 01:30-07:00, though the texts sort the other way round.
        let now = at("2026-11-01T01:30:00-08:00");
        let hourly = Every::Interval(Duration::hours(1));
        let reason =
            before_incremental(now, Some("2026-11-01T01:30:00-07:00"), Some("2026-11-01T01:30:00-07:00"), hourly);
        assert!(matches!(reason, Some(Reason::Due { .. })), "{reason:?}");
    }

    #[test]
    fn no_listing_on_record_reconciles_and_no_clock_trusts_cdc() {
        assert_eq!(before_incremental(None, None, None, DAY), Some(Reason::NeverReconciled));
        assert_eq!(before_incremental(None, Some("2026-05-05T01:00:00-07:00"), None, DAY), None);
    }

    #[test]
    fn a_full_cdc_answer_is_not_trusted() {
        assert_eq!(after_cdc(999), None);
        assert_eq!(after_cdc(1000), Some(Reason::CdcCut { objects: 1000 }));
    }
}
