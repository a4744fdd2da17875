//! Streams: named groups of events with their own settings (DataStream Pro's streams). Every
//! event belongs to one; a stream exists once an event names it or its settings are set.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validation::{body_object, json_type_name, reject_unchangeable, FieldError, ValidationError};

pub const MAX_STREAM_ID_LEN: usize = 100;
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const MIN_RETENTION_DAYS: u32 = 1;
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// Index partitions a stream's events are written across (GSI4; GSI3 takes at least the
/// tenant's 16). A DynamoDB partition takes about 1,000 writes/s, so 8 hold ≈ 8,000 events/s
/// and 64 hold ≈ 64,000. Powers of two from 8 to 64, and a stream's count only grows: an event
/// is written to shard `hash(id) mod n`, which is below every larger count, so readers that
/// query the current count's shards find every event written under a smaller one.
pub const DEFAULT_WRITE_SHARDS: u32 = 8;
pub const MAX_WRITE_SHARDS: u32 = 64;
pub const WRITE_SHARD_COUNTS: [u32; 4] = [8, 16, 32, 64];

/// Sub-partitions of a stream's rollup cells and statistics: one per 8 write shards (1 to 8).
/// The aggregator adds each batch's counts to one of them, so the stream's hottest items (its
/// current minute and hour) take at most the share of the writes one partition can.
pub fn rollup_shards(write_shards: u32) -> u32 {
    (write_shards / DEFAULT_WRITE_SHARDS).clamp(1, MAX_WRITE_SHARDS / DEFAULT_WRITE_SHARDS)
}
const SECONDS_PER_DAY: i64 = 86_400;

/// A stream id: 1 to 100 of `A-Z a-z 0-9 _ - . :`. Ids appear in URL paths
/// (`/streams/{id}`) and in keys, so the set is one that needs no escaping anywhere.
pub fn check_stream_id(field: &str, raw: &str) -> Result<String, FieldError> {
    let chars = raw.chars().count();
    if chars == 0 || chars > MAX_STREAM_ID_LEN {
        return Err(FieldError::new(
            field,
            "INVALID_LENGTH",
            format!("{field} must be 1 to {MAX_STREAM_ID_LEN} characters, got {chars}"),
        ));
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')) {
        return Err(FieldError::new(
            field,
            "INVALID_CHARACTERS",
            format!("{field} may only contain letters, digits, '_', '-', '.' and ':'"),
        ));
    }
    if raw == "." || raw == ".." {
        return Err(FieldError::new(
            field,
            "INVALID_CHARACTERS",
            format!("{field} cannot be '.' or '..' (path segments)"),
        ));
    }
    Ok(raw.to_string())
}

/// Numeric `data.` fields a stream's rollups may sum.
pub const MAX_ROLLUP_FIELDS: usize = 8;

/// A `data.` field the aggregator sums into the stream's rollup cells (`sum`, `avg` and
/// `count` of it answered from the rollups). Each event version is stamped by its writer with
/// the number of fields it knew (the list only grows), and the aggregator sums exactly those:
/// what a version adds and later takes away never depends on which instance applies it.
/// Every version stored from `since` on knows the field (one settings-cache lifetime after it
/// was added); some stored a little earlier may too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupField {
    pub field: String,
    pub since: String,
}

impl RollupField {
    /// The path into `data` (`data.a.b` → `["a", "b"]`).
    pub fn path(&self) -> Vec<String> {
        self.field.strip_prefix("data.").unwrap_or_default().split('.').map(str::to_string).collect()
    }
}

/// A stream's settings as the API returns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    pub stream_id: String,
    pub retention_days: u32,
    pub write_shards: u32,
    pub rollup_fields: Vec<RollupField>,
    pub created_at: String,
    pub updated_at: String,
}

/// `PATCH /streams/{id}`: the settings to change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamChanges {
    pub retention_days: Option<u32>,
    pub write_shards: Option<u32>,
    /// Every field the stream sums, after the change (fields only added: see [`grow_rollup_fields`]).
    pub rollup_fields: Option<Vec<String>>,
}

const CHANGEABLE: [&str; 3] = ["retention_days", "write_shards", "rollup_fields"];

/// The rollup fields after a PATCH that names `requested`: the current ones kept (with their
/// `since`, in their order: the aggregator's counters are named by position), the new ones
/// appended from `since`. `Err(the current fields left out)`: fields are only added, because
/// a field dropped and added again would find its old sums in the cells.
pub fn grow_rollup_fields(
    current: &[RollupField],
    requested: &[String],
    since: &str,
) -> Result<Vec<RollupField>, Vec<String>> {
    let dropped: Vec<String> =
        current.iter().filter(|f| !requested.contains(&f.field)).map(|f| f.field.clone()).collect();
    if !dropped.is_empty() {
        return Err(dropped);
    }
    let mut grown = current.to_vec();
    for field in requested {
        if !grown.iter().any(|f| f.field == *field) {
            grown.push(RollupField { field: field.clone(), since: since.to_string() });
        }
    }
    Ok(grown)
}

impl StreamChanges {
    pub fn parse(value: &Value) -> Result<Self, ValidationError> {
        let fields = body_object(value, "expected a JSON object")?;
        let mut errors = ValidationError::default();
        reject_unchangeable(fields, &CHANGEABLE, &mut errors);
        if fields.is_empty() {
            errors.push(FieldError::new("body", "EMPTY_PATCH", "name at least one setting to change"));
        }
        let retention_days = retention_days(fields, &mut errors);
        let write_shards = write_shards(fields, &mut errors);
        let rollup_fields = rollup_fields(fields, &mut errors);
        errors.into_result()?;
        Ok(Self { retention_days, write_shards, rollup_fields })
    }
}

/// Characters of a summed field's path segments: the settings every writer caches stay small.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn rollup_fields(fields: &Map<String, Value>, errors: &mut ValidationError) -> Option<Vec<String>> {
    let value = fields.get("rollup_fields")?;
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new(
            "rollup_fields",
            "INVALID_TYPE",
            format!("expected an array of data.<path> fields, got {}", json_type_name(value)),
        ));
        return None;
    };
    if items.len() > MAX_ROLLUP_FIELDS {
        errors.push(FieldError::new(
            "rollup_fields",
            "TOO_MANY_FIELDS",
            format!("a stream sums at most {MAX_ROLLUP_FIELDS} fields, got {}", items.len()),
        ));
        return None;
    }
    let before = errors.errors.len();
    let mut names = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("rollup_fields[{i}]");
        let Some(raw) = item.as_str() else {
            errors.push(FieldError::new(
                field,
                "INVALID_TYPE",
                format!("expected a string, got {}", json_type_name(item)),
            ));
            continue;
        };
        match crate::analytics::Field::parse(&field, raw, false) {
            Ok(crate::analytics::Field::Data(path))
                if path.iter().any(|segment| segment.len() > 64 || !segment.chars().all(is_key_char)) =>
            {
                errors.push(FieldError::new(
                    field,
                    "INVALID_FIELD",
                    "a summed field's path segments are 1 to 64 of A-Z a-z 0-9 _ -",
                ));
            }
            Ok(crate::analytics::Field::Data(_)) if names.iter().any(|n| n == raw) => {
                errors.push(FieldError::new(field, "DUPLICATE_FIELD", format!("{raw} is named twice")));
            }
            Ok(crate::analytics::Field::Data(_)) => names.push(raw.to_string()),
            Ok(_) => errors.push(FieldError::new(
                field,
                "NOT_A_DATA_FIELD",
                format!("only numeric data.<path> fields are summed; {raw} is counted already"),
            )),
            Err(err) => errors.push(err),
        }
    }
    (errors.errors.len() == before).then_some(names)
}

fn write_shards(fields: &Map<String, Value>, errors: &mut ValidationError) -> Option<u32> {
    let value = fields.get("write_shards")?;
    let whole = value.as_u64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
    match whole.and_then(|n| u32::try_from(n).ok()).filter(|n| WRITE_SHARD_COUNTS.contains(n)) {
        Some(n) => Some(n),
        None => {
            let (code, message) = if value.is_number() {
                ("OUT_OF_RANGE", format!("write_shards is one of 8, 16, 32 or 64, got {value}"))
            } else {
                ("INVALID_TYPE", format!("expected an integer, got {}", json_type_name(value)))
            };
            errors.push(FieldError::new("write_shards", code, message));
            None
        }
    }
}

fn retention_days(fields: &Map<String, Value>, errors: &mut ValidationError) -> Option<u32> {
    let value = fields.get("retention_days")?;
    let range = MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS;
    // JSON has one number type: 30.0 is the whole number 30 (as JSON Schema's `integer` says).
    let whole = value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(MAX_RETENTION_DAYS)).contains(f))
            .map(|f| f as u64)
    });
    match whole {
        Some(days) if days <= u64::from(MAX_RETENTION_DAYS) && range.contains(&(days as u32)) => Some(days as u32),
        _ => {
            let (code, message) = if value.is_number() {
                (
                    "OUT_OF_RANGE",
                    format!(
                        "retention_days is a whole number of days from {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, got {value}"
                    ),
                )
            } else {
                ("INVALID_TYPE", format!("expected an integer, got {}", json_type_name(value)))
            };
            errors.push(FieldError::new("retention_days", code, message));
            None
        }
    }
}

/// The DynamoDB TTL (epoch seconds) of an event: `retention_days` after the end of its
/// timestamp's minute. Aligned to minutes so that every event of one minute and one retention
/// expires at the same second: a per-minute rollup is then either wholly visible or wholly
/// expired, and aggregates stay exact across the retention boundary.
pub fn expires_at(timestamp: &DateTime<Utc>, retention_days: u32) -> i64 {
    let minute_end = timestamp.timestamp().div_euclid(60).saturating_mul(60).saturating_add(60);
    minute_end.saturating_add(i64::from(retention_days) * SECONDS_PER_DAY)
}

/// Whether a stored event with this TTL is past it at `now` (hidden before DynamoDB deletes it).
pub fn is_expired(expires_at: i64, now: &DateTime<Utc>) -> bool {
    expires_at <= now.timestamp()
}

/// An event already past its stream's retention when it arrives would be stored invisible and
/// deleted by TTL: it is refused instead, so that it ends as an error, never silently.
pub fn retention_violation(timestamp: &DateTime<Utc>, retention_days: u32, now: &DateTime<Utc>) -> Option<FieldError> {
    is_expired(expires_at(timestamp, retention_days), now).then(|| {
        FieldError::new(
            "timestamp",
            crate::error_record::codes::TIMESTAMP_BEYOND_RETENTION,
            format!(
                "timestamp {} is older than the stream's retention of {retention_days} days",
                crate::time::format(timestamp)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_ids() {
        assert_eq!(check_stream_id("s", "user-events.v2:eu_1").unwrap(), "user-events.v2:eu_1");
        assert_eq!(check_stream_id("s", &"a".repeat(100)).unwrap().len(), 100);
        assert_eq!(check_stream_id("s", &"a".repeat(101)).unwrap_err().code, "INVALID_LENGTH");
        assert_eq!(check_stream_id("s", "").unwrap_err().code, "INVALID_LENGTH");
        assert_eq!(check_stream_id("s", "..").unwrap_err().code, "INVALID_CHARACTERS");
        assert!(check_stream_id("s", "...").is_ok());
        for bad in ["a b", "a/b", "a#b", "é", "a%2F", "a\u{0}"] {
            assert_eq!(check_stream_id("s", bad).unwrap_err().code, "INVALID_CHARACTERS", "{bad}");
        }
    }

    #[test]
    fn changes() {
        assert_eq!(StreamChanges::parse(&json!({"retention_days": 7})).unwrap().retention_days, Some(7));
        assert_eq!(StreamChanges::parse(&json!({"retention_days": 3650})).unwrap().retention_days, Some(3650));
        assert_eq!(StreamChanges::parse(&json!({"retention_days": 209.0})).unwrap().retention_days, Some(209));
        let code = |v: Value| StreamChanges::parse(&v).unwrap_err().errors[0].code;
        assert_eq!(code(json!({"retention_days": 0})), "OUT_OF_RANGE");
        assert_eq!(code(json!({"retention_days": 3651})), "OUT_OF_RANGE");
        assert_eq!(code(json!({"retention_days": 1.5})), "OUT_OF_RANGE");
        assert_eq!(code(json!({"retention_days": -1})), "OUT_OF_RANGE");
        assert_eq!(code(json!({"retention_days": 4294967297u64})), "OUT_OF_RANGE");
        assert_eq!(code(json!({"retention_days": "7"})), "INVALID_TYPE");
        assert_eq!(code(json!({})), "EMPTY_PATCH");
        assert_eq!(code(json!({"name": "x"})), "NOT_CHANGEABLE");
        assert_eq!(code(json!([])), "INVALID_TYPE");
        assert_eq!(StreamChanges::parse(&json!({"write_shards": 64})).unwrap().write_shards, Some(64));
        assert_eq!(StreamChanges::parse(&json!({"write_shards": 16.0})).unwrap().write_shards, Some(16));
        for bad in [json!(0), json!(12), json!(128), json!(-8), json!(8.5), json!(4294967304u64)] {
            let error = &StreamChanges::parse(&json!({"write_shards": bad})).unwrap_err().errors[0];
            assert_eq!((error.field.as_str(), error.code), ("write_shards", "OUT_OF_RANGE"), "{bad}");
        }
        assert_eq!(code(json!({"write_shards": "64"})), "INVALID_TYPE");
        let fields = StreamChanges::parse(&json!({"rollup_fields": ["data.amount", "data.cart.total"]})).unwrap();
        assert_eq!(fields.rollup_fields, Some(vec!["data.amount".to_string(), "data.cart.total".to_string()]));
        assert_eq!(StreamChanges::parse(&json!({"rollup_fields": []})).unwrap().rollup_fields, Some(vec![]));
        let error = |v: Value| {
            let e = &StreamChanges::parse(&json!({ "rollup_fields": v })).unwrap_err().errors[0];
            (e.field.clone(), e.code)
        };
        assert_eq!(error(json!("data.amount")), ("rollup_fields".into(), "INVALID_TYPE"));
        assert_eq!(error(json!(["data.a", 7])), ("rollup_fields[1]".into(), "INVALID_TYPE"));
        assert_eq!(error(json!(["data.a", "data.a"])), ("rollup_fields[1]".into(), "DUPLICATE_FIELD"));
        assert_eq!(error(json!(["event_type"])), ("rollup_fields[0]".into(), "NOT_A_DATA_FIELD"));
        assert_eq!(error(json!(["data..x"])), ("rollup_fields[0]".into(), "INVALID_FIELD"));
        assert_eq!(error(json!(["amount"])), ("rollup_fields[0]".into(), "UNKNOWN_FIELD"));
        assert_eq!(error(json!(["data.a b"])), ("rollup_fields[0]".into(), "INVALID_FIELD"));
        assert_eq!(error(json!([format!("data.{}", "x".repeat(65))])), ("rollup_fields[0]".into(), "INVALID_FIELD"));
        assert!(StreamChanges::parse(&json!({"rollup_fields": [format!("data.{}", "x".repeat(64))]})).is_ok());
        let nine: Vec<String> = (0..9).map(|i| format!("data.f{i}")).collect();
        assert_eq!(error(json!(nine)), ("rollup_fields".into(), "TOO_MANY_FIELDS"));
    }

    #[test]
    fn rollup_fields_only_grow() {
        let a = RollupField { field: "data.a".into(), since: "2026-01-01T00:00:00.000Z".into() };
        let grown = grow_rollup_fields(
            std::slice::from_ref(&a),
            &["data.b".into(), "data.a".into()],
            "2026-02-01T00:00:00.000Z",
        )
        .unwrap();
        assert_eq!(grown[0], a, "kept with its since, in its place");
        assert_eq!(grown[1], RollupField { field: "data.b".into(), since: "2026-02-01T00:00:00.000Z".into() });
        assert_eq!(grown[1].path(), ["b"]);
        assert_eq!(grow_rollup_fields(&grown, &["data.b".into()], "x").unwrap_err(), ["data.a"]);
        assert_eq!(grow_rollup_fields(&grown, &["data.a".into(), "data.b".into()], "x").unwrap(), grown);
    }

    #[test]
    fn retention() {
        let now = crate::time::parse("t", "2026-03-01T00:00:00Z").unwrap();
        let day = chrono::Duration::days(1);
        let second = chrono::Duration::seconds(1);
        // Counted from the end of the timestamp's minute.
        assert_eq!(expires_at(&now, 1), now.timestamp() + 60 + 86_400);
        assert_eq!(expires_at(&(now + second * 59), 1), now.timestamp() + 60 + 86_400);
        assert_eq!(expires_at(&(now - second), 1), now.timestamp() + 86_400);
        assert!(retention_violation(&(now - day * 7 - second), 7, &now).is_some());
        assert!(retention_violation(&(now - day * 7), 7, &now).is_none());
        assert!(is_expired(now.timestamp(), &now));
        assert!(!is_expired(now.timestamp() + 1, &now));
    }
}
