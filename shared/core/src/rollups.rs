//! Reading what the aggregator keeps: rollup cells over a window, and (for what cells cannot
//! answer) a stream's raw events over a window from its time index (GSI4).
//!
//! A window `[from, to)` splits into whole minutes, answered by cells (whole hours by hour
//! cells), and the partial minutes at its edges, answered by the raw events of those minutes.

use std::collections::BTreeMap;

use argus_models::rollup::{liveness, plan, DimKind, Level, Liveness, Segment, DAY};
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::ddb::{get_opt_s, s, Item};
use crate::deadline::WithinDeadline;
use crate::events::{epoch_now, NOT_EXPIRED};
use crate::keys::*;
use crate::{Backend, ServiceError};

/// Partition queries in flight at once.
const PARALLEL_QUERIES: usize = 16;

/// A counted cell as read: bucket start, its group value ("" for all events), count, and the
/// counters of each summed field asked for ([`CellQuery::fields`], in that order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellCount {
    pub level: Level,
    pub bucket: i64,
    pub value: String,
    pub n: i64,
    pub fields: Vec<FieldCounters>,
}

/// A summed field's counters in a cell (`rollup::field_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldCounters {
    /// Versions whose value was summable: the cell is complete for the field when this is `n`.
    pub versions: i128,
    pub values: i128,
    pub millionths: i128,
}

impl std::ops::AddAssign for FieldCounters {
    fn add_assign(&mut self, other: Self) {
        self.versions += other.versions;
        self.values += other.values;
        self.millionths += other.millionths;
    }
}

fn wide(item: &Item, name: &str) -> i128 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse::<i128>().unwrap_or(0),
        _ => 0,
    }
}

/// A cell item's count and the counters of `fields`.
fn counted(item: &Item, fields: &[usize]) -> (i64, Vec<FieldCounters>) {
    let n = i64::try_from(wide(item, "n")).unwrap_or(0);
    let counters = fields
        .iter()
        .map(|i| {
            let [versions, values, sum] = argus_models::rollup::field_counters(*i);
            FieldCounters { versions: wide(item, &versions), values: wide(item, &values), millionths: wide(item, &sum) }
        })
        .collect();
    (n, counters)
}

/// What a cell read needs: its key (bucket, retention, value), count and the fields' counters.
fn cell_attributes(fields: &[usize]) -> String {
    let mut attributes = vec!["SK".to_string(), "n".to_string()];
    for i in fields {
        attributes.extend(argus_models::rollup::field_counters(*i));
    }
    attributes.join(", ")
}

/// The whole-minute part of `[from, to)`, if any: `[ceil(from), floor(to))`.
pub fn whole_minutes(from: &DateTime<Utc>, to: &DateTime<Utc>) -> Option<(i64, i64)> {
    let start = from.timestamp_millis().div_euclid(60_000) * 60
        + i64::from(from.timestamp_millis().rem_euclid(60_000) > 0) * 60;
    let end = to.timestamp().div_euclid(60) * 60;
    (start < end).then_some((start, end))
}

fn at(epoch: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(epoch, 0).unwrap_or_default()
}

/// The partitions (and sort key ranges) holding `segment`'s cells, every sub-partition of each.
fn partitions(
    tenant: &str,
    stream: &str,
    kind: DimKind,
    segment: &Segment,
    sub_partitions: u32,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut start = segment.from;
    while start < segment.to {
        // Minute cells are partitioned by day, hour cells by month.
        let period_end = match segment.level {
            Level::Minute => (start.div_euclid(DAY) + 1) * DAY,
            Level::Hour => {
                let date = at(start);
                let (y, m) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map_or(segment.to, |d| d.timestamp())
            }
        };
        let end = period_end.min(segment.to);
        let last_bucket = end - segment.level.seconds();
        let pk = rollup_pk(tenant, stream, segment.level, kind, start);
        for sub_pk in crate::stream_stats::sub_pks(&pk, sub_partitions) {
            out.push((
                sub_pk,
                rollup_bucket_sk(segment.level, start),
                // '$' sorts after '#': every cell of the last bucket is included.
                format!("{}$", rollup_bucket_sk(segment.level, last_bucket)),
            ));
        }
        start = end;
    }
    out
}

/// Parses a cell's sort key `<bucket>#R<retention>#<value>`.
fn parse_cell_sk(level: Level, sk: &str) -> Option<(i64, Option<u32>, String)> {
    let width = match level {
        Level::Minute => 16,
        Level::Hour => 13,
    };
    let bucket_text = sk.get(..width)?;
    let padded = match level {
        Level::Minute => format!("{bucket_text}:00"),
        Level::Hour => format!("{bucket_text}:00:00"),
    };
    let bucket = NaiveDateTime::parse_from_str(&padded, "%Y-%m-%dT%H:%M:%S").ok()?.and_utc().timestamp();
    let rest = sk.get(width..)?.strip_prefix("#R")?;
    let retention = rest.get(..4)?;
    let value = rest.get(4..)?.strip_prefix('#')?.to_string();
    let retention = if retention == "----" { None } else { Some(retention.parse().ok()?) };
    Some((bucket, retention, value))
}

/// Which cells to count: one stream's cells of one dimension kind over the whole minutes
/// `[from, to)`, as visible at `now`.
#[derive(Clone, Copy, Debug)]
pub struct CellQuery<'a> {
    pub tenant: &'a str,
    pub stream: &'a str,
    /// The stream's counter sub-partitions (`stream_stats::sub_partitions`, read fresh).
    pub sub_partitions: u32,
    pub kind: DimKind,
    pub from: i64,
    pub to: i64,
    /// Minute cells only (a per-minute series); otherwise whole hours come from hour cells.
    pub minutes_only: bool,
    pub now: i64,
    /// The stream's summed fields (positions in its `rollup_fields`) whose counters to read.
    pub fields: &'a [usize],
}

impl<'a> CellQuery<'a> {
    /// All of a kind's cells over `[from, to)` as visible now, hour cells where whole hours
    /// allow, no summed fields: override `minutes_only` and `fields` with struct update.
    pub fn window(tenant: &'a str, stream: &'a str, shards: u32, kind: DimKind, from: i64, to: i64) -> Self {
        CellQuery {
            tenant,
            stream,
            sub_partitions: argus_models::stream::rollup_shards(shards),
            kind,
            from,
            to,
            minutes_only: false,
            now: argus_models::time::now().timestamp(),
            fields: &[],
        }
    }
}

/// The visible cell counts: hour cells for whole hours, minute cells elsewhere, and an hour
/// cell that is partly expired replaced by its minute cells.
pub async fn cell_counts(backend: &Backend, query: CellQuery<'_>) -> Result<Vec<CellCount>, ServiceError> {
    let CellQuery { tenant, stream, sub_partitions, kind, from, to, minutes_only, now, fields } = query;
    let attributes = cell_attributes(fields);
    let attributes = Some(attributes.as_str());
    // No event outside the stream's earliest and latest timestamps was ever counted (the
    // aggregator widens them before it counts), so the cells outside need no reading.
    let Some((earliest, latest)) = timestamp_span(backend, tenant, stream, sub_partitions).await? else {
        return Ok(Vec::new());
    };
    // Cells are summed below: a cell split over sub-partitions counts as its parts' sum.
    let (from, to) = (from.max(Level::Minute.bucket(earliest)), to.min(Level::Minute.bucket(latest) + 60));
    let segments = plan(from, to, !minutes_only);
    let mut ranges = Vec::new();
    for segment in &segments {
        for range in partitions(tenant, stream, kind, segment, sub_partitions) {
            ranges.push((segment.level, range));
        }
    }
    let pages: Vec<(Level, Vec<Item>)> = futures::stream::iter(ranges)
        .map(|(level, (pk, from, to))| async move {
            Ok::<_, ServiceError>((level, crate::stream_stats::range(backend, &pk, &from, &to, attributes).await?))
        })
        .buffer_unordered(PARALLEL_QUERIES)
        .try_collect()
        .await?;
    let mut counts = Vec::new();
    let mut partial_hours = Vec::new();
    for (level, items) in pages {
        for item in items {
            let Some((bucket, retention, value)) = get_opt_s(&item, SK).and_then(|sk| parse_cell_sk(level, sk)) else {
                continue;
            };
            match liveness(level, bucket, retention, now) {
                Liveness::Visible => {
                    let (n, fields) = counted(&item, fields);
                    counts.push(CellCount { level, bucket, value, n, fields });
                }
                Liveness::Expired => {}
                Liveness::Partial => partial_hours.push((bucket, retention)),
            }
        }
    }
    partial_hours.sort();
    partial_hours.dedup();
    for (hour, retention) in partial_hours {
        let segment = Segment { level: Level::Minute, from: hour, to: hour + 3_600 };
        for (pk, from, to) in partitions(tenant, stream, kind, &segment, sub_partitions) {
            for item in crate::stream_stats::range(backend, &pk, &from, &to, attributes).await? {
                let Some((bucket, cell_retention, value)) =
                    get_opt_s(&item, SK).and_then(|sk| parse_cell_sk(Level::Minute, sk))
                else {
                    continue;
                };
                if cell_retention != retention || liveness(Level::Minute, bucket, retention, now) != Liveness::Visible {
                    continue;
                }
                let (n, fields) = counted(&item, fields);
                counts.push(CellCount { level: Level::Minute, bucket, value, n, fields });
            }
        }
    }
    Ok(counts)
}

/// The earliest and latest event timestamps (epoch seconds) the aggregator has seen in the
/// stream; `None` before its first event.
async fn timestamp_span(
    backend: &Backend,
    tenant: &str,
    stream: &str,
    sub_partitions: u32,
) -> Result<Option<(i64, i64)>, ServiceError> {
    let total = crate::stream_stats::merged_stats_in(backend, tenant, stream, sub_partitions, STATS_TOTAL).await?;
    let epoch = |name: &str| {
        let raw = total.as_ref().and_then(|item| get_opt_s(item, name))?;
        argus_models::time::parse(name, raw).ok().map(|t| t.timestamp())
    };
    Ok(epoch("earliest_timestamp").zip(epoch("latest_timestamp")))
}

/// How much a raw read may take.
#[derive(Clone, Copy, Debug)]
pub struct RawLimits {
    pub max_events: u64,
    pub max_bytes: u64,
}

#[derive(Debug)]
pub enum RawError {
    /// Past [`RawLimits`]: the caller says which limit in its answer.
    Limit,
    Service(ServiceError),
}

/// Which raw events of a stream to read.
#[derive(Clone, Debug)]
pub struct RawWindow<'a> {
    pub tenant: &'a str,
    pub stream: &'a str,
    /// The stream's `write_shards` (read fresh by the caller).
    pub shards: u32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub event_type: Option<&'a str>,
}

impl RawWindow<'_> {
    fn partitions(&self) -> Vec<String> {
        stream_event_partitions(self.tenant, self.stream, self.shards)
    }

    /// `GSI4SK BETWEEN "<from>" AND "<to>"` is exactly `[from, to)`: `"<to>#id"` sorts after `"<to>"`.
    fn bounds(&self) -> (String, String) {
        (argus_models::time::format(&self.from), argus_models::time::format(&self.to))
    }

    fn query(
        &self,
        backend: &Backend,
        partition: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let (from, to) = self.bounds();
        let mut filter = format!("attribute_not_exists(#deleted) AND {NOT_EXPIRED}");
        if self.event_type.is_some() {
            filter.push_str(" AND #name = :name");
        }
        let mut query = backend
            .dynamodb
            .query()
            .table_name(&backend.table)
            .index_name(GSI4)
            .key_condition_expression("GSI4PK = :pk AND GSI4SK BETWEEN :from AND :to")
            .filter_expression(filter)
            .expression_attribute_names("#deleted", "deleted_at")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":epoch", epoch_now())
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to));
        if let Some(name) = self.event_type {
            query = query.expression_attribute_names("#name", "name").expression_attribute_values(":name", s(name));
        }
        query
    }

    /// Hands every visible event of the window (not deleted, not expired) to `on_page`, a page
    /// at a time as the shards answer (read in parallel), so memory holds one page per shard
    /// and the fold's state, never the window. `projection`: the attributes to read (all when
    /// `None`). Stops with [`RawError::Limit`] past `limits`.
    pub async fn fold_pages<F>(
        &self,
        backend: &Backend,
        projection: Option<&[&str]>,
        limits: RawLimits,
        mut on_page: F,
    ) -> Result<u64, RawError>
    where
        F: FnMut(Vec<Item>) -> Result<(), ServiceError>,
    {
        let shards = self.partitions().into_iter().map(|partition| {
            futures::stream::unfold(Some(None), move |next: Option<Option<Item>>| {
                let partition = partition.clone();
                async move {
                    let start_key = next?;
                    let mut query = self.query(backend, &partition).set_exclusive_start_key(start_key);
                    if let Some(attributes) = projection {
                        let names: Vec<String> = (0..attributes.len()).map(|i| format!("#p{i}")).collect();
                        for (name, attribute) in names.iter().zip(attributes) {
                            query = query.expression_attribute_names(name, *attribute);
                        }
                        query = query.projection_expression(names.join(", "));
                    }
                    let page = match query.send().within_deadline().await {
                        Ok(Ok(out)) => out,
                        Ok(Err(err)) => return Some((Err(ServiceError::from_sdk("dynamodb", err)), None)),
                        Err(err) => return Some((Err(err), None)),
                    };
                    let next = page.last_evaluated_key.map(Some);
                    Some((Ok(page.items.unwrap_or_default()), next))
                }
            })
            .boxed()
        });
        let mut pages = futures::stream::select_all(shards);
        let (mut events, mut bytes) = (0u64, 0u64);
        while let Some(page) = pages.next().await {
            let page = page.map_err(RawError::Service)?;
            events += page.len() as u64;
            bytes += page.iter().map(|item| crate::ddb::response_bytes(item) as u64).sum::<u64>();
            if events > limits.max_events || bytes > limits.max_bytes {
                return Err(RawError::Limit);
            }
            on_page(page).map_err(RawError::Service)?;
        }
        Ok(events)
    }

    /// The number of visible events in the window (`Select: COUNT`: nothing is transferred,
    /// though DynamoDB still reads the window's events). Stops with [`RawError::Limit`] once
    /// more than `max_events` are counted.
    pub async fn count(&self, backend: &Backend, max_events: u64) -> Result<u64, RawError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let counted = &AtomicU64::new(0);
        futures::stream::iter(self.partitions())
            .map(|partition| async move {
                let mut start_key = None;
                loop {
                    let out = self
                        .query(backend, &partition)
                        .select(Select::Count)
                        .set_exclusive_start_key(start_key.take())
                        .send()
                        .within_deadline()
                        .await
                        .map_err(RawError::Service)?
                        .map_err(|e| RawError::Service(ServiceError::from_sdk("dynamodb", e)))?;
                    let n = u64::try_from(out.count).unwrap_or(0);
                    if counted.fetch_add(n, Ordering::Relaxed) + n > max_events {
                        return Err(RawError::Limit);
                    }
                    match out.last_evaluated_key {
                        Some(key) => start_key = Some(key),
                        None => return Ok(()),
                    }
                }
            })
            .buffer_unordered(self.shards.clamp(1, 16) as usize)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(counted.load(Ordering::Relaxed))
    }
}

/// The partial-minute edges of `[from, to)` (read raw): the whole window when it has no whole
/// minute.
pub fn edges(from: &DateTime<Utc>, to: &DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    match whole_minutes(from, to) {
        None => vec![(*from, *to)],
        Some((start, end)) => {
            let mut out = Vec::new();
            if *from < at(start) {
                out.push((*from, at(start)));
            }
            if at(end) < *to {
                out.push((at(end), *to));
            }
            out
        }
    }
}

/// Cells added up: their count, and each summed field's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellSums {
    pub n: i64,
    pub fields: Vec<FieldCounters>,
}

/// The cells added up per (interval bucket or none, value).
pub fn sum_cells(
    cells: &[CellCount],
    interval: Option<argus_models::analytics::Interval>,
) -> BTreeMap<(Option<i64>, String), CellSums> {
    let mut sums: BTreeMap<(Option<i64>, String), CellSums> = BTreeMap::new();
    for cell in cells {
        let bucket = interval.map(|i| i.bucket(cell.bucket));
        let entry = sums.entry((bucket, cell.value.clone())).or_default();
        entry.n += cell.n;
        entry.fields.resize(cell.fields.len(), FieldCounters::default());
        for (into, from) in entry.fields.iter_mut().zip(&cell.fields) {
            *into += *from;
        }
    }
    sums
}

/// Whether every cell summed each field of every event version it counts: only then do the
/// cells' sums answer for those fields (a cell counting versions stamped before a field
/// existed, or values that are not whole millionths, is answered from raw events). Checked
/// per cell, its sub-partitions added up: a shortfall in one cell can never be hidden by
/// another cell's excess.
pub fn fields_complete(cells: &[CellCount]) -> bool {
    let mut merged: BTreeMap<(Level, i64, &str), (i128, Vec<i128>)> = BTreeMap::new();
    for cell in cells {
        let (n, versions) = merged.entry((cell.level, cell.bucket, cell.value.as_str())).or_default();
        *n += i128::from(cell.n);
        versions.resize(cell.fields.len(), 0);
        for (into, field) in versions.iter_mut().zip(&cell.fields) {
            *into += field.versions;
        }
    }
    merged.values().all(|(n, versions)| versions.iter().all(|k| k == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(raw: &str) -> DateTime<Utc> {
        argus_models::time::parse("t", raw).unwrap()
    }

    #[test]
    fn windows_split_into_whole_minutes_and_edges() {
        let (from, to) = (t("2026-01-01T00:00:30Z"), t("2026-01-01T00:05:10Z"));
        let (start, end) = whole_minutes(&from, &to).unwrap();
        assert_eq!((at(start), at(end)), (t("2026-01-01T00:01:00Z"), t("2026-01-01T00:05:00Z")));
        assert_eq!(edges(&from, &to), vec![(from, at(start)), (at(end), to)]);
        let aligned = (t("2026-01-01T00:00:00Z"), t("2026-01-01T01:00:00Z"));
        assert!(edges(&aligned.0, &aligned.1).is_empty());
        let inside = (t("2026-01-01T00:00:10Z"), t("2026-01-01T00:00:50Z"));
        assert!(whole_minutes(&inside.0, &inside.1).is_none());
        assert_eq!(edges(&inside.0, &inside.1), vec![inside]);
        let ms = (t("2026-01-01T00:00:00.001Z"), t("2026-01-01T00:02:00Z"));
        assert_eq!(at(whole_minutes(&ms.0, &ms.1).unwrap().0), t("2026-01-01T00:01:00Z"));
    }

    #[test]
    fn partitions_follow_days_and_months() {
        let minutes = Segment { level: Level::Minute, from: DAY - 120, to: DAY + 120 };
        let parts = partitions("t", "s", DimKind::All, &minutes, 1);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1, "1970-01-01T23:58");
        assert_eq!(parts[0].2, "1970-01-01T23:59$");
        assert_eq!(parts[1].2, "1970-01-02T00:01$");
        let from = t("2026-01-15T00:00:00Z").timestamp();
        let to = t("2026-03-02T00:00:00Z").timestamp();
        let hours = partitions("t", "s", DimKind::EventType, &Segment { level: Level::Hour, from, to }, 1);
        assert_eq!(hours.len(), 3);
        assert!(hours[1].0.ends_with("#HE#2026-02"));
        assert_eq!(hours[2].2, "2026-03-01T23$");
    }

    #[test]
    fn fields_are_complete_only_when_every_cell_summed_every_version() {
        let cell = |bucket: i64, value: &str, n: i64, versions: i128| CellCount {
            level: Level::Minute,
            bucket,
            value: value.into(),
            n,
            fields: vec![FieldCounters { versions, values: versions, millionths: 0 }],
        };
        assert!(fields_complete(&[cell(0, "", 3, 3), cell(60, "", 2, 2)]));
        assert!(fields_complete(&[]));
        // Split over sub-partitions: added up first (an insert in one, its removal in another).
        assert!(fields_complete(&[cell(0, "", 1, 0), cell(0, "", -1, 0), cell(0, "", 2, 2)]));
        assert!(!fields_complete(&[cell(0, "", 3, 2)]));
        // One cell short, another over: the totals match, the answer must not.
        assert!(!fields_complete(&[cell(0, "", 3, 2), cell(60, "", 1, 2)]));
        assert!(!fields_complete(&[cell(0, "a", 1, 0), cell(0, "b", 1, 2)]));
    }

    #[test]
    fn cell_keys_round_trip() {
        let bucket = t("2026-05-06T07:08:00Z").timestamp();
        let sk = rollup_sk(Level::Minute, bucket, Some(90), "a#b");
        assert_eq!(parse_cell_sk(Level::Minute, &sk), Some((bucket, Some(90), "a#b".to_string())));
        let hour = t("2026-05-06T07:00:00Z").timestamp();
        let sk = rollup_sk(Level::Hour, hour, None, "");
        assert_eq!(parse_cell_sk(Level::Hour, &sk), Some((hour, None, String::new())));
    }
}
