//! API keys: random, shown once, stored only as SHA-256 hashes, each bound to one tenant.

use crate::deadline::WithinDeadline;
use argus_models::access::Scopes;
use argus_models::tenant::validate_tenant_id;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::ddb::{get_opt_s, get_s, s};
use crate::keys::{api_key_pk, tenant_key_sk, tenant_keys_pk, META, PK, SK};
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
}

/// What a presented key grants: its tenant and scopes. Keys stored before scopes existed
/// (no `scopes` attribute) keep all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub tenant: String,
    pub scopes: Scopes,
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
    let lookup = Put::builder()
        .table_name(&backend.table)
        .item(PK, s(api_key_pk(&hash)))
        .item(SK, s(META))
        .item("tenant", s(tenant))
        .item("key_id", s(&key_id))
        .item("created_at", s(&now))
        .item("scopes", s(scopes.text()))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let listing = Put::builder()
        .table_name(&backend.table)
        .item(PK, s(tenant_keys_pk(tenant)))
        .item(SK, s(tenant_key_sk(&key_id)))
        .item("key_hash", s(&hash))
        .item("created_at", s(&now))
        .item("scopes", s(scopes.text()))
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

/// What a presented key grants, or `None` for an unknown (or revoked) key.
pub async fn grant_for_key(backend: &Backend, presented: &str) -> Result<Option<KeyGrant>, ServiceError> {
    if presented.is_empty() || presented.len() > MAX_KEY_LEN {
        return Ok(None);
    }
    let out = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .key(PK, s(api_key_pk(&hash_key(presented))))
        .key(SK, s(META))
        // A key created (or revoked) a moment ago is seen as it is now.
        .consistent_read(true)
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(out.item.as_ref().and_then(|item| {
        let tenant = get_opt_s(item, "tenant")?.to_string();
        Some(KeyGrant { tenant, scopes: scopes_of(item) })
    }))
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

/// Changes a key's scopes (both its records, in one transaction). Takes effect at the next
/// authorizer call for the key: at most `ReauthorizeEvery` (60 s) later behind API Gateway.
pub async fn update_key_scopes(
    backend: &Backend,
    tenant: &str,
    key_id: &str,
    scopes: Scopes,
) -> Result<(), ServiceError> {
    validate_tenant_id(tenant)?;
    if scopes.is_empty() {
        return Err(ServiceError::bad_request("INVALID_SCOPES", "a key needs at least one scope"));
    }
    let hash = key_hash_of(backend, tenant, key_id).await?;
    let hash = hash.as_str();
    let update = |pk: String, sk: String| {
        Update::builder()
            .table_name(&backend.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .update_expression("SET scopes = :scopes")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":scopes", s(scopes.text()))
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
