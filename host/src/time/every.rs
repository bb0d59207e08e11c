//! How often a connection runs: `--every 15m`, `PATCH {"every": "15m"}`, and
//! a component's declared frequency (`every hour`).

use std::time::Duration;

/// The longest interval between runs: a year and a day. Longer ones are
/// refused rather than let overflow the instant of the next run (which would
/// put it in the past, and run the connection without pause).
pub const LONGEST_EVERY: Duration = Duration::from_secs(366 * 86_400);

/// Reads `30s`, `15m`, `1h`, `2d` (a whole number and a unit), at most
/// [`LONGEST_EVERY`].
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("`{text}` is not a duration such as `30s`, `15m`, `1h` or `1d`");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        "d" => number.checked_mul(86_400),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(invalid)?;
    let every = Duration::from_secs(seconds);
    if every > LONGEST_EVERY {
        return Err(format!("`{text}` is longer than the longest interval, 366d"));
    }
    Ok(every)
}

/// Writes a duration as [`parse_every`] reads it, in the largest whole unit.
pub fn format_every(every: Duration) -> String {
    let seconds = every.as_secs().max(1);
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Reads a component's frequency: `every hour`, `every 15 minutes`,
/// `every 2 hours`, `every day`, `every 30 seconds`.
pub fn parse_frequency(text: &str) -> Option<Duration> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (count, unit) = match words.as_slice() {
        ["every", unit] => (1, *unit),
        ["every", count, unit] => (count.parse::<u64>().ok()?, *unit),
        _ => return None,
    };
    let unit = unit.trim_end_matches('s');
    let seconds = match unit {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    count.checked_mul(seconds).filter(|s| *s > 0).map(Duration::from_secs).filter(|every| *every <= LONGEST_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, seconds) in [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172_800)] {
            assert_eq!(parse_every(text), Ok(Duration::from_secs(seconds)));
            assert_eq!(format_every(Duration::from_secs(seconds)), text);
        }
        assert_eq!(format_every(Duration::from_secs(90)), "90s");
        for bad in ["", "15", "m", "0s", "1w", "-1h", "1.5h", "99999999999999999999d", "9999999999999d", "367d"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_every("366d"), Ok(LONGEST_EVERY));
    }

    #[test]
    fn component_frequencies() {
        assert_eq!(parse_frequency("every hour"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_frequency("every 15 minutes"), Some(Duration::from_secs(900)));
        assert_eq!(parse_frequency("every 2 hours"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_frequency("every day"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_frequency("hourly"), None);
        assert_eq!(parse_frequency("every 0 minutes"), None);
        assert_eq!(parse_frequency("every 400 days"), None);
    }
}
