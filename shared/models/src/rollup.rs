//! Rollups: per-stream counts of visible events by minute and by hour, overall, per event type
//! and per category, kept by the aggregator from the table's change stream. Pure: which rollup
//! cells one change of an event (old version → new version) moves, and how a time window is
//! answered from cells. Storage keys live in the core crate.
//!
//! A cell also carries the retention its events were stored with: an event expires at the end
//! of its minute plus `retention_days` (`stream::expires_at`), so all events of one minute cell
//! expire together, and a cell is either wholly visible or wholly expired.

use std::collections::BTreeMap;

pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Minute,
    Hour,
}

impl Level {
    pub fn seconds(self) -> i64 {
        match self {
            Level::Minute => MINUTE,
            Level::Hour => HOUR,
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Level::Minute => "M",
            Level::Hour => "H",
        }
    }

    /// Start (epoch seconds) of the bucket holding `epoch`.
    pub fn bucket(self, epoch: i64) -> i64 {
        epoch.div_euclid(self.seconds()) * self.seconds()
    }
}

/// What a cell counts: all events, or those of one event type or one category.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    All,
    EventType(String),
    Category(String),
}

/// The dimension a query groups by (the kind of `Dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DimKind {
    All,
    EventType,
    Category,
}

impl DimKind {
    pub fn tag(self) -> &'static str {
        match self {
            DimKind::All => "A",
            DimKind::EventType => "E",
            DimKind::Category => "C",
        }
    }
}

impl Dim {
    pub fn kind(&self) -> DimKind {
        match self {
            Dim::All => DimKind::All,
            Dim::EventType(_) => DimKind::EventType,
            Dim::Category(_) => DimKind::Category,
        }
    }

    /// The group's value ("" for all events).
    pub fn value(&self) -> &str {
        match self {
            Dim::All => "",
            Dim::EventType(v) | Dim::Category(v) => v,
        }
    }
}

/// What the aggregator knows of one stored version of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFacts {
    pub tenant: String,
    pub stream: String,
    pub event_type: String,
    pub category: Option<String>,
    /// The event's timestamp, epoch seconds.
    pub timestamp: i64,
    /// `None`: stored before streams had settings, never expires.
    pub retention_days: Option<u32>,
    pub deleted: bool,
}

/// One rollup counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    pub tenant: String,
    pub stream: String,
    pub level: Level,
    /// Bucket start, epoch seconds.
    pub bucket: i64,
    pub retention_days: Option<u32>,
    pub dim: Dim,
}

impl Cell {
    /// When the last event this cell counts expires (the cell's own TTL).
    pub fn expires_at(&self) -> Option<i64> {
        self.retention_days.map(|days| self.bucket + self.level.seconds() + i64::from(days) * DAY)
    }
}

/// The retention an event was stored with, from its `expires_at` and timestamp.
pub fn retention_of(timestamp: i64, expires_at: Option<i64>) -> Option<u32> {
    let expires_at = expires_at?;
    let minute_end = Level::Minute.bucket(timestamp) + MINUTE;
    u32::try_from((expires_at - minute_end).div_euclid(DAY)).ok()
}

/// The six cells one stored version of an event counts in (minute and hour; all, its type,
/// its category).
pub fn cells_of(facts: &EventFacts) -> Vec<Cell> {
    // An event without a category counts in the category cell "" (no category is ever empty):
    // grouping by category reads one kind of cell, "no category" included.
    let dims =
        [Dim::All, Dim::EventType(facts.event_type.clone()), Dim::Category(facts.category.clone().unwrap_or_default())];
    let mut cells = Vec::with_capacity(dims.len() * 2);
    for level in [Level::Minute, Level::Hour] {
        for dim in &dims {
            cells.push(Cell {
                tenant: facts.tenant.clone(),
                stream: facts.stream.clone(),
                level,
                bucket: level.bucket(facts.timestamp),
                retention_days: facts.retention_days,
                dim: dim.clone(),
            });
        }
    }
    cells
}

/// The count changes of one change of an event: its old version (if any, and not soft-deleted)
/// leaves its cells, its new version (if any, and not soft-deleted) enters its own. Cells whose
/// changes cancel out are left out.
pub fn cell_deltas(old: Option<&EventFacts>, new: Option<&EventFacts>) -> BTreeMap<Cell, i64> {
    let mut deltas = BTreeMap::new();
    for (facts, sign) in [(old, -1), (new, 1)] {
        let Some(facts) = facts.filter(|f| !f.deleted) else { continue };
        for cell in cells_of(facts) {
            *deltas.entry(cell).or_insert(0) += sign;
        }
    }
    deltas.retain(|_, delta| *delta != 0);
    deltas
}

/// How much of a cell counts at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Visible,
    Expired,
    /// An hour cell whose minutes expire during `now`'s minute range: read its minute cells.
    Partial,
}

pub fn liveness(level: Level, bucket: i64, retention_days: Option<u32>, now: i64) -> Liveness {
    let Some(days) = retention_days else { return Liveness::Visible };
    let keep = i64::from(days) * DAY;
    // A minute starting at m expires at m + 60 + keep.
    let first_expiry = bucket + MINUTE + keep;
    let last_expiry = bucket + level.seconds() + keep;
    if first_expiry > now {
        Liveness::Visible
    } else if last_expiry <= now {
        Liveness::Expired
    } else {
        Liveness::Partial
    }
}

/// A run of buckets of one level, `[from, to)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub level: Level,
    pub from: i64,
    pub to: i64,
}

/// Covers the minute-aligned window `[from, to)` with as few cells as possible: whole hours
/// from hour cells, the minutes before the first and after the last whole hour from minute
/// cells. `hours: false` (a per-minute series) reads minute cells only.
pub fn plan(from: i64, to: i64, hours: bool) -> Vec<Segment> {
    if from >= to {
        return Vec::new();
    }
    let first_hour = Level::Hour.bucket(from + HOUR - 1);
    let last_hour = Level::Hour.bucket(to);
    if !hours || first_hour >= last_hour {
        return vec![Segment { level: Level::Minute, from, to }];
    }
    let mut segments = Vec::new();
    if from < first_hour {
        segments.push(Segment { level: Level::Minute, from, to: first_hour });
    }
    segments.push(Segment { level: Level::Hour, from: first_hour, to: last_hour });
    if last_hour < to {
        segments.push(Segment { level: Level::Minute, from: last_hour, to });
    }
    segments
}

/// Summed values are kept in millionths of a unit, as integers: a sum of them is exact, in
/// any order, and never drifts the way adding binary floats does.
pub const SUM_SCALE: i128 = 1_000_000;
/// Largest magnitude summed: a cell's sum of millionths then stays far inside DynamoDB's 38
/// digits and `i128` for any count of events a cell can hold.
const MAX_SUMMED: f64 = 1e20;

/// A JSON number as a whole count of millionths, when it is one exactly (at most 6 decimals,
/// below 10^20 in magnitude).
pub fn millionths(number: &serde_json::Number) -> Option<i128> {
    if let Some(whole) = number.as_i64() {
        return i128::from(whole).checked_mul(SUM_SCALE);
    }
    if let Some(whole) = number.as_u64() {
        return i128::from(whole).checked_mul(SUM_SCALE);
    }
    let value = number.as_f64()?;
    if !value.is_finite() || value.abs() >= MAX_SUMMED {
        return None;
    }
    // Display prints the shortest decimal that reads back as the same double, without an
    // exponent: the client's decimal up to 15 significant digits (the double's own beyond).
    let text = value.abs().to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if fraction.len() > 6 {
        return None;
    }
    let scaled = whole.parse::<i128>().ok()? * SUM_SCALE + format!("{fraction:0<6}").parse::<i128>().ok()?;
    Some(if value < 0.0 { -scaled } else { scaled })
}

/// The double nearest to `millionths` / 10^6.
pub fn from_millionths(millionths: i128) -> f64 {
    let sign = if millionths < 0 { "-" } else { "" };
    let magnitude = millionths.unsigned_abs();
    let scale = SUM_SCALE.unsigned_abs();
    format!("{sign}{}.{:06}", magnitude / scale, magnitude % scale).parse().unwrap_or(f64::NAN)
}

/// What one version of an event adds to a summed field at `path` in its `data`:
/// `Some((has a number, its millionths))`, or `None` when its value cannot be summed exactly
/// (not a number, or not a whole count of millionths): cells that count such a version are
/// incomplete for the field, and readers fold raw events instead.
pub fn field_contribution(data: Option<&serde_json::Value>, path: &[String]) -> Option<(bool, i128)> {
    let value = data.and_then(|data| path.iter().try_fold(data, |v, segment| v.get(segment)));
    match value {
        None | Some(serde_json::Value::Null) => Some((false, 0)),
        Some(serde_json::Value::Number(number)) => millionths(number).map(|m| (true, m)),
        Some(_) => None,
    }
}

/// The counters of summed field `i` in a cell: versions whose value was summable (a cell is
/// complete for the field when this equals its `n`), values present, and their sum in millionths.
pub fn field_counters(i: usize) -> [String; 3] {
    [format!("k{i}"), format!("c{i}"), format!("s{i}")]
}

/// Buckets of the request-to-store lag histogram: bucket `i` holds lags below `2^i` ms
/// (bucket 0: under 1 ms), the last one everything from 2^(N-2) ms up.
pub const LAG_BUCKETS: usize = 24;

pub fn lag_bucket(lag_ms: i64) -> usize {
    if lag_ms < 1 {
        return 0;
    }
    let bits = 64 - (lag_ms as u64).leading_zeros() as usize;
    bits.min(LAG_BUCKETS - 1)
}

/// The upper bound (seconds) of the bucket holding the `q` quantile: a p95 that is at most
/// twice the true value, never below it.
pub fn lag_quantile_seconds(histogram: &[u64], q: f64) -> Option<f64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some((1u64 << bucket) as f64 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(timestamp: i64, event_type: &str, category: Option<&str>) -> EventFacts {
        EventFacts {
            tenant: "t".into(),
            stream: "s".into(),
            event_type: event_type.into(),
            category: category.map(str::to_string),
            timestamp,
            retention_days: Some(90),
            deleted: false,
        }
    }

    #[test]
    fn an_insert_counts_once_per_level_and_dimension() {
        let deltas = cell_deltas(None, Some(&facts(3_700, "click", Some("ui"))));
        assert_eq!(deltas.len(), 6);
        assert!(deltas.values().all(|d| *d == 1));
        let buckets: Vec<i64> = deltas.keys().map(|c| c.bucket).collect();
        assert!(buckets.contains(&3_660) && buckets.contains(&3_600));
        let uncategorised = cell_deltas(None, Some(&facts(3_700, "click", None)));
        assert!(uncategorised.keys().any(|c| c.dim == Dim::Category(String::new())));
    }

    #[test]
    fn updates_move_and_deletes_remove() {
        let old = facts(3_700, "click", Some("ui"));
        // Same cells: nothing moves.
        assert!(cell_deltas(Some(&old), Some(&old)).is_empty());
        let renamed = EventFacts { event_type: "tap".into(), ..old.clone() };
        let deltas = cell_deltas(Some(&old), Some(&renamed));
        assert_eq!(deltas.values().filter(|d| **d == -1).count(), 2);
        assert_eq!(deltas.values().filter(|d| **d == 1).count(), 2);
        let deleted = EventFacts { deleted: true, ..old.clone() };
        assert!(cell_deltas(Some(&old), Some(&deleted)).values().all(|d| *d == -1));
        assert!(cell_deltas(Some(&deleted), Some(&old)).values().all(|d| *d == 1));
        assert!(cell_deltas(Some(&deleted), Some(&deleted)).is_empty());
        assert_eq!(cell_deltas(Some(&old), None).len(), 6);
    }

    #[test]
    fn retention_and_liveness() {
        let ts = 10 * DAY + 125;
        let expires = crate::stream::expires_at(&chrono::DateTime::from_timestamp(ts, 0).unwrap(), 7);
        assert_eq!(retention_of(ts, Some(expires)), Some(7));
        assert_eq!(retention_of(ts, None), None);
        let minute = Level::Minute.bucket(ts);
        assert_eq!(liveness(Level::Minute, minute, Some(7), expires - 1), Liveness::Visible);
        assert_eq!(liveness(Level::Minute, minute, Some(7), expires), Liveness::Expired);
        let hour = Level::Hour.bucket(ts);
        assert_eq!(liveness(Level::Hour, hour, Some(7), hour + 7 * DAY + 60 - 1), Liveness::Visible);
        assert_eq!(liveness(Level::Hour, hour, Some(7), hour + 7 * DAY + 60), Liveness::Partial);
        assert_eq!(liveness(Level::Hour, hour, Some(7), hour + 7 * DAY + HOUR), Liveness::Expired);
        assert_eq!(liveness(Level::Hour, hour, None, i64::MAX), Liveness::Visible);
    }

    #[test]
    fn plans_cover_the_window_exactly() {
        let seg = |level, from, to| Segment { level, from, to };
        assert_eq!(plan(60, 600, true), vec![seg(Level::Minute, 60, 600)]);
        assert_eq!(
            plan(3_540, 3 * HOUR + 120, true),
            vec![
                seg(Level::Minute, 3_540, HOUR),
                seg(Level::Hour, HOUR, 3 * HOUR),
                seg(Level::Minute, 3 * HOUR, 3 * HOUR + 120)
            ]
        );
        assert_eq!(plan(HOUR, 2 * HOUR, true), vec![seg(Level::Hour, HOUR, 2 * HOUR)]);
        assert_eq!(plan(HOUR, 3 * HOUR, false), vec![seg(Level::Minute, HOUR, 3 * HOUR)]);
        assert!(plan(60, 60, true).is_empty());
    }

    #[test]
    fn sums_are_kept_exactly_in_millionths() {
        let m = |v: serde_json::Value| millionths(v.as_number().unwrap());
        assert_eq!(m(serde_json::json!(12)), Some(12_000_000));
        assert_eq!(m(serde_json::json!(-3)), Some(-3_000_000));
        assert_eq!(m(serde_json::json!(0.1)), Some(100_000));
        assert_eq!(m(serde_json::json!(-19.99)), Some(-19_990_000));
        assert_eq!(m(serde_json::json!(0.000001)), Some(1));
        assert_eq!(m(serde_json::json!(0.0000001)), None, "a seventh decimal");
        assert_eq!(m(serde_json::json!(1e19)), Some(10_000_000_000_000_000_000_000_000));
        assert_eq!(m(serde_json::json!(1e21)), None);
        assert_eq!(m(serde_json::json!(u64::MAX)), Some(i128::from(u64::MAX) * SUM_SCALE));
        // 0.1 + 0.2 in millionths is 0.3 exactly (as doubles it is 0.30000000000000004).
        assert_eq!(from_millionths(100_000 + 200_000), 0.3);
        assert_eq!(from_millionths(-19_990_000), -19.99);
        assert_eq!(from_millionths(1), 0.000001);
        let data = serde_json::json!({"a": {"b": 2.5}, "s": "x", "n": null});
        let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(field_contribution(Some(&data), &path("a.b")), Some((true, 2_500_000)));
        assert_eq!(field_contribution(Some(&data), &path("missing")), Some((false, 0)));
        assert_eq!(field_contribution(Some(&data), &path("n")), Some((false, 0)));
        assert_eq!(field_contribution(None, &path("a")), Some((false, 0)));
        assert_eq!(field_contribution(Some(&data), &path("s")), None);
        assert_eq!(field_contribution(Some(&data), &path("a")), None, "an object is not a number");
        assert_eq!(field_counters(3), ["k3", "c3", "s3"]);
    }

    #[test]
    fn lag_histogram() {
        assert_eq!(lag_bucket(0), 0);
        assert_eq!(lag_bucket(1), 1);
        assert_eq!(lag_bucket(3), 2);
        assert_eq!(lag_bucket(i64::MAX), LAG_BUCKETS - 1);
        let mut histogram = vec![0u64; LAG_BUCKETS];
        histogram[lag_bucket(20)] += 95;
        histogram[lag_bucket(5_000)] += 5;
        assert_eq!(lag_quantile_seconds(&histogram, 0.95), Some(0.032));
        assert_eq!(lag_quantile_seconds(&histogram, 0.99), Some(8.192));
        assert_eq!(lag_quantile_seconds(&[0; 3], 0.95), None);
    }
}
