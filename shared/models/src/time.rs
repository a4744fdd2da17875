//! Timestamps: always written as RFC 3339 UTC with a `Z`, millisecond precision, so that the
//! string order is the time order (they are used in sort keys).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use crate::validation::FieldError;

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// `2021-06-15T00:00:00.000Z`: fixed width, so lexicographic order equals time order.
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Accepts RFC 3339 with any offset, or the_eye's `2021-06-15 00:00:00` / ISO without offset
/// (read as UTC), with optional fractional seconds.
pub fn parse(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    let invalid = || {
        FieldError::new(
            field,
            "INVALID_TIMESTAMP",
            "must be RFC 3339 (2021-06-15T00:00:00Z) or 'YYYY-MM-DD HH:MM:SS' (read as UTC)",
        )
    };
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 {
        return Err(invalid());
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(raw) {
        return Ok(ts.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Ok(naive.and_utc());
        }
    }
    Err(invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_eye_and_rfc3339_forms() {
        let expect = "2021-06-15T00:00:00.000Z";
        for raw in [
            "2021-06-15 00:00:00",
            "2021-06-15T00:00:00",
            "2021-06-15T00:00:00Z",
            "2021-06-15T02:00:00+02:00",
            "2021-06-15 00:00:00.000",
        ] {
            assert_eq!(format(&parse("timestamp", raw).unwrap()), expect, "{raw}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for raw in ["", "yesterday", "2021-13-01 00:00:00", "2021-06-15", "2021-06-15T25:00:00Z"] {
            assert_eq!(parse("timestamp", raw).unwrap_err().code, "INVALID_TIMESTAMP", "{raw}");
        }
    }

    #[test]
    fn formatted_order_is_time_order() {
        let a = parse("t", "2021-06-15T00:00:00.5Z").unwrap();
        let b = parse("t", "2021-06-15T00:00:01Z").unwrap();
        assert!(format(&a) < format(&b));
    }
}
