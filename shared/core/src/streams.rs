//! Streams: a tenant's named event streams and their settings (`retention_days`,
//! `write_shards`, `rollup_fields`).
//!
//! A stream's item is created the first time an event names it (with the default settings) or
//! when its settings are set. Writers need two settings of every event's stream (the retention
//! sets the event's TTL, the write shards its index partitions), so they read them through a
//! per-process cache: a stream item is read once per warm function instance and minute, never
//! once per event, and stays far from its partition's limits whatever the stream's event rate.
//! Readers of a stream's events read its `write_shards` fresh (one consistent `GetItem`): a
//! cached count lower than a writer's would miss that writer's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argus_models::stream::{
    check_stream_id, grow_rollup_fields, RollupField, Stream, StreamChanges, DEFAULT_RETENTION_DAYS,
    DEFAULT_WRITE_SHARDS, WRITE_SHARD_COUNTS,
};
use argus_models::time;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use crate::ddb::{batch_get, get_n, get_s, key, query_sharded_desc, s, Item, ListQuery};
use crate::keys::{stream_list_pk, stream_pk, tenant_shards_pk, IndexShards, GSI1, GSI1PK, GSI1SK, META, PK, SK};
use crate::page::Page;
use crate::{cursor, Backend, ServiceError};

/// How long a writer trusts cached settings: a settings change applies to events stored from
/// at most this long after it.
pub const SETTINGS_CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries the cache holds before it starts over (a bound on memory, not a working limit).
const SETTINGS_CACHE_MAX: usize = 10_000;

type CacheKey = (String, String, String);

/// What a writer (and the aggregator) needs of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSetting {
    pub retention_days: u32,
    pub write_shards: u32,
    /// The fields the aggregator sums (shared: cloned per event).
    pub rollup_fields: Arc<Vec<RollupField>>,
}

impl Default for WriteSetting {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
            write_shards: DEFAULT_WRITE_SHARDS,
            rollup_fields: Arc::default(),
        }
    }
}

fn cache() -> &'static Mutex<HashMap<CacheKey, (WriteSetting, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, (WriteSetting, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_key(backend: &Backend, tenant: &str, stream: &str) -> CacheKey {
    (backend.table.clone(), tenant.to_string(), stream.to_string())
}

fn cached(key: &CacheKey) -> Option<WriteSetting> {
    let cache = cache().lock().ok()?;
    cache.get(key).filter(|(_, at)| at.elapsed() < SETTINGS_CACHE_TTL).map(|(setting, _)| setting.clone())
}

/// Drops cached settings: the next lookup reads them (the aggregator, when an event version
/// names more summed fields than its cache knows).
pub fn forget(backend: &Backend, tenant: &str, streams: &[&str]) {
    if let Ok(mut cache) = cache().lock() {
        for stream in streams {
            cache.remove(&cache_key(backend, tenant, stream));
        }
    }
}

fn remember(key: CacheKey, setting: WriteSetting) {
    if let Ok(mut cache) = cache().lock() {
        if cache.len() >= SETTINGS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (setting, Instant::now()));
    }
}

fn retention_of(item: &Item) -> u32 {
    u32::try_from(get_n(item, "retention_days")).ok().filter(|d| *d > 0).unwrap_or(DEFAULT_RETENTION_DAYS)
}

/// A stream item without the attribute (every stream before the setting existed) has the default.
fn write_shards_of(item: &Item) -> u32 {
    u32::try_from(get_n(item, "write_shards"))
        .ok()
        .filter(|n| WRITE_SHARD_COUNTS.contains(n))
        .unwrap_or(DEFAULT_WRITE_SHARDS)
}

/// Stored as JSON text (an item attribute read as a whole, never queried into).
fn rollup_fields_of(item: &Item) -> Vec<RollupField> {
    crate::ddb::get_opt_s(item, "rollup_fields").and_then(|raw| serde_json::from_str(raw).ok()).unwrap_or_default()
}

fn setting_of(item: &Item) -> WriteSetting {
    WriteSetting {
        retention_days: retention_of(item),
        write_shards: write_shards_of(item),
        rollup_fields: Arc::new(rollup_fields_of(item)),
    }
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
        write_shards: write_shards_of(item),
        rollup_fields: rollup_fields_of(item),
        created_at: get_s(item, "created_at")?.to_string(),
        updated_at: get_s(item, "updated_at")?.to_string(),
    })
}

/// The settings of the streams a batch of writes names, and their tenant's index fan-out.
#[derive(Debug, Clone, Default)]
pub struct WriteSettings {
    streams: HashMap<String, WriteSetting>,
    tenant_fanout: u32,
}

impl WriteSettings {
    /// The settings of `stream` (the defaults for a stream not looked up).
    pub fn of(&self, stream: &str) -> WriteSetting {
        self.streams.get(stream).cloned().unwrap_or_default()
    }

    /// The index shards an event of `stream` is written across.
    pub fn index_shards(&self, stream: &str) -> IndexShards {
        IndexShards::new(self.of(stream).write_shards, self.tenant_fanout)
    }

    /// How many summed fields the events of `stream` are stamped with (`events::SUMMED_FIELDS`).
    pub fn summed_fields(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, |s| s.rollup_fields.len())
    }

    /// Days the events of `stream` live.
    pub fn days(&self, stream: &str) -> u32 {
        self.of(stream).retention_days
    }
}

/// Stream items created at once by one call (first use of many streams).
const CREATE_CONCURRENCY: usize = 16;

/// The settings of each of `streams` (distinct ids), creating the streams that do not exist
/// yet with the default settings.
pub async fn write_settings(backend: &Backend, tenant: &str, streams: &[&str]) -> Result<WriteSettings, ServiceError> {
    write_settings_of(backend, tenant, streams, true).await
}

/// Like [`write_settings`]; with `create_missing` false a stream not found is only assumed to
/// have the default settings, and nothing is written (validate-only requests).
pub async fn write_settings_of(
    backend: &Backend,
    tenant: &str,
    streams: &[&str],
    create_missing: bool,
) -> Result<WriteSettings, ServiceError> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for stream in streams {
        // A stream id from before ids were restricted (in an old queue message or job chunk)
        // cannot have a settings item or be set: it keeps the default settings.
        if check_stream_id("stream", stream).is_err() {
            found.insert(stream.to_string(), WriteSetting::default());
            continue;
        }
        match cached(&cache_key(backend, tenant, stream)) {
            Some(setting) => {
                found.insert(stream.to_string(), setting);
            }
            None => missing.push(*stream),
        }
    }
    let mut tenant_fanout = cached_fanout(backend, tenant);
    if missing.is_empty() && tenant_fanout.is_some() {
        return Ok(WriteSettings { streams: found, tenant_fanout: tenant_fanout.unwrap_or(0) });
    }
    // The streams' items and the tenant's fan-out in one read.
    let fanout_pk = tenant_shards_pk(tenant);
    let mut keys: Vec<Item> = missing.iter().map(|stream| key(stream_pk(tenant, stream), META)).collect();
    if tenant_fanout.is_none() {
        keys.push(key(fanout_pk.clone(), META));
    }
    let projection = Some("PK, stream_id, retention_days, write_shards, rollup_fields, event_shards");
    for item in batch_get(&backend.dynamodb, &backend.table, keys, projection).await? {
        if get_s(&item, PK)? == fanout_pk {
            tenant_fanout = Some(fanout_of(&item));
            continue;
        }
        let stream = get_s(&item, "stream_id")?.to_string();
        let setting = setting_of(&item);
        remember(cache_key(backend, tenant, &stream), setting.clone());
        found.insert(stream, setting);
    }
    let tenant_fanout = tenant_fanout.unwrap_or(0);
    remember_fanout(backend, tenant, tenant_fanout);
    let new: Vec<&str> = missing.into_iter().filter(|stream| !found.contains_key(*stream)).collect();
    if !create_missing {
        for stream in new {
            found.insert(stream.to_string(), WriteSetting::default());
        }
        return Ok(WriteSettings { streams: found, tenant_fanout });
    }
    let mut created = Vec::with_capacity(new.len());
    for group in new.chunks(CREATE_CONCURRENCY) {
        created
            .extend(futures::future::try_join_all(group.iter().map(|stream| create(backend, tenant, stream))).await?);
    }
    for (stream, setting) in new.into_iter().zip(created) {
        remember(cache_key(backend, tenant, stream), setting.clone());
        found.insert(stream.to_string(), setting);
    }
    Ok(WriteSettings { streams: found, tenant_fanout })
}

/// Creates a stream with the default settings; returns its settings (another writer's, when
/// it created the stream first).
async fn create(backend: &Backend, tenant: &str, stream: &str) -> Result<WriteSetting, ServiceError> {
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
        Ok(_) => Ok(WriteSetting::default()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
            let item = crate::ddb::get_meta(&backend.dynamodb, &backend.table, stream_pk(tenant, stream)).await?;
            Ok(item.as_ref().map(setting_of).unwrap_or_default())
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
///
/// `write_shards` only grows (409 otherwise). The tenant's fan-out for its all-events index is
/// raised first, so a reader never queries fewer shards than a writer may be writing to.
pub async fn update(
    backend: &Backend,
    tenant: &str,
    raw_id: &str,
    changes: &StreamChanges,
) -> Result<Stream, ServiceError> {
    let stream = check_stream_id("stream_id", raw_id)?;
    let now = time::now();
    let current = if changes.write_shards.is_some() || changes.rollup_fields.is_some() {
        crate::ddb::get_meta(&backend.dynamodb, &backend.table, stream_pk(tenant, &stream)).await?
    } else {
        None
    };
    if let Some(shards) = changes.write_shards {
        let current = current.as_ref().map(write_shards_of).unwrap_or(DEFAULT_WRITE_SHARDS);
        if shards < current {
            return Err(shrink_refused(current, shards));
        }
        raise_tenant_event_shards(backend, tenant, shards).await?;
    }
    // New summed fields count versions written once every aggregator's cache has them.
    let since =
        time::format(&(now + chrono::Duration::from_std(SETTINGS_CACHE_TTL).unwrap_or_default() + ROLLUP_MARGIN));
    let rollup_fields = match &changes.rollup_fields {
        Some(requested) => {
            let stored = current.as_ref().and_then(|item| crate::ddb::get_opt_s(item, "rollup_fields"));
            let present = current.as_ref().map(rollup_fields_of).unwrap_or_default();
            let grown =
                grow_rollup_fields(&present, requested, &since).map_err(|dropped| fields_kept(&present, &dropped))?;
            Some((stored.map(str::to_string), serde_json::to_string(&grown).unwrap_or_default()))
        }
        None => None,
    };
    let now = time::format(&now);
    // A setting left out keeps its value (or takes the default, when the stream is new).
    let retention = match changes.retention_days {
        Some(_) => "retention_days = :days",
        None => "retention_days = if_not_exists(retention_days, :days)",
    };
    let days = changes.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    let mut update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(stream_pk(tenant, &stream)))
        .key(SK, s(META))
        .expression_attribute_values(":now", s(&now))
        .expression_attribute_values(":id", s(&stream))
        .expression_attribute_values(":entity", s("stream"))
        .expression_attribute_values(":list", s(stream_list_pk(tenant)))
        .expression_attribute_values(":sort", s(format!("{now}#{stream}")))
        .expression_attribute_values(":days", AttributeValue::N(days.to_string()))
        .return_values(ReturnValue::AllNew);
    let mut set = format!(
        "SET updated_at = :now, created_at = if_not_exists(created_at, :now), stream_id = :id, \
         entity = :entity, GSI1PK = :list, GSI1SK = if_not_exists(GSI1SK, :sort), {retention}"
    );
    let mut conditions = Vec::new();
    if let Some(shards) = changes.write_shards {
        set.push_str(", write_shards = :shards");
        // Another PATCH may have raised it since the read above.
        conditions.push("(attribute_not_exists(write_shards) OR write_shards <= :shards)");
        update = update.expression_attribute_values(":shards", AttributeValue::N(shards.to_string()));
    }
    if let Some((seen, grown)) = &rollup_fields {
        set.push_str(", rollup_fields = :fields");
        update = update.expression_attribute_values(":fields", s(grown));
        // The fields grown from what was read: another PATCH's additions are not lost.
        match seen {
            Some(seen) => {
                conditions.push("rollup_fields = :seen_fields");
                update = update.expression_attribute_values(":seen_fields", s(seen));
            }
            None => conditions.push("attribute_not_exists(rollup_fields)"),
        }
    }
    if !conditions.is_empty() {
        update = update.condition_expression(conditions.join(" AND "));
    }
    let result = crate::ddb::condition_held(crate::deadline::bounded(update.update_expression(set).send()).await?)?;
    let Some(out) = result else {
        let current = crate::ddb::get_meta(&backend.dynamodb, &backend.table, stream_pk(tenant, &stream)).await?;
        let shards = current.as_ref().map(write_shards_of).unwrap_or(DEFAULT_WRITE_SHARDS);
        if changes.write_shards.is_some_and(|requested| requested < shards) {
            return Err(shrink_refused(shards, changes.write_shards.unwrap_or_default()));
        }
        // An SDK retry of a write that had landed finds its own result: that is success.
        if let (Some(item), Some(requested)) = (&current, &changes.rollup_fields) {
            let fields = rollup_fields_of(item);
            let landed =
                fields.len() == requested.len() && requested.iter().all(|r| fields.iter().any(|f| f.field == *r));
            let same_days = changes.retention_days.is_none_or(|days| retention_of(item) == days);
            if landed && same_days && changes.write_shards.is_none_or(|requested| requested == shards) {
                return stream_from_item(item);
            }
        }
        return Err(ServiceError::Conflict {
            code: "STREAM_CHANGED",
            message: "another change to the stream's settings came first; read them and retry".into(),
            details: serde_json::Map::from_iter([("field".to_string(), serde_json::Value::from("rollup_fields"))]),
        });
    };
    let item = out.attributes.unwrap_or_default();
    let updated = stream_from_item(&item)?;
    remember(cache_key(backend, tenant, &stream), setting_of(&item));
    Ok(updated)
}

/// Past the settings cache's lifetime, before a new summed field counts (clock skew, a
/// cache read just before the change).
const ROLLUP_MARGIN: chrono::Duration = chrono::Duration::seconds(5);

fn fields_kept(present: &[RollupField], dropped: &[String]) -> ServiceError {
    ServiceError::Conflict {
        code: "ROLLUP_FIELDS_CANNOT_BE_REMOVED",
        message: format!(
            "rollup_fields only grows: name every field the stream sums ({}), plus any to add",
            present.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(", ")
        ),
        details: serde_json::Map::from_iter([
            ("field".to_string(), serde_json::Value::from("rollup_fields")),
            ("missing".to_string(), serde_json::Value::from(dropped.to_vec())),
        ]),
    }
}

fn shrink_refused(current: u32, requested: u32) -> ServiceError {
    ServiceError::Conflict {
        code: "WRITE_SHARDS_CANNOT_DECREASE",
        message: format!(
            "write_shards only grows: the stream's events are spread over {current} shards, and fewer would hide some from readers"
        ),
        details: serde_json::Map::from_iter([
            ("field".to_string(), serde_json::Value::from("write_shards")),
            ("current".to_string(), serde_json::Value::from(current)),
            ("requested".to_string(), serde_json::Value::from(requested)),
        ]),
    }
}

/// The tenant's index fan-out (0 until a stream's `write_shards` is raised above 8; it only
/// grows): what readers of GSI3 and GSI2 query (`keys::IndexShards`). A consistent read, never
/// cached: see the module's note.
pub async fn tenant_fanout(backend: &Backend, tenant: &str) -> Result<u32, ServiceError> {
    let item = crate::ddb::get_meta(&backend.dynamodb, &backend.table, tenant_shards_pk(tenant)).await?;
    Ok(item.as_ref().map_or(0, fanout_of))
}

fn fanout_of(item: &Item) -> u32 {
    u32::try_from(get_n(item, "event_shards")).unwrap_or(0).min(argus_models::stream::MAX_WRITE_SHARDS)
}

/// (table, tenant) → (fan-out, read at).
type FanoutCache = Mutex<HashMap<(String, String), (u32, Instant)>>;

fn fanout_cache() -> &'static FanoutCache {
    static CACHE: OnceLock<FanoutCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cached_fanout(backend: &Backend, tenant: &str) -> Option<u32> {
    let cache = fanout_cache().lock().ok()?;
    let key = (backend.table.clone(), tenant.to_string());
    cache.get(&key).filter(|(_, at)| at.elapsed() < SETTINGS_CACHE_TTL).map(|(n, _)| *n)
}

fn remember_fanout(backend: &Backend, tenant: &str, fanout: u32) {
    if let Ok(mut cache) = fanout_cache().lock() {
        if cache.len() >= SETTINGS_CACHE_MAX {
            cache.clear();
        }
        cache.insert((backend.table.clone(), tenant.to_string()), (fanout, Instant::now()));
    }
}

async fn raise_tenant_event_shards(backend: &Backend, tenant: &str, shards: u32) -> Result<(), ServiceError> {
    // The default count needs no wider reads.
    if shards <= DEFAULT_WRITE_SHARDS {
        return Ok(());
    }
    let update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(tenant_shards_pk(tenant)))
        .key(SK, s(META))
        .update_expression("SET event_shards = :n")
        .condition_expression("attribute_not_exists(event_shards) OR event_shards < :n")
        .expression_attribute_values(":n", AttributeValue::N(shards.to_string()));
    crate::ddb::condition_held(crate::deadline::bounded(update.send()).await?)?;
    remember_fanout(backend, tenant, shards.max(cached_fanout(backend, tenant).unwrap_or(0)));
    Ok(())
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
