//! Sessions: create, get, list newest first across write shards.

use argus_models::ids::{new_id, parse_uuid, shard_of};
use argus_models::session::{NewSession, Session};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ddb::{get_opt_s, get_s, query_gsi1_sharded_desc, s, Item};
use crate::keys::{session_list_pk, session_pk, GSI1PK, GSI1SK, META, PK, SESSION_LIST_SHARDS, SK};
use crate::{cursor, Backend, ServiceError};

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ListPosition {
    /// GSI1 sort key of the last item returned.
    before: String,
}

pub async fn create(backend: &Backend, tenant: &str, input: NewSession) -> Result<Session, ServiceError> {
    let id = new_id();
    let created_at = argus_models::time::format(&argus_models::time::now());
    let mut put = backend
        .dynamodb
        .put_item()
        .table_name(&backend.table)
        .item(PK, s(session_pk(tenant, &id)))
        .item(SK, s(META))
        .item(GSI1PK, s(session_list_pk(tenant, shard_of(&id, SESSION_LIST_SHARDS))))
        .item(GSI1SK, s(id.to_string()))
        .item("entity", s("session"))
        .item("id", s(id.to_string()))
        .item("created_at", s(&created_at))
        // A v7 id colliding is astronomically unlikely; the condition makes it impossible to
        // overwrite a session silently anyway.
        .condition_expression("attribute_not_exists(PK)");
    if let Some(metadata) = &input.metadata {
        let json = serde_json::to_string(metadata).map_err(|e| ServiceError::Internal(e.to_string()))?;
        put = put.item("metadata", s(json));
    }
    put.send().await.map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(Session { id, created_at, metadata: input.metadata })
}

pub async fn get(backend: &Backend, tenant: &str, raw_id: &str) -> Result<Session, ServiceError> {
    // A malformed id cannot name any session: same 404 as a missing one.
    let id = parse_uuid("id", raw_id).map_err(|_| ServiceError::not_found("session", raw_id))?;
    let out = backend
        .dynamodb
        .get_item()
        .table_name(&backend.table)
        .key(PK, s(session_pk(tenant, &id)))
        .key(SK, s(META))
        .send()
        .await
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    match out.item {
        Some(item) => session_from_item(&item),
        None => Err(ServiceError::not_found("session", raw_id)),
    }
}

/// Which of `ids` exist in the tenant (one BatchGetItem per 100 ids).
pub async fn existing(backend: &Backend, tenant: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, ServiceError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut found = Vec::new();
    for chunk in ids.chunks(100) {
        let mut keys = Vec::with_capacity(chunk.len());
        for id in chunk {
            keys.push(Item::from([(PK.to_string(), s(session_pk(tenant, id))), (SK.to_string(), s(META))]));
        }
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("id")
                .build()
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        );
        let mut attempt = 0u32;
        while let Some(keys) = request.take() {
            let out = backend
                .dynamodb
                .batch_get_item()
                .request_items(&backend.table, keys)
                .send()
                .await
                .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
            for item in out.responses.unwrap_or_default().remove(&backend.table).unwrap_or_default() {
                if let Some(id) = get_opt_s(&item, "id").and_then(|raw| Uuid::try_parse(raw).ok()) {
                    found.push(id);
                }
            }
            request = out.unprocessed_keys.and_then(|mut keys| keys.remove(&backend.table));
            if request.is_some() {
                attempt += 1;
                if attempt > 8 {
                    return Err(ServiceError::Unavailable {
                        component: "dynamodb",
                        message: "sessions could not be read, retry later".into(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(5))).await;
            }
        }
    }
    Ok(found)
}

pub async fn list(
    backend: &Backend,
    tenant: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<Session>, ServiceError> {
    let position = cursor.map(cursor::decode::<ListPosition>).transpose()?;
    let partitions: Vec<String> = (0..SESSION_LIST_SHARDS).map(|shard| session_list_pk(tenant, shard)).collect();
    let page = query_gsi1_sharded_desc(
        &backend.dynamodb,
        &backend.table,
        &partitions,
        position.as_ref().map(|p| p.before.as_str()),
        limit,
    )
    .await?;
    Ok(Page {
        items: page.items.iter().map(session_from_item).collect::<Result<_, _>>()?,
        next_cursor: page.next_before.map(|before| cursor::encode(&ListPosition { before })),
    })
}

fn session_from_item(item: &Item) -> Result<Session, ServiceError> {
    let id = Uuid::try_parse(get_s(item, "id")?).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let metadata = match get_opt_s(item, "metadata") {
        Some(json) => {
            Some(serde_json::from_str::<Map<String, Value>>(json).map_err(|e| ServiceError::Internal(e.to_string()))?)
        }
        None => None,
    };
    Ok(Session { id, created_at: get_s(item, "created_at")?.to_string(), metadata })
}

/// Validates the `limit` query parameter: 1..=MAX_PAGE, default DEFAULT_PAGE.
pub fn parse_limit(raw: Option<&str>) -> Result<usize, ServiceError> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ServiceError::BadRequest {
                code: "INVALID_LIMIT",
                message: format!("limit must be an integer from 1 to {MAX_PAGE}"),
                details: Map::from_iter([("field".to_string(), Value::from("limit"))]),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(parse_limit(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten", "", "1e3"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
