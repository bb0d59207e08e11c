//! Time as the host keeps and shows it, shared by every layer: instants as
//! microseconds since the Unix epoch (what the stores hold), shown as RFC 3339
//! with microseconds; and intervals (`every`).

pub mod every;

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// `micros` as RFC 3339 in UTC with microseconds, as the API shows instants.
pub fn format_us(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}
