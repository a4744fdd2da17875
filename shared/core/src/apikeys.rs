//! API keys: random, shown once, stored only as SHA-256 hashes, each bound to one tenant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::deadline::WithinDeadline;
use argus_models::access::Scopes;
use argus_models::limits::{LimitSettings, Limits, Tier};
use argus_models::tenant::validate_tenant_id;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::ddb::{get_opt_s, get_s, s};
use crate::keys::{api_key_pk, tenant_key_sk, tenant_keys_pk, tenant_limits_pk, META, PK, SK};
use crate::{Backend, ServiceError};

/// Prefix that makes leaked keys recognisable to secret scanners.
pub const KEY_PREFIX: &str = "argus_";
/// Longest header value we hash; anything longer cannot be one of our keys.
const MAX_KEY_LEN: usize = 128;

/// A freshly created key. `secret` exists only in this value: it is never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key_id: String,
    pub tenant: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub key_id: String,
    pub created_at: String,
    pub scopes: Scopes,
    /// The key's own settings (unset: the tenant's, then the tier's).
    pub limits: LimitSettings,
}

/// What a presented credential grants: its tenant, scopes, who it is for rate limits, and the
/// limits in force. Keys stored before scopes existed (no `scopes` attribute) keep all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub tenant: String,
    pub scopes: Scopes,
    /// The key id (or a token subject's id): whose counters a request is charged to.
    pub principal: String,
    pub tier: Tier,
    pub limits: Limits,
}

/// Per-process memory of granted keys and of tenants' limit settings, for `ttl`: how long a
/// revoked key, changed scopes or a changed tier may go unnoticed by one warm instance.
/// Unknown keys are never remembered, so a key works the moment it is created.
#[derive(Debug)]
pub struct GrantCache {
    pub ttl: Duration,
    keys: Mutex<HashMap<String, (Instant, KeyGrant)>>,
    tenants: Mutex<HashMap<String, (Instant, LimitSettings)>>,
}

/// Entries kept at most in each map of the cache.
const CACHE_ENTRIES: usize = 10_000;

impl GrantCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, keys: Default::default(), tenants: Default::default() }
    }

    fn get<T: Clone>(&self, map: &Mutex<HashMap<String, (Instant, T)>>, key: &str) -> Option<T> {
        let map = map.lock().ok()?;
        map.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, value)| value.clone())
    }

    fn put<T>(&self, map: &Mutex<HashMap<String, (Instant, T)>>, key: &str, value: T) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = map.lock() {
            if map.len() >= CACHE_ENTRIES {
                map.retain(|_, (at, _)| at.elapsed() < self.ttl);
                if map.len() >= CACHE_ENTRIES {
                    map.clear();
                }
            }
            map.insert(key.to_string(), (Instant::now(), value));
        }
    }
}

/// How long one instance trusts what it read of keys and tenants (`ARGUS_GRANT_CACHE_SECONDS`).
pub const DEFAULT_GRANT_CACHE: Duration = Duration::from_secs(15);

/// `item` with the set parts of `limits` as attributes.
fn with_limits(mut item: crate::ddb::Item, limits: &LimitSettings) -> crate::ddb::Item {
    if let Some(tier) = limits.tier {
        item.insert("tier".into(), s(tier.as_str()));
    }
    for (name, value) in [("requests_per_hour", limits.requests_per_hour), ("events_per_hour", limits.events_per_hour)]
    {
        if let Some(value) = value {
            item.insert(name.into(), aws_sdk_dynamodb::types::AttributeValue::N(value.to_string()));
        }
    }
    item
}

fn limit_settings_of(item: &crate::ddb::Item) -> LimitSettings {
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
    LimitSettings {
        tier: get_opt_s(item, "tier").and_then(|t| Tier::parse(t).ok()),
        requests_per_hour: number("requests_per_hour"),
        events_per_hour: number("events_per_hour"),
    }
}

fn scopes_of(item: &crate::ddb::Item) -> Scopes {
    get_opt_s(item, "scopes").and_then(|text| Scopes::parse(text).ok()).unwrap_or_else(Scopes::all)
}

pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Public id of a key: a prefix of its hash, safe to print and log.
pub fn key_id_of(secret: &str) -> String {
    hash_key(secret)[..16].to_string()
}

pub fn generate_secret() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Stores `secret` (generated when `None`) for `tenant`. Fails with a conflict if that exact key
/// already exists (a dev key reused across restarts of an in-memory table is fine: it is new).
pub async fn create_key(backend: &Backend, tenant: &str, secret: Option<String>) -> Result<IssuedKey, ServiceError> {
    create_scoped_key(backend, tenant, secret, Scopes::all()).await
}

/// Like [`create_key`], with the key's scopes.
pub async fn create_scoped_key(
    backend: &Backend,
    tenant: &str,
    secret: Option<String>,
    scopes: Scopes,
) -> Result<IssuedKey, ServiceError> {
    create_key_with(backend, tenant, secret, scopes, LimitSettings::default()).await
}

/// Like [`create_scoped_key`], with the key's own tier and limits.
pub async fn create_key_with(
    backend: &Backend,
    tenant: &str,
    secret: Option<String>,
    scopes: Scopes,
    limits: LimitSettings,
) -> Result<IssuedKey, ServiceError> {
    validate_tenant_id(tenant)?;
    if scopes.is_empty() {
        return Err(ServiceError::bad_request("INVALID_SCOPES", "a key needs at least one scope"));
    }
    let secret = match secret {
        Some(secret) => {
            if secret.len() < 16 || secret.len() > MAX_KEY_LEN || !secret.is_ascii() {
                return Err(ServiceError::bad_request("INVALID_API_KEY", "API keys are 16-128 ASCII characters"));
            }
            secret
        }
        None => generate_secret()?,
    };
    let hash = hash_key(&secret);
    let key_id = hash[..16].to_string();
    let now = argus_models::time::format(&argus_models::time::now());
    let mut lookup = with_limits(crate::ddb::key(api_key_pk(&hash), META), &limits);
    lookup.insert("tenant".into(), s(tenant));
    lookup.insert("key_id".into(), s(&key_id));
    lookup.insert("created_at".into(), s(&now));
    lookup.insert("scopes".into(), s(scopes.text()));
    let lookup = Put::builder()
        .table_name(&backend.table)
        .set_item(Some(lookup))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut listing = with_limits(crate::ddb::key(tenant_keys_pk(tenant), &tenant_key_sk(&key_id)), &limits);
    listing.insert("key_hash".into(), s(&hash));
    listing.insert("created_at".into(), s(&now));
    listing.insert("scopes".into(), s(scopes.text()));
    let listing = Put::builder()
        .table_name(&backend.table)
        .set_item(Some(listing))
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    backend
        .dynamodb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(lookup).build())
        .transact_items(TransactWriteItem::builder().put(listing).build())
        .send()
        .within_deadline()
        .await?
        .map_err(|e| {
            if e.as_service_error().map(|se| se.is_transaction_canceled_exception()).unwrap_or(false) {
                ServiceError::Conflict {
                    code: "API_KEY_EXISTS",
                    message: "that API key already exists".into(),
                    details: Default::default(),
                }
            } else {
                ServiceError::from_sdk("dynamodb", e)
            }
        })?;
    Ok(IssuedKey { key_id, tenant: tenant.to_string(), secret })
}

/// The tenant a presented key belongs to, or `None` for an unknown (or revoked) key.
pub async fn tenant_for_key(backend: &Backend, presented: &str) -> Result<Option<String>, ServiceError> {
    Ok(grant_for_key(backend, presented).await?.map(|grant| grant.tenant))
}

/// What a presented key grants, or `None` for an unknown (or revoked) key. Granted keys are
/// remembered for the cache's TTL (`Backend::grants`).
pub async fn grant_for_key(backend: &Backend, presented: &str) -> Result<Option<KeyGrant>, ServiceError> {
    if presented.is_empty() || presented.len() > MAX_KEY_LEN {
        return Ok(None);
    }
    let hash = hash_key(presented);
    if let Some(grant) = backend.grants.get(&backend.grants.keys, &hash) {
        return Ok(Some(grant));
    }
    let out = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .key(PK, s(api_key_pk(&hash)))
        .key(SK, s(META))
        // A key created (or revoked) a moment ago is seen as it is now.
        .consistent_read(true)
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    let Some(item) = out.item.as_ref() else { return Ok(None) };
    let Some(tenant) = get_opt_s(item, "tenant") else { return Ok(None) };
    let tenant_limits = tenant_limit_settings(backend, tenant).await?;
    let (tier, limits) = LimitSettings::resolve(&limit_settings_of(item), &tenant_limits);
    let grant = KeyGrant {
        tenant: tenant.to_string(),
        scopes: scopes_of(item),
        principal: hash[..16].to_string(),
        tier,
        limits,
    };
    backend.grants.put(&backend.grants.keys, &hash, grant.clone());
    Ok(Some(grant))
}

/// A tenant's limit settings (what its keys fall back to), remembered like grants.
pub async fn tenant_limit_settings(backend: &Backend, tenant: &str) -> Result<LimitSettings, ServiceError> {
    if let Some(settings) = backend.grants.get(&backend.grants.tenants, tenant) {
        return Ok(settings);
    }
    let item = crate::ddb::get_item(&backend.dynamodb, &backend.table, crate::ddb::key(tenant_limits_pk(tenant), META))
        .await?;
    let settings = item.as_ref().map(limit_settings_of).unwrap_or_default();
    backend.grants.put(&backend.grants.tenants, tenant, settings);
    Ok(settings)
}

/// Sets a tenant's limit settings (replacing them whole; all unset = the tier defaults).
pub async fn set_tenant_limit_settings(
    backend: &Backend,
    tenant: &str,
    settings: LimitSettings,
) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)?;
    backend
        .dynamodb
        .put_item()
        .table_name(&backend.table)
        .set_item(Some(with_limits(crate::ddb::key(tenant_limits_pk(tenant), META), &settings)))
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(())
}

pub async fn list_keys(backend: &Backend, tenant: &str) -> Result<Vec<KeyInfo>, ServiceError> {
    validate_tenant_id(tenant)?;
    let out = backend
        .dynamodb
        .query()
        .table_name(&backend.table)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", s(tenant_keys_pk(tenant)))
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    out.items
        .unwrap_or_default()
        .iter()
        .map(|item| {
            Ok(KeyInfo {
                key_id: get_s(item, SK)?.trim_start_matches("APIKEY#").to_string(),
                created_at: get_s(item, "created_at")?.to_string(),
                scopes: scopes_of(item),
                limits: limit_settings_of(item),
            })
        })
        .collect()
}

/// The stored hash of `tenant`'s key `key_id` (its listing item), or 404.
async fn key_hash_of(backend: &Backend, tenant: &str, key_id: &str) -> Result<String, ServiceError> {
    let listing = crate::ddb::get_item(
        &backend.dynamodb,
        &backend.table,
        crate::ddb::key(tenant_keys_pk(tenant), &tenant_key_sk(key_id)),
    )
    .await?
    .ok_or_else(|| ServiceError::not_found("api_key", key_id))?;
    Ok(get_s(&listing, "key_hash")?.to_string())
}

/// Revokes a key by its public id. Both records go in one transaction, so a key is never
/// listed yet unusable or usable yet unlisted.
pub async fn revoke_key(backend: &Backend, tenant: &str, key_id: &str) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)?;
    let hash = key_hash_of(backend, tenant, key_id).await?;
    let hash = hash.as_str();
    let delete = |pk: String, sk: String| {
        Delete::builder()
            .table_name(&backend.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .build()
            .map(|d| TransactWriteItem::builder().delete(d).build())
            .map_err(|e| ServiceError::Internal(e.to_string()))
    };
    backend
        .dynamodb
        .transact_write_items()
        .transact_items(delete(api_key_pk(hash), META.to_string())?)
        .transact_items(delete(tenant_keys_pk(tenant), tenant_key_sk(key_id))?)
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(())
}

/// One setting of a key in an update: left as is, set, or cleared (back to the fallback).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Setting<T> {
    #[default]
    Keep,
    Set(T),
    Clear,
}

/// What `keys update` changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    pub scopes: Option<Scopes>,
    pub tier: Setting<Tier>,
    pub requests_per_hour: Setting<u64>,
    pub events_per_hour: Setting<u64>,
}

/// Changes a key's scopes (both its records, in one transaction). Takes effect within the grant
/// cache's TTL (15 s) on every warm instance.
pub async fn update_key_scopes(
    backend: &Backend,
    tenant: &str,
    key_id: &str,
    scopes: Scopes,
) -> Result<(), ServiceError> {
    update_key(backend, tenant, key_id, KeyUpdate { scopes: Some(scopes), ..Default::default() }).await
}

/// Changes a key's scopes, tier and limits (both its records, in one transaction).
pub async fn update_key(backend: &Backend, tenant: &str, key_id: &str, update: KeyUpdate) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)?;
    if update.scopes.is_some_and(Scopes::is_empty) {
        return Err(ServiceError::bad_request("INVALID_SCOPES", "a key needs at least one scope"));
    }
    let mut sets = Vec::new();
    let mut removes = Vec::new();
    let mut values = HashMap::new();
    if let Some(scopes) = update.scopes {
        sets.push("scopes = :scopes");
        values.insert(":scopes".to_string(), s(scopes.text()));
    }
    match update.tier {
        Setting::Keep => {}
        Setting::Set(tier) => {
            sets.push("tier = :tier");
            values.insert(":tier".to_string(), s(tier.as_str()));
        }
        Setting::Clear => removes.push("tier"),
    }
    for (name, setting, placeholder) in
        [("requests_per_hour", update.requests_per_hour, ":rph"), ("events_per_hour", update.events_per_hour, ":eph")]
    {
        match setting {
            Setting::Keep => {}
            Setting::Set(value) => {
                sets.push(if name == "requests_per_hour" {
                    "requests_per_hour = :rph"
                } else {
                    "events_per_hour = :eph"
                });
                values.insert(placeholder.to_string(), aws_sdk_dynamodb::types::AttributeValue::N(value.to_string()));
            }
            Setting::Clear => removes.push(name),
        }
    }
    if sets.is_empty() && removes.is_empty() {
        return Err(ServiceError::bad_request("NOTHING_TO_UPDATE", "name a setting to change"));
    }
    let mut expression = String::new();
    if !sets.is_empty() {
        expression.push_str(&format!("SET {}", sets.join(", ")));
    }
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    let hash = key_hash_of(backend, tenant, key_id).await?;
    let hash = hash.as_str();
    let update = |pk: String, sk: String| {
        Update::builder()
            .table_name(&backend.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression(expression.trim())
            .condition_expression("attribute_exists(PK)")
            .set_expression_attribute_values((!values.is_empty()).then(|| values.clone()))
            .build()
            .map(|u| TransactWriteItem::builder().update(u).build())
            .map_err(|e| ServiceError::Internal(e.to_string()))
    };
    backend
        .dynamodb
        .transact_write_items()
        .transact_items(update(api_key_pk(hash), META.to_string())?)
        .transact_items(update(tenant_keys_pk(tenant), tenant_key_sk(key_id))?)
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_hashed() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 43);
        assert_eq!(hash_key(&a).len(), 64);
        assert_eq!(key_id_of(&a), hash_key(&a)[..16]);
        // Known SHA-256 vector, so the stored hash is what ops tooling expects.
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
