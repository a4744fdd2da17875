//! Key formats of the single table. Every tenant-owned record's partition key starts with
//! `T#<tenant>#`, so a lookup with another tenant's id lands in a different partition and
//! answers "not found", exactly like a missing id. See docs/data-model.md.

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

pub fn tenant_key_sk(key_id: &str) -> String {
    format!("APIKEY#{key_id}")
}

pub const GSI2: &str = "GSI2";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const GSI3: &str = "GSI3";
pub const GSI3PK: &str = "GSI3PK";
pub const GSI3SK: &str = "GSI3SK";

/// Write shards of the per-tenant, per-category event index: ≈ 4,000 events/s per category.
pub const EVENT_CATEGORY_SHARDS: u32 = 4;
/// Write shards of the per-tenant event time index: ≈ 16,000 events/s per tenant.
pub const EVENT_TENANT_SHARDS: u32 = 16;
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
