//! Timestamps: always written as RFC 3339 UTC with a `Z`, millisecond precision, so that the
//! string order is the time order (they are used in sort keys).

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};

use crate::validation::FieldError;

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// `2021-06-15T00:00:00.000Z`: fixed width, so lexicographic order equals time order.
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Earliest and latest instants accepted: years 0001 to 9999 in UTC, the range in which the
/// stored form is RFC 3339 and fixed width (so sort keys keep time order).
pub const EARLIEST: &str = "0001-01-01T00:00:00.000Z";
pub const LATEST: &str = "9999-12-31T23:59:59.999Z";

/// Whether `ts` is within [`EARLIEST`] and [`LATEST`] (the stored form's range).
pub fn representable(ts: &DateTime<Utc>) -> bool {
    (1..=9999).contains(&ts.year())
}

/// Accepts RFC 3339 with any offset, or the_eye's `2021-06-15 00:00:00` / ISO without offset
/// (read as UTC), with optional fractional seconds; in UTC between [`EARLIEST`] and [`LATEST`].
/// A leap second (`23:59:60`) is kept as the last millisecond before it (`23:59:59.999`): the
/// stored form has no second 60, and the order against its neighbours is kept.
pub fn parse(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    let ts = parse_any_year(field, raw)?;
    if !(1..=9999).contains(&ts.year()) {
        return Err(FieldError::new(
            field,
            "INVALID_TIMESTAMP",
            format!("must be between {EARLIEST} and {LATEST} (in UTC)"),
        ));
    }
    if ts.nanosecond() >= 1_000_000_000 {
        return Ok(ts.with_nanosecond(999_000_000).unwrap_or(ts));
    }
    Ok(ts)
}

fn parse_any_year(field: &str, raw: &str) -> Result<DateTime<Utc>, FieldError> {
    let invalid = || {
        FieldError::new(
            field,
            "INVALID_TIMESTAMP",
            "must be RFC 3339 (2021-06-15T00:00:00Z) or 'YYYY-MM-DD HH:MM:SS' (read as UTC)",
        )
    };
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 64 || !strict_shape(raw) {
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

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction]` then nothing, `Z` or `±HH:MM`: chrono's format parser
/// alone also takes `21-06-15` (year 21), single-digit fields and a leading sign.
fn strict_shape(raw: &str) -> bool {
    let b = raw.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let head = digits(0..4)
        && at(4, b"-")
        && digits(5..7)
        && at(7, b"-")
        && digits(8..10)
        && at(10, b"Tt ")
        && digits(11..13)
        && at(13, b":")
        && digits(14..16)
        && at(16, b":")
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &b[19.min(b.len())..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [] | [b'Z'] | [b'z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
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
        for raw in [
            "",
            "yesterday",
            "2021-13-01 00:00:00",
            "2021-06-15",
            "2021-06-15T25:00:00Z",
            "21-06-15 00:00:00",
            "2021-6-15 0:0:0",
            "+2021-06-15T00:00:00",
            "2021-06-15  00:00:00",
            "2021-06-15 00:00:00.",
            "2021-06-15T00:00:00+0200",
            "2021-06-15T00:00:00 Z",
        ] {
            assert_eq!(parse("timestamp", raw).unwrap_err().code, "INVALID_TIMESTAMP", "{raw}");
        }
    }

    #[test]
    fn years_outside_0001_to_9999_are_refused_and_the_edges_kept() {
        for raw in [
            "0000-01-01T00:00:00+01:00",
            "0000-12-31T23:59:59Z",
            "-262143-01-01 00:00:00",
            "+10000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:30:00+01:00",
        ] {
            assert_eq!(parse("timestamp", raw).map(|t| format(&t)).unwrap_err().code, "INVALID_TIMESTAMP", "{raw}");
        }
        assert_eq!(format(&parse("t", "0001-01-01T00:00:00Z").unwrap()), EARLIEST);
        assert_eq!(format(&parse("t", "9999-12-31T23:59:59.999999Z").unwrap()), LATEST);
        assert_eq!(format(&parse("t", "9999-12-31 23:59:59").unwrap()).len(), EARLIEST.len());
    }

    #[test]
    fn a_leap_second_is_the_last_millisecond_before_it() {
        let leap = parse("t", "2016-12-31T23:59:60Z").unwrap();
        assert_eq!(format(&leap), "2016-12-31T23:59:59.999Z");
        assert!(format(&parse("t", "2016-12-31T23:59:59.5Z").unwrap()) < format(&leap));
        assert!(format(&leap) < format(&parse("t", "2017-01-01T00:00:00Z").unwrap()));
        assert_eq!(format(&parse("t", "2016-12-31 23:59:60.5").unwrap()), "2016-12-31T23:59:59.999Z");
    }

    #[test]
    fn formatted_order_is_time_order() {
        let a = parse("t", "2021-06-15T00:00:00.5Z").unwrap();
        let b = parse("t", "2021-06-15T00:00:01Z").unwrap();
        assert!(format(&a) < format(&b));
    }
}
