//! The server's clock and the date formats Directus reads and writes.
//!
//! Owns: the injectable clock, parsing of client date strings and formatting of `timestamp`,
//! `dateTime`, `date` values and the HTTP `Date` header. Must not: hold any other state.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::time::Duration;

/// Where the server takes "now" from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The machine's clock.
    System,
    /// A fixed instant that only moves when advanced.
    Manual(DateTime<Utc>),
}

impl Clock {
    /// The current instant, cut to milliseconds like a Node `Date`.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let raw = match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t,
        };
        from_millis(raw.timestamp_millis())
    }

    /// Moves a manual clock forward; a system clock cannot be moved.
    pub(crate) fn advance(&mut self, by: Duration) {
        if let Clock::Manual(t) = self {
            *t += chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        }
    }
}

/// An instant from epoch milliseconds (out-of-range values clamp to the epoch).
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// `timestamp` fields: UTC with milliseconds and `Z`, as `Date.toISOString()` writes them.
pub(crate) fn format_timestamp(ms: i64) -> String {
    from_millis(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `dateTime` fields: no zone and no milliseconds.
pub(crate) fn format_datetime(ms: i64) -> String {
    from_millis(ms).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `date` fields: the calendar day only.
pub(crate) fn format_date(ms: i64) -> String {
    from_millis(ms).format("%Y-%m-%d").to_string()
}

/// The HTTP `Date` header value (IMF-fixdate).
pub(crate) fn format_http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Parses the date strings clients send: RFC 3339 with or without fraction, or a zone-less
/// date-time (read as UTC, as Directus does on a UTC server), or a bare date.
pub(crate) fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_formats_to_the_same_instant() {
        let want = parse_instant("2026-11-22T10:00:00.000Z").unwrap();
        for s in [
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22 10:00:00",
            "2026-11-22T11:00:00+01:00",
            "2026-11-22T10:00:00.000",
            "2026-11-22T10:00",
        ] {
            assert_eq!(parse_instant(s), Some(want), "{s}");
        }
        assert_eq!(
            parse_instant("2026-11-22"),
            parse_instant("2026-11-22T00:00:00Z")
        );
        assert_eq!(parse_instant("nope"), None);
    }

    #[test]
    fn formats_like_directus() {
        let ms = parse_instant("2026-11-22T10:00:00.123Z").unwrap();
        assert_eq!(format_timestamp(ms), "2026-11-22T10:00:00.123Z");
        assert_eq!(format_datetime(ms), "2026-11-22T10:00:00");
        assert_eq!(format_date(ms), "2026-11-22");
        assert_eq!(
            format_http_date(from_millis(ms)),
            "Sun, 22 Nov 2026 10:00:00 GMT"
        );
    }
}
