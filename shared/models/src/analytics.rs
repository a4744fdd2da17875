//! DataStream's analytics requests: `POST /query/aggregate` bodies and the folds that answer
//! them from raw events. Pure: parsing, validation and folding; reading is in the core crate.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::stream::check_stream_id;
use crate::validation::{body_object, json_type_name, FieldError, ValidationError};

/// Aggregations per request.
pub const MAX_AGGREGATIONS: usize = 20;
/// Longest window (days): the longest retention plus slack.
pub const MAX_WINDOW_DAYS: i64 = 3_700;
/// Distinct groups in one answer.
pub const MAX_GROUPS: usize = 1_000;
/// Time buckets of one series (`interval`).
pub const MAX_BUCKETS: i64 = 10_000;
/// Rows (groups × buckets) of one answer.
pub const MAX_ROWS: usize = 10_000;
/// Events a request may fold from raw events (aggregations the rollups do not keep).
pub const MAX_RAW_EVENTS: u64 = 20_000;
/// Bytes of raw events (as read) a request may fold: 20,000 events of 64 KiB would not fit a
/// function's memory, so the fold stops here too.
pub const MAX_RAW_BYTES: u64 = 64 * 1024 * 1024;
/// The answer's JSON, at most: well inside Lambda's 6 MB response once escaped.
pub const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// Segments of a `data.` path.
const MAX_PATH_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl Operation {
    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count_distinct" => Self::CountDistinct,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::CountDistinct => "count_distinct",
        }
    }
}

/// A field of an event as the analytics routes name it (DataStream's names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// `*`: the event itself (only for `count`).
    Event,
    EventId,
    EventType,
    Category,
    SessionId,
    Timestamp,
    /// `data.a.b`: a path into `data`.
    Data(Vec<String>),
}

impl Field {
    pub fn parse(field: &str, raw: &str, allow_star: bool) -> Result<Self, FieldError> {
        Ok(match raw {
            "*" if allow_star => Self::Event,
            "event_id" => Self::EventId,
            "event_type" => Self::EventType,
            "category" => Self::Category,
            "session_id" => Self::SessionId,
            "timestamp" => Self::Timestamp,
            _ => match raw.strip_prefix("data.") {
                Some(path) => {
                    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
                    if segments.len() > MAX_PATH_DEPTH
                        || segments.iter().any(|s| s.is_empty() || s.chars().count() > 256)
                    {
                        return Err(FieldError::new(
                            field,
                            "INVALID_FIELD",
                            format!("a data path has 1 to {MAX_PATH_DEPTH} non-empty segments: data.a.b"),
                        ));
                    }
                    Self::Data(segments)
                }
                None => {
                    return Err(FieldError::new(
                        field,
                        "UNKNOWN_FIELD",
                        format!(
                            "fields are {}event_id, event_type, category, session_id, timestamp or data.<path>",
                            if allow_star { "*, " } else { "" }
                        ),
                    ))
                }
            },
        })
    }

    /// Whether values of this field can be numbers at all.
    fn may_be_numeric(&self) -> bool {
        matches!(self, Self::Data(_))
    }

    /// The field's value in a raw event (DataStream's shape: `event_type`, `data`, …).
    pub fn value<'a>(&self, event: &'a Value) -> Option<&'a Value> {
        let value = match self {
            Self::Event => return Some(event),
            Self::EventId => event.get("event_id"),
            Self::EventType => event.get("event_type"),
            Self::Category => event.get("category"),
            Self::SessionId => event.get("session_id"),
            Self::Timestamp => event.get("timestamp"),
            Self::Data(path) => path.iter().try_fold(event.get("data")?, |v, segment| v.get(segment)),
        };
        value.filter(|v| !v.is_null())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    Minute,
    Hour,
    Day,
}

impl Interval {
    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn bucket(self, epoch: i64) -> i64 {
        epoch.div_euclid(self.seconds()) * self.seconds()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Aggregation {
    /// As the client wrote it (echoed in the answer).
    pub field_name: String,
    pub field: Field,
    pub operation: Operation,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggregateRequest {
    pub stream: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub aggregations: Vec<Aggregation>,
    pub group_by: Option<(String, Field)>,
    pub interval: Option<Interval>,
}

impl AggregateRequest {
    pub fn parse(body: &Value) -> Result<Self, ValidationError> {
        let fields = body_object(body, "an aggregation request is a JSON object")?;
        let mut errors = ValidationError::default();
        for key in fields.keys() {
            if !["stream_id", "time_window", "aggregations", "group_by", "interval"].contains(&key.as_str()) {
                errors.push(FieldError::new(
                    key.clone(),
                    "UNKNOWN_FIELD",
                    "fields are stream_id, time_window, aggregations, group_by and interval",
                ));
            }
        }
        let stream = match fields.get("stream_id") {
            Some(Value::String(raw)) => check_stream_id("stream_id", raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error("stream_id", "a string", other));
                None
            }
            None => {
                errors.push(FieldError::new("stream_id", "REQUIRED", "stream_id is required"));
                None
            }
        };
        let window = parse_window(fields.get("time_window"), MAX_WINDOW_DAYS, &mut errors);
        let aggregations = parse_aggregations(fields.get("aggregations"), &mut errors);
        let group_by = match fields.get("group_by") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match Field::parse("group_by", raw, false) {
                Ok(Field::Timestamp | Field::EventId) => {
                    errors.push(FieldError::new(
                        "group_by",
                        "INVALID_GROUP_BY",
                        "group by event_type, category, session_id or a data path; use interval for time",
                    ));
                    None
                }
                Ok(field) => Some((raw.clone(), field)),
                Err(err) => {
                    errors.push(err);
                    None
                }
            },
            Some(other) => {
                errors.push(type_error("group_by", "a string", other));
                None
            }
        };
        let interval = match fields.get("interval") {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => match raw.as_str() {
                "minute" => Some(Interval::Minute),
                "hour" => Some(Interval::Hour),
                "day" => Some(Interval::Day),
                _ => {
                    errors.push(FieldError::new("interval", "INVALID_INTERVAL", "interval is minute, hour or day"));
                    None
                }
            },
            Some(other) => {
                errors.push(type_error("interval", "a string", other));
                None
            }
        };
        if let (Some((start, end)), Some(interval)) = (window, interval) {
            let buckets =
                (interval.bucket(end.timestamp() - 1) - interval.bucket(start.timestamp())) / interval.seconds() + 1;
            if buckets > MAX_BUCKETS {
                errors.push(FieldError::new(
                    "interval",
                    "TOO_MANY_BUCKETS",
                    format!("the window has {buckets} {} buckets; at most {MAX_BUCKETS}", interval.name()),
                ));
            }
        }
        errors.into_result()?;
        match (stream, window, aggregations) {
            (Some(stream), Some((start, end)), Some(aggregations)) => {
                Ok(Self { stream, start, end, aggregations, group_by, interval })
            }
            _ => Err(FieldError::new("body", "INVALID_REQUEST", "invalid aggregation request").into()),
        }
    }

    /// How the rollups answer this request on a stream that sums `summed` (its rollup fields,
    /// `data.<path>`, in order): per aggregation, the count of events or a summed field's
    /// counters. `None`: some aggregation or the grouping needs raw events.
    pub fn rollup_plan(&self, summed: &[&str]) -> Option<Vec<RolledUp>> {
        if !matches!(&self.group_by, None | Some((_, Field::EventType | Field::Category))) {
            return None;
        }
        self.aggregations
            .iter()
            .map(|a| match (a.operation, &a.field) {
                (Operation::Count, field) if field.counts_every_event() => Some(RolledUp::Events),
                (Operation::Count | Operation::Sum | Operation::Avg, Field::Data(path)) => {
                    let name = format!("data.{}", path.join("."));
                    summed.iter().position(|s| *s == name).map(RolledUp::Field)
                }
                _ => None,
            })
            .collect()
    }
}

/// What answers one aggregation from the rollups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolledUp {
    /// The cells' event counts.
    Events,
    /// The counters of the stream's summed field at this position.
    Field(usize),
}

/// A summed field's counters over some cells: values present, and their sum in millionths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSum {
    pub count: i64,
    pub millionths: i128,
}

impl Field {
    /// Fields every stored event has: `count` of them is the number of events.
    fn counts_every_event(&self) -> bool {
        matches!(self, Self::Event | Self::EventId | Self::EventType | Self::Timestamp)
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(field, "INVALID_TYPE", format!("expected {expected}, got {}", json_type_name(got)))
}

/// A body's `time_window` `{start, end}`: both RFC 3339, millisecond-rounded, end after start,
/// at most `max_days` apart (aggregates: [`MAX_WINDOW_DAYS`]; exports their own maximum).
pub fn parse_window(
    raw: Option<&Value>,
    max_days: i64,
    errors: &mut ValidationError,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let window = match raw {
        Some(Value::Object(window)) => window,
        Some(other) => {
            errors.push(type_error("time_window", "an object {start, end}", other));
            return None;
        }
        None => {
            errors.push(FieldError::new("time_window", "REQUIRED", "time_window {start, end} is required"));
            return None;
        }
    };
    let instant = |name: &str, errors: &mut ValidationError| {
        let field = format!("time_window.{name}");
        match window.get(name) {
            Some(Value::String(raw)) => crate::time::parse(&field, raw).map_err(|e| errors.push(e)).ok(),
            Some(other) => {
                errors.push(type_error(&field, "an RFC 3339 timestamp", other));
                None
            }
            None => {
                errors.push(FieldError::new(field, "REQUIRED", format!("time_window.{name} is required")));
                None
            }
        }
    };
    let (start, end) = (ceil_millis(instant("start", errors)?), ceil_millis(instant("end", errors)?));
    check_window_within("time_window.start", "time_window.end", &start, &end, max_days)
        .map_err(|e| errors.push(e))
        .ok()?;
    Some((start, end))
}

/// Stored timestamps have millisecond precision: a bound between two milliseconds is moved up to
/// the next one, which selects the same events (`t >= 0.0005` is `t >= 0.001`, `t < 0.0005` is
/// `t < 0.001`).
pub fn ceil_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub = t.timestamp_subsec_nanos() % 1_000_000;
    if sub == 0 {
        t
    } else {
        t + chrono::Duration::nanoseconds(i64::from(1_000_000 - sub))
    }
}

/// A window `[start, end)`: end after start, at most [`MAX_WINDOW_DAYS`] long.
pub fn check_window(
    start_field: &str,
    end_field: &str,
    start: &DateTime<Utc>,
    end: &DateTime<Utc>,
) -> Result<(), FieldError> {
    check_window_within(start_field, end_field, start, end, MAX_WINDOW_DAYS)
}

/// A window `[start, end)`: end after start, at most `max_days` long.
pub fn check_window_within(
    start_field: &str,
    end_field: &str,
    start: &DateTime<Utc>,
    end: &DateTime<Utc>,
    max_days: i64,
) -> Result<(), FieldError> {
    if end <= start {
        return Err(FieldError::new(
            end_field,
            "WINDOW_END_BEFORE_START",
            format!("{end_field} must be after {start_field} (the window is [start, end))"),
        ));
    }
    if *end - *start > chrono::Duration::days(max_days) {
        return Err(FieldError::new(end_field, "WINDOW_TOO_LARGE", format!("a window spans at most {max_days} days")));
    }
    Ok(())
}

fn parse_aggregations(raw: Option<&Value>, errors: &mut ValidationError) -> Option<Vec<Aggregation>> {
    let list = match raw {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_AGGREGATIONS => list,
        Some(Value::Array(list)) => {
            errors.push(FieldError::new(
                "aggregations",
                "INVALID_LENGTH",
                format!("1 to {MAX_AGGREGATIONS} aggregations, got {}", list.len()),
            ));
            return None;
        }
        Some(other) => {
            errors.push(type_error("aggregations", "an array of {field, operation}", other));
            return None;
        }
        None => {
            errors.push(FieldError::new("aggregations", "REQUIRED", "aggregations is required"));
            return None;
        }
    };
    let before = errors.errors.len();
    let mut parsed = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let at = |name: &str| format!("aggregations[{i}].{name}");
        let Value::Object(item) = item else {
            errors.push(type_error(&format!("aggregations[{i}]"), "an object {field, operation}", item));
            continue;
        };
        let operation = match item.get("operation") {
            Some(Value::String(raw)) => match Operation::parse(raw) {
                Some(op) => Some(op),
                None => {
                    errors.push(FieldError::new(
                        at("operation"),
                        "UNKNOWN_OPERATION",
                        format!("unknown operation {raw:?}: count, sum, avg, min, max or count_distinct"),
                    ));
                    None
                }
            },
            Some(other) => {
                errors.push(type_error(&at("operation"), "a string", other));
                None
            }
            None => {
                errors.push(FieldError::new(at("operation"), "REQUIRED", "operation is required"));
                None
            }
        };
        let field_name = match item.get("field") {
            Some(Value::String(raw)) => Some(raw.clone()),
            // `count` of events needs no field.
            None if operation == Some(Operation::Count) => Some("*".to_string()),
            Some(other) => {
                errors.push(type_error(&at("field"), "a string", other));
                None
            }
            None => {
                errors.push(FieldError::new(at("field"), "REQUIRED", "field is required"));
                None
            }
        };
        let (Some(operation), Some(field_name)) = (operation, field_name) else { continue };
        let field = match Field::parse(&at("field"), &field_name, operation == Operation::Count) {
            Ok(field) => field,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let numeric = matches!(operation, Operation::Sum | Operation::Avg)
            || (matches!(operation, Operation::Min | Operation::Max) && field != Field::Timestamp);
        if numeric && !field.may_be_numeric() {
            errors.push(FieldError::new(
                at("field"),
                "FIELD_NOT_NUMERIC",
                format!("{} needs a numeric field (data.<path>); {field_name} is text", operation.name()),
            ));
            continue;
        }
        parsed.push(Aggregation { field_name, field, operation });
    }
    (errors.errors.len() == before).then_some(parsed)
}

/// One aggregation's running state.
#[derive(Clone, Debug, Default)]
struct Accumulator {
    count: u64,
    /// The sum of values that are whole millionths, exactly (`rollup::millionths`) ...
    exact: i128,
    /// ... and of any others, as doubles.
    sum: f64,
    min: Option<Value>,
    max: Option<Value>,
    distinct: BTreeSet<String>,
}

impl Accumulator {
    /// Adds millionths to the exact sum; past `i128` (never, for sums of cells), as a double.
    fn add_exact(&mut self, millionths: i128, as_double: Option<f64>) {
        match self.exact.checked_add(millionths) {
            Some(sum) => self.exact = sum,
            None => self.sum += as_double.unwrap_or_else(|| crate::rollup::from_millionths(millionths)),
        }
    }

    fn total(&self) -> f64 {
        crate::rollup::from_millionths(self.exact) + self.sum
    }
}

/// Ordering of values for min/max: numbers by value, timestamps (strings) by text.
fn less(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x < y,
        _ => a.as_str().unwrap_or_default() < b.as_str().unwrap_or_default(),
    }
}

/// A row key: the interval bucket (epoch seconds) and the group value (`None`: no value).
pub type RowKey = (Option<i64>, Option<String>);

/// Folds raw events (DataStream's shape: `event_id`, `event_type`, `timestamp`, `category`,
/// `session_id`, `data`) into rows. A numeric aggregation over a value that is present and not
/// a number is an error naming the event.
#[derive(Debug, Default)]
pub struct Fold {
    rows: BTreeMap<RowKey, Vec<Accumulator>>,
    groups: BTreeSet<Option<String>>,
}

/// The text a group value is keyed by (strings as themselves, other JSON as JSON).
pub fn group_text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

impl Fold {
    /// The row's accumulators, created on first use within the group and row caps.
    fn row(&mut self, request: &AggregateRequest, key: RowKey) -> Result<&mut Vec<Accumulator>, FieldError> {
        if !self.rows.contains_key(&key) {
            if !self.groups.contains(&key.1) {
                if self.groups.len() >= MAX_GROUPS {
                    return Err(too_many_groups());
                }
                self.groups.insert(key.1.clone());
            }
            if self.rows.len() >= MAX_ROWS {
                return Err(too_many_rows());
            }
        }
        Ok(self.rows.entry(key).or_insert_with(|| vec![Accumulator::default(); request.aggregations.len()]))
    }

    pub fn add(&mut self, request: &AggregateRequest, event: &Value, epoch: i64) -> Result<(), FieldError> {
        let bucket = request.interval.map(|i| i.bucket(epoch));
        let group = match &request.group_by {
            Some((_, field)) => field.value(event).map(group_text),
            None => None,
        };
        let accumulators = self.row(request, (bucket, group))?;
        for (i, aggregation) in request.aggregations.iter().enumerate() {
            let Some(value) = aggregation.field.value(event) else { continue };
            let acc = &mut accumulators[i];
            match aggregation.operation {
                Operation::Count => acc.count += 1,
                Operation::CountDistinct => {
                    acc.distinct.insert(group_text(value));
                }
                Operation::Sum | Operation::Avg | Operation::Min | Operation::Max => {
                    let number = if aggregation.field == Field::Timestamp {
                        None
                    } else {
                        Some(value.as_f64().ok_or_else(|| {
                            FieldError::new(
                                format!("aggregations[{i}].field"),
                                "FIELD_NOT_NUMERIC",
                                format!(
                                    "{} of event {} is {}, not a number",
                                    aggregation.field_name,
                                    event.get("event_id").and_then(Value::as_str).unwrap_or("?"),
                                    json_type_name(value)
                                ),
                            )
                        })?)
                    };
                    acc.count += 1;
                    match value.as_number().and_then(crate::rollup::millionths) {
                        Some(m) if aggregation.field != Field::Timestamp => acc.add_exact(m, number),
                        _ => acc.sum += number.unwrap_or(0.0),
                    }
                    if acc.min.as_ref().is_none_or(|m| less(value, m)) {
                        acc.min = Some(value.clone());
                    }
                    if acc.max.as_ref().is_none_or(|m| less(m, value)) {
                        acc.max = Some(value.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds `n` events to the count aggregations of a row (the rollups' contribution).
    pub fn add_counts(&mut self, request: &AggregateRequest, key: RowKey, n: i64) -> Result<(), FieldError> {
        let plan = vec![RolledUp::Events; request.aggregations.len()];
        self.add_rollup(request, &plan, key, n, &[])
    }

    /// Adds cells to a row (the rollups' contribution): `n` events, and `sums[i]` of the
    /// stream's summed field `i`, each aggregation as `plan` says.
    pub fn add_rollup(
        &mut self,
        request: &AggregateRequest,
        plan: &[RolledUp],
        key: RowKey,
        n: i64,
        sums: &[FieldSum],
    ) -> Result<(), FieldError> {
        if n == 0 {
            // Cells whose events were all deleted or moved (their sums are 0 with them): no
            // row, so they take no place under the group and row caps the answer would not show.
            return Ok(());
        }
        let accumulators = self.row(request, key)?;
        for (acc, rolled) in accumulators.iter_mut().zip(plan) {
            match rolled {
                RolledUp::Events => acc.count = acc.count.saturating_add_signed(n),
                RolledUp::Field(i) => {
                    let sum = sums.get(*i).copied().unwrap_or_default();
                    acc.count = acc.count.saturating_add_signed(sum.count);
                    acc.add_exact(sum.millionths, None);
                }
            }
        }
        Ok(())
    }

    /// The answer's rows, in (bucket, group) order; rows whose counts are all zero (every event
    /// of a rollup cell deleted) are left out.
    pub fn rows(self, request: &AggregateRequest) -> Result<Vec<Value>, FieldError> {
        let rows: Vec<Value> = self
            .rows
            .into_iter()
            .filter(|(_, accs)| accs.iter().any(|a| a.count > 0 || !a.distinct.is_empty()))
            .map(|((bucket, group), accs)| {
                let mut row = Map::new();
                if request.group_by.is_some() {
                    row.insert("group".into(), group.map_or(Value::Null, Value::String));
                }
                if let Some(bucket) = bucket {
                    let start = DateTime::from_timestamp(bucket, 0).unwrap_or_default();
                    row.insert("interval_start".into(), json!(crate::time::format(&start)));
                }
                let values: Vec<Value> = request
                    .aggregations
                    .iter()
                    .zip(accs)
                    .map(|(aggregation, acc)| {
                        let value = match aggregation.operation {
                            Operation::Count => json!(acc.count),
                            Operation::CountDistinct => json!(acc.distinct.len()),
                            Operation::Sum => number(acc.total()),
                            Operation::Avg if acc.count == 0 => Value::Null,
                            Operation::Avg => json!(acc.total() / acc.count as f64),
                            Operation::Min => acc.min.unwrap_or(Value::Null),
                            Operation::Max => acc.max.unwrap_or(Value::Null),
                        };
                        json!({"field": aggregation.field_name, "operation": aggregation.operation.name(), "value": value})
                    })
                    .collect();
                row.insert("values".into(), Value::Array(values));
                Value::Object(row)
            })
            .collect();
        // Lambda answers at most 6 MB, with the body escaped once more inside its JSON.
        let bytes = serde_json::to_vec(&rows).map_or(usize::MAX, |b| b.len());
        if bytes > MAX_ANSWER_BYTES {
            return Err(FieldError::new(
                "aggregations",
                "ANSWER_TOO_LARGE",
                format!("the answer would be {bytes} bytes, over {MAX_ANSWER_BYTES}: fewer aggregations, groups or intervals"),
            ));
        }
        Ok(rows)
    }
}

fn too_many_rows() -> FieldError {
    FieldError::new(
        "group_by",
        "TOO_MANY_ROWS",
        format!("more than {MAX_ROWS} rows (groups × intervals); narrow the window, or a coarser interval"),
    )
}

fn too_many_groups() -> FieldError {
    FieldError::new(
        "group_by",
        "TOO_MANY_GROUPS",
        format!("more than {MAX_GROUPS} groups; narrow the window or group by another field"),
    )
}

/// A whole number as an integer, anything else as a float.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<AggregateRequest, ValidationError> {
        AggregateRequest::parse(&body)
    }

    fn base() -> Value {
        json!({
            "stream_id": "web",
            "time_window": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
            "aggregations": [{"field": "*", "operation": "count"}]
        })
    }

    fn code_of(body: Value) -> (String, &'static str) {
        let err = request(body).unwrap_err();
        (err.errors[0].field.clone(), err.errors[0].code)
    }

    #[test]
    fn parses_and_routes() {
        let counts = |body: Value| request(body).unwrap().rollup_plan(&[]).is_some();
        assert!(counts(base()));
        let mut body = base();
        body["group_by"] = json!("category");
        body["interval"] = json!("hour");
        assert!(counts(body.clone()));
        body["aggregations"] = json!([{"field": "data.amount", "operation": "sum"}]);
        assert!(!counts(body.clone()));
        body["aggregations"] = json!([{"operation": "count"}]);
        body["group_by"] = json!("data.plan");
        assert!(!counts(body));
        // Sums, averages and counts of a stream's summed fields come from the rollups too.
        let mut body = base();
        body["group_by"] = json!("event_type");
        body["aggregations"] = json!([
            {"field": "data.amount", "operation": "sum"},
            {"field": "data.amount", "operation": "avg"},
            {"field": "data.qty", "operation": "count"},
            {"operation": "count"}
        ]);
        let summing = request(body.clone()).unwrap();
        assert_eq!(
            summing.rollup_plan(&["data.qty", "data.amount"]),
            Some(vec![RolledUp::Field(1), RolledUp::Field(1), RolledUp::Field(0), RolledUp::Events])
        );
        assert_eq!(summing.rollup_plan(&["data.amount"]), None, "data.qty is not summed");
        assert_eq!(summing.rollup_plan(&[]), None);
        body["aggregations"] = json!([{"field": "data.amount", "operation": "max"}]);
        assert_eq!(request(body).unwrap().rollup_plan(&["data.amount"]), None, "max is not kept");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let mut body = base();
        body["aggregations"] = json!([{"field": "*", "operation": "median"}]);
        assert_eq!(code_of(body.clone()), ("aggregations[0].operation".into(), "UNKNOWN_OPERATION"));
        body["aggregations"] = json!([{"field": "event_type", "operation": "sum"}]);
        assert_eq!(code_of(body.clone()), ("aggregations[0].field".into(), "FIELD_NOT_NUMERIC"));
        body["aggregations"] = json!([{"field": "*", "operation": "avg"}]);
        assert_eq!(code_of(body.clone()).0, "aggregations[0].field");
        body = base();
        body["time_window"]["end"] = json!("2025-12-31T00:00:00Z");
        assert_eq!(code_of(body.clone()), ("time_window.end".into(), "WINDOW_END_BEFORE_START"));
        body["time_window"]["end"] = json!("2040-01-01T00:00:00Z");
        assert_eq!(code_of(body.clone()), ("time_window.end".into(), "WINDOW_TOO_LARGE"));
        body = base();
        body["interval"] = json!("minute");
        body["time_window"]["end"] = json!("2026-02-01T00:00:00Z");
        assert_eq!(code_of(body.clone()), ("interval".into(), "TOO_MANY_BUCKETS"));
        body["interval"] = json!("week");
        assert_eq!(code_of(body), ("interval".into(), "INVALID_INTERVAL"));
        assert_eq!(code_of(json!([])).1, "INVALID_TYPE");
        let mut body = base();
        body["filters"] = json!({});
        assert_eq!(code_of(body), ("filters".into(), "UNKNOWN_FIELD"));
        let mut body = base();
        body["group_by"] = json!("timestamp");
        assert_eq!(code_of(body), ("group_by".into(), "INVALID_GROUP_BY"));
    }

    #[test]
    fn folds() {
        let mut body = base();
        body["group_by"] = json!("event_type");
        body["aggregations"] = json!([
            {"operation": "count"},
            {"field": "data.n", "operation": "sum"},
            {"field": "data.n", "operation": "avg"},
            {"field": "data.n", "operation": "min"},
            {"field": "data.n", "operation": "max"},
            {"field": "data.user", "operation": "count_distinct"}
        ]);
        let request = request(body).unwrap();
        let mut fold = Fold::default();
        for (t, n, user) in [("a", 1, "x"), ("a", 5, "y"), ("a", 2, "x"), ("b", 7, "z")] {
            let event = json!({"event_id": "e", "event_type": t, "data": {"n": n, "user": user}});
            fold.add(&request, &event, 0).unwrap();
        }
        fold.add(&request, &json!({"event_id": "e", "event_type": "b", "data": {}}), 0).unwrap();
        let rows = fold.rows(&request).unwrap();
        let values =
            |row: &Value| row["values"].as_array().unwrap().iter().map(|v| v["value"].clone()).collect::<Vec<_>>();
        assert_eq!(rows[0]["group"], "a");
        assert_eq!(values(&rows[0]), vec![json!(3), json!(8), json!(8.0 / 3.0), json!(1), json!(5), json!(2)]);
        assert_eq!(values(&rows[1]), vec![json!(2), json!(7), json!(7.0), json!(7), json!(7), json!(1)]);
        let mut fold = Fold::default();
        let bad = json!({"event_id": "e9", "event_type": "a", "data": {"n": "ten"}});
        let err = fold.add(&request, &bad, 0).unwrap_err();
        assert_eq!(err.code, "FIELD_NOT_NUMERIC");
        assert!(err.message.contains("e9"));
    }

    #[test]
    fn groups_and_rows_are_capped_and_empty_cells_take_no_place() {
        let mut body = base();
        body["group_by"] = json!("event_type");
        let grouped = request(body.clone()).unwrap();
        let mut fold = Fold::default();
        // Cells that count nothing (every event deleted) make no group.
        for i in 0..5_000 {
            fold.add_counts(&grouped, (None, Some(format!("gone{i}"))), 0).unwrap();
        }
        for i in 0..MAX_GROUPS {
            fold.add_counts(&grouped, (None, Some(format!("t{i}"))), 1).unwrap();
        }
        let err = fold.add_counts(&grouped, (None, Some("one more".into())), 1).unwrap_err();
        assert_eq!((err.field.as_str(), err.code), ("group_by", "TOO_MANY_GROUPS"));
        // A raw fold meets the same cap.
        let mut fold = Fold::default();
        for i in 0..MAX_GROUPS {
            fold.add(&grouped, &json!({"event_id": "e", "event_type": format!("t{i}")}), 0).unwrap();
        }
        let err = fold.add(&grouped, &json!({"event_id": "e", "event_type": "t-last"}), 0).unwrap_err();
        assert_eq!(err.code, "TOO_MANY_GROUPS");
        // Rows: groups × interval buckets.
        body["interval"] = json!("minute");
        let series = request(body).unwrap();
        let mut fold = Fold::default();
        for i in 0..MAX_ROWS as i64 {
            fold.add_counts(&series, (Some(60 * (i / 100)), Some(format!("t{}", i % 100))), 1).unwrap();
        }
        let err = fold.add_counts(&series, (Some(60 * 1_000), Some("t0".into())), 1).unwrap_err();
        assert_eq!((err.field.as_str(), err.code), ("group_by", "TOO_MANY_ROWS"));
    }
}
