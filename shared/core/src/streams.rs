//! Streams: a tenant's named event streams and their settings (`retention_days`).
//!
//! A stream's item is created the first time an event names it (with the default settings) or
//! when its settings are set. Writers need the retention of every event's stream (it sets the
//! event's TTL), so they read it through a per-process cache: a stream item is read once per
//! warm function instance and minute, never once per event, and stays far from its
//! partition's limits whatever the stream's event rate.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use argus_models::stream::{check_stream_id, Stream, StreamChanges, DEFAULT_RETENTION_DAYS};
use argus_models::time;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use crate::ddb::{batch_get, get_n, get_s, key, query_sharded_desc, s, Item, ListQuery};
use crate::keys::{stream_list_pk, stream_pk, GSI1, GSI1PK, GSI1SK, META, PK, SK};
use crate::page::Page;
use crate::{cursor, Backend, ServiceError};

/// How long a writer trusts a cached retention: a settings change applies to events stored
/// from at most this long after it.
pub const SETTINGS_CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries the cache holds before it starts over (a bound on memory, not a working limit).
const SETTINGS_CACHE_MAX: usize = 10_000;

type CacheKey = (String, String, String);

fn cache() -> &'static Mutex<HashMap<CacheKey, (u32, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, (u32, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_key(backend: &Backend, tenant: &str, stream: &str) -> CacheKey {
    (backend.table.clone(), tenant.to_string(), stream.to_string())
}

fn cached(key: &CacheKey) -> Option<u32> {
    let cache = cache().lock().ok()?;
    cache.get(key).filter(|(_, at)| at.elapsed() < SETTINGS_CACHE_TTL).map(|(days, _)| *days)
}

fn remember(key: CacheKey, retention_days: u32) {
    if let Ok(mut cache) = cache().lock() {
        if cache.len() >= SETTINGS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (retention_days, Instant::now()));
    }
}

fn retention_of(item: &Item) -> u32 {
    u32::try_from(get_n(item, "retention_days")).ok().filter(|d| *d > 0).unwrap_or(DEFAULT_RETENTION_DAYS)
}

fn stream_item(tenant: &str, stream: &str, retention_days: u32, now: &str) -> Item {
    Item::from([
        (PK.into(), s(stream_pk(tenant, stream))),
        (SK.into(), s(META)),
        (GSI1PK.into(), s(stream_list_pk(tenant))),
        (GSI1SK.into(), s(format!("{now}#{stream}"))),
        ("entity".into(), s("stream")),
        ("stream_id".into(), s(stream)),
        ("retention_days".into(), AttributeValue::N(retention_days.to_string())),
        ("created_at".into(), s(now)),
        ("updated_at".into(), s(now)),
    ])
}

fn stream_from_item(item: &Item) -> Result<Stream, ServiceError> {
    Ok(Stream {
        stream_id: get_s(item, "stream_id")?.to_string(),
        retention_days: retention_of(item),
        created_at: get_s(item, "created_at")?.to_string(),
        updated_at: get_s(item, "updated_at")?.to_string(),
    })
}

/// The retention of the streams a batch of writes names (`retention_days`).
#[derive(Debug, Clone, Default)]
pub struct Retention(HashMap<String, u32>);

impl Retention {
    /// Days the events of `stream` live (the default for a stream not looked up).
    pub fn days(&self, stream: &str) -> u32 {
        self.0.get(stream).copied().unwrap_or(DEFAULT_RETENTION_DAYS)
    }
}

/// Stream items created at once by one call (first use of many streams).
const CREATE_CONCURRENCY: usize = 16;

/// The retention of each of `streams` (distinct ids), creating the streams that do not exist
/// yet with the default settings.
pub async fn retention_days(backend: &Backend, tenant: &str, streams: &[&str]) -> Result<Retention, ServiceError> {
    retention_days_of(backend, tenant, streams, true).await
}

/// Like [`retention_days`]; with `create_missing` false a stream not found is only assumed to
/// have the default retention, and nothing is written (validate-only requests).
pub async fn retention_days_of(
    backend: &Backend,
    tenant: &str,
    streams: &[&str],
    create_missing: bool,
) -> Result<Retention, ServiceError> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for stream in streams {
        // A stream id from before ids were restricted (in an old queue message or job chunk)
        // cannot have a settings item or be set: it keeps the default retention.
        if check_stream_id("stream", stream).is_err() {
            found.insert(stream.to_string(), DEFAULT_RETENTION_DAYS);
            continue;
        }
        match cached(&cache_key(backend, tenant, stream)) {
            Some(days) => {
                found.insert(stream.to_string(), days);
            }
            None => missing.push(*stream),
        }
    }
    if missing.is_empty() {
        return Ok(Retention(found));
    }
    let keys = missing.iter().map(|stream| key(stream_pk(tenant, stream), META)).collect();
    for item in batch_get(&backend.dynamodb, &backend.table, keys, Some("stream_id, retention_days")).await? {
        let stream = get_s(&item, "stream_id")?.to_string();
        let days = retention_of(&item);
        remember(cache_key(backend, tenant, &stream), days);
        found.insert(stream, days);
    }
    let new: Vec<&str> = missing.into_iter().filter(|stream| !found.contains_key(*stream)).collect();
    if !create_missing {
        for stream in new {
            found.insert(stream.to_string(), DEFAULT_RETENTION_DAYS);
        }
        return Ok(Retention(found));
    }
    let mut created = Vec::with_capacity(new.len());
    for group in new.chunks(CREATE_CONCURRENCY) {
        created
            .extend(futures::future::try_join_all(group.iter().map(|stream| create(backend, tenant, stream))).await?);
    }
    for (stream, days) in new.into_iter().zip(created) {
        remember(cache_key(backend, tenant, stream), days);
        found.insert(stream.to_string(), days);
    }
    Ok(Retention(found))
}

/// Creates a stream with the default settings; returns its retention (another writer's, when
/// it created the stream first).
async fn create(backend: &Backend, tenant: &str, stream: &str) -> Result<u32, ServiceError> {
    let now = time::format(&time::now());
    let result = crate::deadline::bounded(
        backend
            .dynamodb
            .put_item()
            .table_name(&backend.table)
            .set_item(Some(stream_item(tenant, stream, DEFAULT_RETENTION_DAYS, &now)))
            .condition_expression("attribute_not_exists(PK)")
            .send(),
    )
    .await?;
    match result {
        Ok(_) => Ok(DEFAULT_RETENTION_DAYS),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            let item = crate::ddb::get_meta(&backend.dynamodb, &backend.table, stream_pk(tenant, stream)).await?;
            Ok(item.as_ref().map(retention_of).unwrap_or(DEFAULT_RETENTION_DAYS))
        }
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

/// A malformed id names no stream: the same 404 as a missing one.
fn stream_id(raw: &str) -> Result<String, ServiceError> {
    check_stream_id("stream_id", raw).map_err(|_| ServiceError::not_found("stream", raw))
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Stream, ServiceError> {
    let stream = stream_id(raw_id)?;
    match crate::ddb::get_meta(&backend.dynamodb, &backend.table, stream_pk(tenant, &stream)).await? {
        Some(item) => stream_from_item(&item),
        None => Err(ServiceError::not_found("stream", raw_id)),
    }
}

/// `PATCH /streams/{id}`: sets the settings named, creating the stream if no event named it yet
/// (so that a stream can be configured before its first event).
pub async fn update(
    backend: &Backend,
    tenant: &str,
    raw_id: &str,
    changes: &StreamChanges,
) -> Result<Stream, ServiceError> {
    let stream = check_stream_id("stream_id", raw_id)?;
    let now = time::format(&time::now());
    // A setting left out keeps its value (or takes the default, when the stream is new).
    let retention = match changes.retention_days {
        Some(_) => "retention_days = :days",
        None => "retention_days = if_not_exists(retention_days, :days)",
    };
    let days = changes.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(stream_pk(tenant, &stream)))
        .key(SK, s(META))
        .update_expression(format!(
            "SET updated_at = :now, created_at = if_not_exists(created_at, :now), stream_id = :id, \
             entity = :entity, GSI1PK = :list, GSI1SK = if_not_exists(GSI1SK, :sort), {retention}"
        ))
        .expression_attribute_values(":now", s(&now))
        .expression_attribute_values(":id", s(&stream))
        .expression_attribute_values(":entity", s("stream"))
        .expression_attribute_values(":list", s(stream_list_pk(tenant)))
        .expression_attribute_values(":sort", s(format!("{now}#{stream}")))
        .expression_attribute_values(":days", AttributeValue::N(days.to_string()))
        .return_values(ReturnValue::AllNew);
    let out = crate::deadline::bounded(update.send()).await?.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    let updated = stream_from_item(&out.attributes.unwrap_or_default())?;
    remember(cache_key(backend, tenant, &stream), updated.retention_days);
    Ok(updated)
}

#[derive(Serialize, Deserialize)]
struct ListPosition {
    before: String,
}

/// A tenant's streams, newest first (one index partition: streams are few and change rarely).
pub async fn list(
    backend: &Backend,
    tenant: &str,
    limit: usize,
    cursor_raw: Option<&str>,
) -> Result<Page<Stream>, ServiceError> {
    let position = cursor_raw.map(|c| cursor::decode::<ListPosition>("streams", c)).transpose()?;
    let query = ListQuery {
        index: GSI1,
        pk_attr: GSI1PK,
        sk_attr: GSI1SK,
        partitions: vec![stream_list_pk(tenant)],
        sk_from: None,
        sk_before: position.map(|p| p.before),
        filter: None,
        limit,
    };
    let page = query_sharded_desc(&backend.dynamodb, &backend.table, &query).await?;
    Ok(Page {
        items: page.items.iter().map(stream_from_item).collect::<Result<_, _>>()?,
        next_cursor: page.next_before.map(|before| cursor::encode("streams", &ListPosition { before })),
    })
}
