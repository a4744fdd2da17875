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
