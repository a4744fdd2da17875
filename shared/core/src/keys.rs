//! Key formats of the single table. Every tenant-owned record's partition key starts with
//! `T#<tenant>#`, so a lookup with another tenant's id lands in a different partition and
//! answers "not found", exactly like a missing id. See docs/data-model.md.

use argus_models::rollup::{DimKind, Level};
use uuid::Uuid;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
/// DynamoDB TTL attribute (epoch seconds), for records that expire (idempotency, jobs).
pub const EXPIRES_AT: &str = "expires_at";
/// Sort key of an entity's own item.
pub const META: &str = "#META";

/// Write shards of the per-tenant session listing. Fixed: changing it re-homes existing rows.
/// 4 shards × ~1,000 writes/s per partition ≈ 4,000 new sessions/s per tenant.
pub const SESSION_LIST_SHARDS: u32 = 4;

pub fn session_pk(tenant: &str, id: &Uuid) -> String {
    format!("T#{tenant}#SESSION#{id}")
}

pub fn session_list_pk(tenant: &str, shard: u32) -> String {
    format!("T#{tenant}#SESSIONS#{shard:02}")
}

pub fn api_key_pk(key_hash: &str) -> String {
    format!("APIKEY#{key_hash}")
}

pub fn tenant_keys_pk(tenant: &str) -> String {
    format!("T#{tenant}#APIKEYS")
}

/// A tenant's rate-limit settings (what its keys and tokens fall back to).
pub fn tenant_limits_pk(tenant: &str) -> String {
    format!("T#{tenant}#LIMITS")
}

/// A tenant's index fan-out: how many GSI3 shards its events may be spread over
/// (`event_shards`, only raised, by a stream's `write_shards`). No `entity` attribute: the
/// aggregator's change-stream filter drops its writes.
pub fn tenant_shards_pk(tenant: &str) -> String {
    format!("T#{tenant}#SHARDS")
}

pub fn tenant_key_sk(key_id: &str) -> String {
    format!("APIKEY#{key_id}")
}

pub const GSI2: &str = "GSI2";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const GSI3: &str = "GSI3";
pub const GSI3PK: &str = "GSI3PK";
pub const GSI3SK: &str = "GSI3SK";

/// Write shards of the per-tenant, per-category event index, at least: ≈ 4,000 events/s per
/// category (more once the tenant's fan-out is raised: [`IndexShards`]).
pub const EVENT_CATEGORY_SHARDS: u32 = 4;
/// Write shards of the per-tenant event time index, at least: ≈ 16,000 events/s per tenant.
/// A stream with more `write_shards` spreads its events over as many, and raises the tenant's
/// fan-out (`tenant_shards_pk`) so readers query them all.
pub const EVENT_TENANT_SHARDS: u32 = 16;
pub const GSI4: &str = "GSI4";
pub const GSI4PK: &str = "GSI4PK";
pub const GSI4SK: &str = "GSI4SK";

/// How many shards of each index an event is written across: GSI4 by its stream's
/// `write_shards`; GSI3 and GSI2 by the tenant's fan-out (`tenant_shards_pk`'s `event_shards`,
/// 0 until a stream's `write_shards` is set), which a PATCH raises to the largest stream's
/// count before that stream uses it. Counts only grow, writers may hold smaller ones for a
/// minute (cached), and readers use the current ones, so a reader's shards include every
/// writer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexShards {
    pub stream: u32,
    pub tenant: u32,
    pub category: u32,
}

impl IndexShards {
    pub fn new(write_shards: u32, tenant_fanout: u32) -> Self {
        Self {
            stream: write_shards,
            tenant: tenant_index_shards(tenant_fanout),
            category: category_index_shards(tenant_fanout),
        }
    }
}

/// GSI3 shards for a tenant fan-out: 16 until raised.
pub fn tenant_index_shards(tenant_fanout: u32) -> u32 {
    tenant_fanout.clamp(EVENT_TENANT_SHARDS, argus_models::stream::MAX_WRITE_SHARDS)
}

/// GSI2 shards for a tenant fan-out: 4 until raised.
pub fn category_index_shards(tenant_fanout: u32) -> u32 {
    if tenant_fanout == 0 {
        EVENT_CATEGORY_SHARDS
    } else {
        tenant_fanout.clamp(EVENT_CATEGORY_SHARDS, argus_models::stream::MAX_WRITE_SHARDS)
    }
}

/// Every GSI4 partition of a stream whose events are spread over `shards`.
pub fn stream_event_partitions(tenant: &str, stream: &str, shards: u32) -> Vec<String> {
    (0..shards).map(|shard| stream_events_pk(tenant, stream, shard)).collect()
}

/// GSI4 partition of one shard of a stream's events.
pub fn stream_events_pk(tenant: &str, stream: &str, shard: u32) -> String {
    format!("T#{tenant}#ST#{stream}#{shard:02}")
}

/// Write shards of the per-tenant error listing: ≈ 4,000 error records/s per tenant.
pub const ERROR_LIST_SHARDS: u32 = 4;

pub fn event_pk(tenant: &str, id: &Uuid) -> String {
    format!("T#{tenant}#EVENT#{id}")
}

/// GSI1 partition of one session's events (one partition: ≈ 1,000 events/s per session).
pub fn session_events_pk(tenant: &str, session: &Uuid) -> String {
    format!("T#{tenant}#S#{session}#EVENTS")
}

/// GSI2 partition of a category's events. The fixed-width shard suffix keeps the mapping
/// injective whatever the category contains.
pub fn category_events_pk(tenant: &str, category: &str, shard: u32) -> String {
    format!("T#{tenant}#C#{category}#{shard:02}")
}

/// GSI3 partition of all of a tenant's events.
pub fn tenant_events_pk(tenant: &str, shard: u32) -> String {
    format!("T#{tenant}#EVENTS#{shard:02}")
}

/// Sort key of time-ordered listings: `<timestamp>#<id>` (fixed-width timestamp first).
pub fn time_sk(timestamp: &str, id: &Uuid) -> String {
    format!("{timestamp}#{id}")
}

pub fn error_pk(tenant: &str, id: &Uuid) -> String {
    format!("T#{tenant}#ERROR#{id}")
}

pub fn error_list_pk(tenant: &str, shard: u32) -> String {
    format!("T#{tenant}#ERRORS#{shard:02}")
}

pub fn session_errors_pk(tenant: &str, session: &Uuid) -> String {
    format!("T#{tenant}#S#{session}#ERRORS")
}

/// A stream's own item (settings). Stream ids cannot contain `#` (`argus_models::stream`).
pub fn stream_pk(tenant: &str, stream: &str) -> String {
    format!("T#{tenant}#STREAM#{stream}")
}

/// GSI1 partition of a tenant's streams (written once per stream and per settings change).
pub fn stream_list_pk(tenant: &str) -> String {
    format!("T#{tenant}#STREAMS")
}

/// Partition of a stream's rollup cells of one level and dimension kind: minute cells by day,
/// hour cells by month, so that a window reads few partitions and a partition stays bounded.
pub fn rollup_pk(tenant: &str, stream: &str, level: Level, kind: DimKind, bucket: i64) -> String {
    let period = match level {
        Level::Minute => epoch_format(bucket, "%Y-%m-%d"),
        Level::Hour => epoch_format(bucket, "%Y-%m"),
    };
    format!("T#{tenant}#RU#{stream}#{}{}#{period}", level.tag(), kind.tag())
}

/// Sub-partition `k` of a stream's rollup or statistics partition `pk` (0 is `pk` itself, as
/// before streams had more than one: `crate::stream_stats`).
pub fn stream_sub_pk(pk: &str, k: u32) -> String {
    if k == 0 {
        pk.to_string()
    } else {
        format!("{pk}#{k}")
    }
}

/// The sort key prefix of a bucket: fixed width, so a range of buckets is a range of keys.
pub fn rollup_bucket_sk(level: Level, bucket: i64) -> String {
    match level {
        Level::Minute => epoch_format(bucket, "%Y-%m-%dT%H:%M"),
        Level::Hour => epoch_format(bucket, "%Y-%m-%dT%H"),
    }
}

/// `<bucket>#R<retention>#<group value>`: retention `----` for events that never expire.
pub fn rollup_sk(level: Level, bucket: i64, retention_days: Option<u32>, value: &str) -> String {
    let retention = retention_days.map_or("----".to_string(), |days| format!("{days:04}"));
    format!("{}#R{retention}#{value}", rollup_bucket_sk(level, bucket))
}

/// A stream's arrival statistics: `M#<minute>` items (stored, errors, lag histogram) and `TOTAL`.
pub fn stream_stats_pk(tenant: &str, stream: &str) -> String {
    format!("T#{tenant}#STAT#{stream}")
}

pub fn stream_stats_minute_sk(minute: i64) -> String {
    format!("M#{}", epoch_format(minute, "%Y-%m-%dT%H:%M"))
}

pub const STATS_TOTAL: &str = "TOTAL";

/// The aggregator's record that it applied one change record (DynamoDB Streams `eventID`).
pub fn applied_change_pk(event_id: &str) -> String {
    format!("AGG#{event_id}")
}

fn epoch_format(epoch: i64, format: &str) -> String {
    chrono::DateTime::from_timestamp(epoch, 0).unwrap_or_default().format(format).to_string()
}

/// A tenant's webhooks (≤ 25 items, read whole by every fan-out), their count, and the
/// per-stream state of `stream.processing_error` alerts.
pub fn webhooks_pk(tenant: &str) -> String {
    format!("T#{tenant}#WEBHOOKS")
}

pub fn webhook_sk(id: &Uuid) -> String {
    format!("WH#{id}")
}

pub const WEBHOOK_COUNT_SK: &str = "#COUNT";

pub fn error_alert_sk(stream: &str) -> String {
    format!("ERRALERT#{stream}")
}

/// One webhook's deliveries, newest first (`D#<created ms>#<id>`), and the markers that make
/// a notification create its delivery once (`N#<notification>`). One partition per webhook:
/// ≈ 1,000 delivery writes/s, far above what one receiver takes.
pub fn deliveries_pk(tenant: &str, webhook: &Uuid) -> String {
    format!("T#{tenant}#WHD#{webhook}")
}

pub fn delivery_sk(created_ms: i64, delivery_id: &str) -> String {
    format!("D#{created_ms:013}#{delivery_id}")
}

pub fn notification_marker_sk(notification: &str) -> String {
    format!("N#{notification}")
}

/// A tenant's exports (one partition: exports are created by people, a few a minute at most),
/// sorted by their time-ordered ids.
pub fn exports_pk(tenant: &str) -> String {
    format!("T#{tenant}#EXPORTS")
}
