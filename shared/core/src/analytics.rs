//! DataStream's analytics: `GET /streams/{id}/status`, `GET /query/events` and
//! `POST /query/aggregate`, answered from the rollups and arrival statistics the aggregator
//! keeps, and from a bounded read of raw events where those cannot answer.

use std::collections::BTreeMap;

use argus_models::analytics::{
    ceil_millis, check_window, AggregateRequest, Field, FieldSum, Fold, Interval, RolledUp, MAX_RAW_BYTES,
    MAX_RAW_EVENTS, MAX_WINDOW_DAYS,
};
use argus_models::rollup::{self, DimKind, Level, LAG_BUCKETS};
use argus_models::stream::check_stream_id;
use argus_models::{time, FieldError};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aggregator::lag_histogram;
use crate::ddb::{get_n, get_opt_s, query_sharded_desc, s, Filter, Item, ListQuery};
use crate::events::{epoch_now, NOT_EXPIRED};
use crate::keys::*;
use crate::rollups::{
    cell_counts, edges, fields_complete, sum_cells, whole_minutes, CellQuery, RawError, RawLimits, RawWindow,
};
use crate::{cursor, Backend, ServiceError};

/// A stream is `active` when an event arrived within this many seconds.
const ACTIVE_SECONDS: i64 = 300;
/// Largest `offset` of `GET /query/events`: past it, the cursor pages on.
pub const MAX_OFFSET: usize = 10_000;
/// Pages an `offset` may skip through (each a bounded read of every shard): a filter that
/// matches few events would otherwise read the stream until `offset` of them turn up.
const MAX_OFFSET_PAGES: usize = 20;
/// Events of the partial minutes at a window's edges, which are read (or counted) one by one
/// where the rollups answer whole minutes: past this, a 400 asks for whole-minute bounds.
pub const MAX_EDGE_EVENTS: u64 = 100_000;

/// A stored event in DataStream's shape.
pub fn datastream_event(item: &Item) -> Result<Value, ServiceError> {
    let event = crate::events::event_from_item(item)?;
    Ok(json!({
        "event_id": event.id,
        "stream_id": event.stream,
        "timestamp": event.timestamp,
        "event_type": event.name,
        "category": event.category,
        "session_id": event.session_id,
        "data": event.data,
        "metadata": event.metadata,
    }))
}

fn epoch_of(event: &Value) -> i64 {
    event["timestamp"].as_str().and_then(|t| time::parse("timestamp", t).ok()).map_or(0, |t| t.timestamp())
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCounts {
    pub total: u64,
    pub last_hour: u64,
}

/// `GET /streams/{id}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub stream_id: String,
    /// `active` when an event arrived in the last 5 minutes, else `idle`.
    pub status: &'static str,
    /// Events stored in this stream, ever (exact: each stored event counted once).
    pub events_processed: u64,
    /// Events stored per second over the last 60 s.
    pub processing_rate: f64,
    /// When the latest event arrived (`received_at`).
    pub last_event_timestamp: Option<String>,
    /// p95 of received → stored over the last 5 minutes, as the upper bound of its
    /// power-of-two millisecond bucket (at most twice the true value).
    pub lag_seconds: Option<f64>,
    pub errors: ErrorCounts,
    pub measured_at: String,
}

/// A few reads: the stream's item (404 if no event named it), then, per counter sub-partition
/// (one below 16 write shards), its totals and its last hour of per-minute statistics.
pub async fn status(backend: &Backend, tenant: &str, raw_id: &str) -> Result<StreamStatus, ServiceError> {
    let stream = crate::streams::get(backend, tenant, raw_id).await?;
    let sub_partitions = argus_models::stream::rollup_shards(stream.write_shards);
    let stream = stream.stream_id;
    let now = time::now();
    let pk = stream_stats_pk(tenant, &stream);
    let minute_now = Level::Minute.bucket(now.timestamp());
    let hour_ago = minute_now - 59 * 60;
    let (from, to) = (stream_stats_minute_sk(hour_ago), stream_stats_minute_sk(minute_now));
    let (total, minutes) = tokio::try_join!(
        crate::stream_stats::merged_range(backend, &pk, sub_partitions, STATS_TOTAL, STATS_TOTAL, None),
        crate::stream_stats::merged_range(backend, &pk, sub_partitions, &from, &to, None),
    )?;
    let total = total.into_values().next();
    let minutes: BTreeMap<i64, Item> = minutes
        .into_iter()
        .filter_map(|(sk, item)| {
            let minute = sk.strip_prefix("M#")?;
            let minute = chrono::NaiveDateTime::parse_from_str(&format!("{minute}:00"), "%Y-%m-%dT%H:%M:%S").ok()?;
            Some((minute.and_utc().timestamp(), item))
        })
        .collect();
    let stored_in = |minute: i64| minutes.get(&minute).map_or(0, |item| get_n(item, "stored"));
    // The last 60 s: this minute so far, and the part of the previous minute inside the window.
    let elapsed = (now.timestamp_millis() - minute_now * 1000) as f64 / 60_000.0;
    let last_minute = stored_in(minute_now) as f64 + stored_in(minute_now - 60) as f64 * (1.0 - elapsed);
    let mut histogram = [0u64; LAG_BUCKETS];
    for (_, item) in minutes.range(minute_now - 4 * 60..) {
        for (slot, n) in histogram.iter_mut().zip(lag_histogram(item)) {
            *slot += n;
        }
    }
    let last = total.as_ref().and_then(|t| get_opt_s(t, "last_received_at")).map(str::to_string);
    let active = last
        .as_deref()
        .and_then(|t| time::parse("last_received_at", t).ok())
        .is_some_and(|t| now.timestamp() - t.timestamp() < ACTIVE_SECONDS);
    Ok(StreamStatus {
        stream_id: stream,
        status: if active { "active" } else { "idle" },
        events_processed: total.as_ref().map_or(0, |t| get_n(t, "stored")),
        processing_rate: (last_minute / 60.0 * 1000.0).round() / 1000.0,
        last_event_timestamp: last,
        lag_seconds: rollup::lag_quantile_seconds(&histogram, 0.95),
        errors: ErrorCounts {
            total: total.as_ref().map_or(0, |t| get_n(t, "errors")),
            last_hour: minutes.values().map(|item| get_n(item, "errors")).sum(),
        },
        measured_at: time::format(&now),
    })
}

/// `GET /query/events` parameters.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub stream: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub event_type: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub cursor: Option<String>,
}

impl EventQuery {
    /// From query parameters. Without `start_time`, the window starts as far back as any
    /// retention keeps events; without `end_time`, it ends a day from now.
    pub fn parse(param: impl Fn(&str) -> Option<String>) -> Result<Self, ServiceError> {
        let mut errors = argus_models::ValidationError::default();
        let stream = match param("stream_id") {
            Some(raw) => check_stream_id("stream_id", &raw).map_err(|e| errors.push(e)).ok(),
            None => {
                errors.push(FieldError::new("stream_id", "REQUIRED", "stream_id is required"));
                None
            }
        };
        let now = time::now();
        let instant = |name: &str, default: DateTime<Utc>, errors: &mut argus_models::ValidationError| match param(name)
        {
            Some(raw) => time::parse(name, &raw).map(ceil_millis).map_err(|e| errors.push(e)).ok(),
            None => Some(default),
        };
        let start = instant("start_time", now - Duration::days(MAX_WINDOW_DAYS - 1), &mut errors);
        let end = instant("end_time", now + Duration::days(1), &mut errors);
        if let (Some(start), Some(end)) = (start, end) {
            if let Err(err) = check_window("start_time", "end_time", &start, &end) {
                errors.push(err);
            }
        }
        let event_type = param("event_type");
        if event_type.as_ref().is_some_and(|t| t.is_empty() || t.chars().count() > argus_models::event::MAX_NAME_LEN) {
            errors.push(FieldError::new(
                "event_type",
                "INVALID_LENGTH",
                format!("event_type is 1 to {} characters", argus_models::event::MAX_NAME_LEN),
            ));
        }
        let limit = crate::page::parse_limit(param("limit").as_deref())?;
        let offset = match param("offset") {
            None => 0,
            Some(raw) => match raw.parse::<usize>() {
                Ok(offset) if offset <= MAX_OFFSET => offset,
                Ok(_) => {
                    return Err(ServiceError::BadRequest {
                        code: "OFFSET_TOO_LARGE",
                        message: format!(
                            "offset is at most {MAX_OFFSET}; page further with the cursor (next_cursor), which costs the same on every page"
                        ),
                        details: Map::from_iter([
                            ("field".into(), json!("offset")),
                            ("max_offset".into(), json!(MAX_OFFSET)),
                        ]),
                    })
                }
                Err(_) => {
                    errors.push(FieldError::new("offset", "INVALID_TYPE", "offset is a whole number"));
                    0
                }
            },
        };
        let cursor = param("cursor");
        if cursor.is_some() && offset > 0 {
            errors.push(FieldError::new("offset", "OFFSET_WITH_CURSOR", "use either offset or cursor"));
        }
        errors.into_result()?;
        match (stream, start, end) {
            (Some(stream), Some(start), Some(end)) => {
                Ok(Self { stream, start, end, event_type, limit, offset, cursor })
            }
            _ => Err(FieldError::new("stream_id", "INVALID_REQUEST", "invalid query").into()),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct QueryPosition {
    before: String,
}

/// `GET /query/events`: newest first.
#[derive(Debug, Clone, Serialize)]
pub struct EventPage {
    pub events: Vec<Value>,
    pub total_count: u64,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// The request fields that hold a window's start and end (named by its errors).
pub type WindowFields = (&'static str, &'static str);

/// The partial minutes at the window's edge named `field` hold more than [`MAX_EDGE_EVENTS`].
fn edge_limit_error(field: &'static str) -> ServiceError {
    ServiceError::BadRequest {
        code: "WINDOW_EDGE_TOO_LARGE",
        message: format!(
            "the partial minute at {field} holds more than {MAX_EDGE_EVENTS} events, which would be read one by one; set {field} to a whole minute (seconds 00.000), which the rollups answer"
        ),
        details: Map::from_iter([("field".into(), json!(field)), ("max_edge_events".into(), json!(MAX_EDGE_EVENTS))]),
    }
}

/// Which of `fields` an edge of `[from, to)` belongs to.
fn edge_field(fields: WindowFields, from: &DateTime<Utc>, edge_from: &DateTime<Utc>) -> &'static str {
    if edge_from == from {
        fields.0
    } else {
        fields.1
    }
}

/// Visible events of the window, counted from the rollups (whole minutes) and the raw events
/// of the partial minutes at its edges (at most [`MAX_EDGE_EVENTS`] each): exact, without
/// reading the window's events.
#[allow(clippy::too_many_arguments)]
pub async fn count_window(
    backend: &Backend,
    tenant: &str,
    stream: &str,
    shards: u32,
    from: &DateTime<Utc>,
    to: &DateTime<Utc>,
    event_type: Option<&str>,
    fields: WindowFields,
) -> Result<u64, ServiceError> {
    let mut total: i64 = 0;
    if let Some((start, end)) = whole_minutes(from, to) {
        let kind = if event_type.is_some() { DimKind::EventType } else { DimKind::All };
        let cells = cell_counts(backend, CellQuery::window(tenant, stream, shards, kind, start, end)).await?;
        total += cells.iter().filter(|c| event_type.is_none_or(|t| c.value == t)).map(|c| c.n).sum::<i64>();
    }
    for (edge_from, edge_to) in edges(from, to) {
        let edge = RawWindow { tenant, stream, shards, from: edge_from, to: edge_to, event_type };
        total += match edge.count(backend, MAX_EDGE_EVENTS).await {
            Ok(n) => n as i64,
            Err(RawError::Limit) => return Err(edge_limit_error(edge_field(fields, from, &edge_from))),
            Err(RawError::Service(err)) => return Err(err),
        };
    }
    Ok(total.max(0) as u64)
}

pub async fn query_events(backend: &Backend, tenant: &str, query: &EventQuery) -> Result<EventPage, ServiceError> {
    let position = query.cursor.as_deref().map(|c| cursor::decode::<QueryPosition>("query-events", c)).transpose()?;
    let shards = crate::streams::get(backend, tenant, &query.stream).await?.write_shards;
    let total_count = count_window(
        backend,
        tenant,
        &query.stream,
        shards,
        &query.start,
        &query.end,
        query.event_type.as_deref(),
        ("start_time", "end_time"),
    )
    .await?;
    let mut filter = Filter::default();
    filter.and("attribute_not_exists(#deleted)").name("#deleted", "deleted_at");
    filter.and(NOT_EXPIRED).name("#expires", EXPIRES_AT).value(":epoch", epoch_now());
    if let Some(name) = &query.event_type {
        filter.and("#name = :name").name("#name", "name").value(":name", s(name));
    }
    let end = time::format(&query.end);
    let mut before = Some(match &position {
        Some(p) => p.before.clone().min(end),
        None => end,
    });
    let mut to_skip = query.offset;
    let partitions = stream_event_partitions(tenant, &query.stream, shards);
    // Offset: read and drop pages until `offset` events are behind us.
    let mut skipped_pages = 0;
    loop {
        let wanted = if to_skip > 0 { to_skip.min(crate::page::MAX_PAGE) } else { query.limit };
        let list = ListQuery {
            index: GSI4,
            pk_attr: "GSI4PK",
            sk_attr: "GSI4SK",
            partitions: partitions.clone(),
            sk_from: Some(time::format(&query.start)),
            sk_before: before.clone(),
            filter: Some(filter.clone()),
            limit: wanted,
        };
        let page = query_sharded_desc(&backend.dynamodb, &backend.table, &list).await?;
        if to_skip > 0 {
            skipped_pages += 1;
            if skipped_pages > MAX_OFFSET_PAGES {
                return Err(ServiceError::BadRequest {
                    code: "OFFSET_TOO_COSTLY",
                    message: format!(
                        "the filter matches too few events to skip {} of them within {MAX_OFFSET_PAGES} pages; page with the cursor (next_cursor) instead",
                        query.offset
                    ),
                    details: Map::from_iter([
                        ("field".into(), json!("offset")),
                        ("max_offset_pages".into(), json!(MAX_OFFSET_PAGES)),
                    ]),
                });
            }
            to_skip -= page.items.len();
            before = page.next_before;
            if before.is_none() {
                return Ok(EventPage { events: Vec::new(), total_count, has_more: false, next_cursor: None });
            }
            continue;
        }
        let events: Vec<Value> = page.items.iter().map(datastream_event).collect::<Result<_, _>>()?;
        // The listing decides whether more follow, never `total_count`: the counts trail the
        // aggregator, and events of earlier pages may be deleted while a client pages on.
        let next_cursor = page.next_before.map(|before| cursor::encode("query-events", &QueryPosition { before }));
        return Ok(EventPage { events, total_count, has_more: next_cursor.is_some(), next_cursor });
    }
}

/// `POST /query/aggregate`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateAnswer {
    pub stream_id: String,
    pub time_window: Value,
    pub group_by: Option<String>,
    pub interval: Option<&'static str>,
    pub results: Vec<Value>,
    /// `rollups` (counts kept by the aggregator, plus the raw events of partial edge minutes)
    /// or `raw` (a fold over the window's events, at most `MAX_RAW_EVENTS`).
    pub source: &'static str,
    /// Raw events read for this answer.
    pub events_scanned: u64,
    /// Always `exact`: count_distinct counts distinct values, it does not estimate.
    pub count_distinct: &'static str,
}

fn raw_limit_error(in_window: u64) -> ServiceError {
    let details = Map::from_iter([
        ("field".into(), json!("time_window")),
        ("max_raw_events".into(), json!(MAX_RAW_EVENTS)),
        ("max_raw_bytes".into(), json!(MAX_RAW_BYTES)),
        ("events_in_window".into(), json!(in_window)),
    ]);
    ServiceError::BadRequest {
        code: "WINDOW_TOO_LARGE_FOR_RAW",
        message: format!(
            "this aggregation folds raw events, at most {MAX_RAW_EVENTS} (and {MAX_RAW_BYTES} bytes) per request; narrow time_window (counts grouped by nothing, event_type or category have no such limit)"
        ),
        details,
    }
}

/// What a fold needs of an event, in DataStream's shape, from a projected item.
fn fold_view(item: &Item) -> Result<Value, ServiceError> {
    let text = |name: &str| get_opt_s(item, name).map_or(Value::Null, |v| Value::String(v.to_string()));
    let data = match get_opt_s(item, "data") {
        Some(raw) => serde_json::from_str(raw).map_err(|e| ServiceError::Internal(e.to_string()))?,
        None => Value::Null,
    };
    Ok(json!({
        "event_id": text("id"),
        "event_type": text("name"),
        "category": text("category"),
        "session_id": text("session_id"),
        "timestamp": text("timestamp"),
        "data": data,
    }))
}

/// `POST /query/aggregate`'s window fields.
const WINDOW_FIELDS: WindowFields = ("time_window.start", "time_window.end");

pub async fn aggregate(
    backend: &Backend,
    tenant: &str,
    request: &AggregateRequest,
) -> Result<AggregateAnswer, ServiceError> {
    let settings = crate::streams::get(backend, tenant, &request.stream).await?;
    let summed: Vec<&str> = settings.rollup_fields.iter().map(|f| f.field.as_str()).collect();
    let mut answer = None;
    if let Some(plan) = request.rollup_plan(&summed) {
        answer = from_rollups(backend, tenant, request, &settings, &plan).await?;
    }
    let (fold, scanned, source) = match answer {
        Some((fold, scanned)) => (fold, scanned, "rollups"),
        None => {
            let (fold, scanned) = from_raw(backend, tenant, request, settings.write_shards).await?;
            (fold, scanned, "raw")
        }
    };
    Ok(AggregateAnswer {
        stream_id: request.stream.clone(),
        time_window: json!({"start": time::format(&request.start), "end": time::format(&request.end)}),
        group_by: request.group_by.as_ref().map(|(name, _)| name.clone()),
        interval: request.interval.map(|i| i.name()),
        results: fold.rows(request)?,
        source,
        events_scanned: scanned,
        count_distinct: "exact",
    })
}

/// The answer from the rollup cells (whole minutes) and the raw events of the partial minutes
/// at the edges, with the events read; `None` when the cells did not sum a field asked for
/// over every event of the window (then raw events answer).
async fn from_rollups(
    backend: &Backend,
    tenant: &str,
    request: &AggregateRequest,
    settings: &argus_models::stream::Stream,
    plan: &[RolledUp],
) -> Result<Option<(Fold, u64)>, ServiceError> {
    let stream = request.stream.as_str();
    let shards = settings.write_shards;
    let kind = match &request.group_by {
        None => DimKind::All,
        Some((_, Field::EventType)) => DimKind::EventType,
        Some(_) => DimKind::Category,
    };
    // The summed fields asked for, and where each aggregation finds its counters among them.
    let mut fields: Vec<usize> =
        plan.iter().filter_map(|p| if let RolledUp::Field(i) = p { Some(*i) } else { None }).collect();
    fields.sort_unstable();
    fields.dedup();
    let plan: Vec<RolledUp> = plan
        .iter()
        .map(|p| match p {
            RolledUp::Field(i) => RolledUp::Field(fields.iter().position(|f| f == i).unwrap_or_default()),
            RolledUp::Events => RolledUp::Events,
        })
        .collect();
    let mut fold = Fold::default();
    let mut scanned = 0u64;
    if let Some((start, end)) = whole_minutes(&request.start, &request.end) {
        let query = CellQuery {
            minutes_only: request.interval == Some(Interval::Minute),
            fields: &fields,
            ..CellQuery::window(tenant, stream, shards, kind, start, end)
        };
        let cells = cell_counts(backend, query).await?;
        if !fields_complete(&cells) {
            return Ok(None);
        }
        for ((bucket, value), cell_sums) in sum_cells(&cells, request.interval) {
            // Category cell "" holds the events without a category (group null).
            let group = match kind {
                DimKind::All => None,
                _ => Some(value).filter(|v| !v.is_empty()),
            };
            let field_sums: Vec<FieldSum> = cell_sums
                .fields
                .iter()
                .map(|f| FieldSum { count: i64::try_from(f.values).unwrap_or(i64::MAX), millionths: f.millionths })
                .collect();
            fold.add_rollup(request, &plan, (bucket, group), cell_sums.n, &field_sums)?;
        }
    }
    // The partial minutes at the edges: their events counted, or read with a small projection
    // to be grouped and summed.
    for (from, to) in edges(&request.start, &request.end) {
        let window = RawWindow { tenant, stream, shards, from, to, event_type: None };
        let too_many = || edge_limit_error(edge_field(WINDOW_FIELDS, &request.start, &from));
        // An edge lies within one minute, so within one bucket of any interval.
        let bucket = request.interval.map(|i| i.bucket(from.timestamp()));
        if kind == DimKind::All && fields.is_empty() {
            let n = match window.count(backend, MAX_EDGE_EVENTS).await {
                Ok(n) => n,
                Err(RawError::Limit) => return Err(too_many()),
                Err(RawError::Service(err)) => return Err(err),
            };
            scanned += n;
            fold.add_counts(request, (bucket, None), n as i64)?;
            continue;
        }
        // Edge events are read with a projection; the byte cap is the raw path's.
        let limits = RawLimits { max_events: MAX_EDGE_EVENTS, max_bytes: MAX_RAW_BYTES };
        let mut projection = vec!["id", "name", "category", "timestamp"];
        if !fields.is_empty() {
            projection.push("data");
        }
        scanned += fold_raw(backend, &window, &projection, limits, request, &mut fold, too_many).await?;
    }
    Ok(Some((fold, scanned)))
}

/// The answer folded from the window's raw events, at most [`MAX_RAW_EVENTS`], with the
/// events read.
async fn from_raw(
    backend: &Backend,
    tenant: &str,
    request: &AggregateRequest,
    shards: u32,
) -> Result<(Fold, u64), ServiceError> {
    let stream = request.stream.as_str();
    // The rollups say how many events the window holds before anything is read.
    let in_window =
        count_window(backend, tenant, stream, shards, &request.start, &request.end, None, WINDOW_FIELDS).await?;
    if in_window > MAX_RAW_EVENTS {
        return Err(raw_limit_error(in_window));
    }
    let needs_data = request.aggregations.iter().any(|a| matches!(a.field, Field::Data(_)))
        || matches!(request.group_by, Some((_, Field::Data(_))));
    let mut projection = vec!["id", "name", "category", "session_id", "timestamp"];
    if needs_data {
        projection.push("data");
    }
    let limits = RawLimits { max_events: MAX_RAW_EVENTS, max_bytes: MAX_RAW_BYTES };
    let window = RawWindow { tenant, stream, shards, from: request.start, to: request.end, event_type: None };
    let mut fold = Fold::default();
    let scanned =
        fold_raw(backend, &window, &projection, limits, request, &mut fold, || raw_limit_error(in_window)).await?;
    Ok((fold, scanned))
}

/// Folds the window's events into `fold`, page by page; returns how many were read.
async fn fold_raw(
    backend: &Backend,
    window: &RawWindow<'_>,
    projection: &[&str],
    limits: RawLimits,
    request: &AggregateRequest,
    fold: &mut Fold,
    past_limits: impl FnOnce() -> ServiceError,
) -> Result<u64, ServiceError> {
    let read = window
        .fold_pages(backend, Some(projection), limits, |page| {
            for item in &page {
                let event = fold_view(item)?;
                fold.add(request, &event, epoch_of(&event))?;
            }
            Ok(())
        })
        .await;
    match read {
        Ok(n) => Ok(n),
        Err(RawError::Limit) => Err(past_limits()),
        Err(RawError::Service(err)) => Err(err),
    }
}
